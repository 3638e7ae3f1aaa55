"""Persistence: the metadata database (SQLAlchemy, SQLite or PostgreSQL) and the blob store."""
