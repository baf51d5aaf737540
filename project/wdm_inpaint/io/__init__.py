"""File input/output: atomic writes and NIfTI reading/writing with clear errors."""
