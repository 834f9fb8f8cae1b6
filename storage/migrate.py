"""Run Alembic migrations programmatically (used by `handoff-bot migrate` and at `serve` start).

Alembic is imported where it is used: every command imports this module for `UnknownRevisionError`, and alembic
adds 75 ms to a start that does not migrate (`check-config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, pool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


class UnknownRevisionError(Exception):
    """The database is at a schema revision these migrations do not have; the message is one line for the operator."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the schema at `url` up to the newest revision."""
    from alembic import command

    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":  # several processes may start at once
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7011600001)")
            config = alembic_config(url)
            check_revision_known(connection, config)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def check_revision_known(connection: Connection, config: Config) -> None:
    """Refuse a database a newer version of the bot migrated (a rollback after a deploy): these migrations cannot
    go on from a revision they do not have, and alembic would say so only in a traceback."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    for revision in MigrationContext.configure(connection).get_current_heads():
        if revision not in known:
            raise UnknownRevisionError(
                f"the database DATABASE_URL names is at schema revision {revision!r}, which this version of "
                "handoff-bot does not know (a newer version migrated it): run that newer version, or restore a "
                "backup taken before it migrated")
