"""`handoff-bot`: serve, migrate, check-config. Operator errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sqlalchemy.exc import DBAPIError, OperationalError

from bot.settings import (
    Settings,
    SettingsError,
    default_channel,
    handoff_config_path,
    load_settings,
    parse_workers,
    read_environment,
)
from bot.workers import WorkerStartupError
from handoffs.config import ConfigError, load_config
from storage.migrate import UnknownRevisionError

log = logging.getLogger("handoff_bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handoff-bot", description="Owned, tracked handoffs in Slack.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the bot: Slack endpoints, intake API, health")
    serve.add_argument("--socket-mode", action="store_true", help="take Slack traffic over Socket Mode")
    serve.add_argument("--workers", metavar="N",
                       help="HTTP server processes, a number or auto (one per CPU); default HANDOFF_WORKERS or 1")
    commands.add_parser("migrate", help="bring the database schema up to date")
    check = commands.add_parser("check-config", help="validate handoffs.yml and list every error")
    check.add_argument("path", nargs="?", help="the file to check (default: HANDOFF_CONFIG or ./handoffs.yml)")
    return parser


def check_config(path: str | None) -> int:
    """Reads only the settings it needs (HANDOFF_CONFIG without a path, HANDOFF_DEFAULT_CHANNEL for a file without
    routes), so that an unrelated one such as PORT=abc does not keep it from checking the file."""
    environment = functools.cache(read_environment)
    target = Path(path) if path else handoff_config_path(environment())
    try:
        config = load_config(target)
    except ConfigError as error:
        return _report_errors(error.source, error.problems)
    if config.routes:
        print(f"{target}: OK ({len(config.routes)} route(s), {len(config.kinds)} kind(s))")
        return 0
    env = environment()  # outside the try: a .env that cannot be read is exit 2, as for every command
    try:
        channel = default_channel(env)
        routed = Settings(config_path=target, default_channel=channel).with_routes(config)
    except SettingsError as error:
        return _report_errors(str(target), [f"routes: {error}"])
    print(f"{target}: OK ({len(routed.routes)} route(s), {len(config.kinds)} kind(s); "
          f"every card goes to HANDOFF_DEFAULT_CHANNEL {channel})")
    return 0


def _report_errors(source: str, problems: Sequence[str]) -> int:
    for problem in problems:
        print(f"{source}: {problem}")
    print(f"{source}: {len(problems)} error(s)")
    return 1


def migrate() -> int:
    from storage import migrate as migrations

    settings = load_settings()
    migrations.upgrade(settings.database_url)
    print(f"database at {_safe_url(settings.database_url)} is up to date")
    return 0


def serve(socket_mode: bool, workers: str | None) -> int:
    from bot.server import SlackUnavailableError, run

    settings = load_settings()
    if workers is not None:
        settings = replace(settings, workers=parse_workers(workers, "--workers"))
    try:
        run(settings, socket_mode=socket_mode)
    except SlackUnavailableError as error:
        print(f"handoff-bot: {error}", file=sys.stderr)
        return 2
    return 0


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = f"{credentials.split(':')[0]}:***@{host}" if ":" in credentials else rest
    return scheme + sep + rest


def _database_problem(error: DBAPIError) -> str | None:
    """What is wrong with the database DATABASE_URL names, in one line; None when a statement failed on a good one.
    A file that is not SQLite is found out only by the first statement run on it (SQLITE_NOTADB): the setting's
    fault all the same."""
    if getattr(error.orig, "sqlite_errorname", None) == "SQLITE_NOTADB":
        return "DATABASE_URL names a file that is not a SQLite database (set it to the bot's database or a new file)"
    if isinstance(error, OperationalError) or error.statement is None:
        return f"cannot reach the database (check DATABASE_URL): {error.orig}".splitlines()[0]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        if args.command == "check-config":
            return check_config(args.path)
        if args.command == "migrate":
            return migrate()
        return serve(args.socket_mode, args.workers)
    except (SettingsError, WorkerStartupError, UnknownRevisionError) as error:
        print(f"handoff-bot: {error}", file=sys.stderr)
    except ConfigError as error:
        print(f"handoff-bot: {error.source}: {error.problems[0]} (run `handoff-bot check-config` for all errors)",
              file=sys.stderr)
    except DBAPIError as error:
        problem = _database_problem(error)
        if problem is None:
            raise  # a statement failed: a bug to report whole, not a setting to fix
        print(f"handoff-bot: {problem}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
