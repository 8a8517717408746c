"""The `facerep` command line: thin wrappers over the Python API."""
