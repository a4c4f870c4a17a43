"""Alembic migrations of the shipyard schema (applied by Database on open)."""
