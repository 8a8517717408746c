"""Pretraining objectives: what a model learns from unlabeled faces, one file per method."""
