"""Alembic environment and revisions for pgqueue's schema (shipped inside the wheel)."""
