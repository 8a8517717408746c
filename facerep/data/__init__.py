"""Prepared face datasets: folder walking, ingest, storage, splits and the PyTorch view."""
