"""Alembic migrations of the justwalk database (``justwalk db upgrade`` applies them)."""
