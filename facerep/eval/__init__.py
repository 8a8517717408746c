"""Evaluation protocols: verification, identification, clustering and probes, with reports."""
