"""Face encoders: uint8 aligned faces in, L2-normalised embeddings out."""
