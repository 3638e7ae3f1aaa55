"""Alembic migrations of the metadata schema (applied on start and by `lgsp db upgrade`)."""
