"""Dagster code location that keeps PostgreSQL databases safe: dump, upload, verify, prune, restore."""

__version__ = "0.1.0"
