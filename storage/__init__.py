"""Persistence: SQLModel tables, the repository, migrations and database set-up."""
