"""Photo -> aligned face: detection, 5-point landmarks, similarity alignment and head pose."""
