"""Evaluation of the algorithms against recordings in ``../shared/data`` (does file I/O)."""
