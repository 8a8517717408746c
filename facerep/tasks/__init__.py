"""Face tools built on encoders: galleries, clustering by person, threshold calibration."""
