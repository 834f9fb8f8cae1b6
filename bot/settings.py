"""Settings from the environment (and a `.env` file). Every problem is one line naming the variable."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import Original, parse_stream
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from handoffs.config import ConfigError, HandoffConfig, default_config, load_config
from handoffs.durations import parse_duration
from handoffs.webhooks import DEFAULT_SECRET_ENV

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite:///./handoffs.db"
DEFAULT_CONFIG_PATH = "./handoffs.yml"
MIN_TOKEN_LENGTH = 8
# How long a Slack write stays taken by a process that may have died while sending it: above the Slack
# client's timeout (10 s), so no other process takes a row still being sent.
DEFAULT_OUTBOX_LEASE_SECONDS = 30.0
MAX_WORKERS = 32  # each worker has its own database pool (PostgreSQL: up to 30 connections)
MIN_WEBHOOK_SECRET_LENGTH = 16
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 10.0
DEFAULT_WEBHOOK_GIVE_UP_AFTER = timedelta(days=1)
MAX_WEBHOOK_GIVE_UP_AFTER = timedelta(days=30)


class SettingsError(Exception):
    """A setting is missing or malformed; the message is the one line shown to the operator."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    config_path: Path = Path(DEFAULT_CONFIG_PATH)
    config_path_explicit: bool = False
    default_channel: str | None = None
    api_tokens: Mapping[str, str] = field(default_factory=dict)  # token -> name
    host: str = "127.0.0.1"
    port: int = 3000
    outbox_lease_seconds: float = DEFAULT_OUTBOX_LEASE_SECONDS
    workers: int = 1  # HANDOFF_WORKERS: HTTP server processes
    # HANDOFF_WEBHOOK_SECRET: signs callbacks and the configured endpoints without a secret_env of their own
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_timeout_seconds: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS
    webhook_give_up_after: timedelta = DEFAULT_WEBHOOK_GIVE_UP_AFTER
    # The environment as read, for the variables that configured webhooks name in `secret_env`.
    environment: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def load_handoff_config(self) -> HandoffConfig:
        """The routing configuration: the file when it exists, else the default channel's single route."""
        if self.config_path.exists() or self.config_path_explicit:
            return self.with_routes(load_config(self.config_path))
        if not self.default_channel:
            raise SettingsError(
                f"no configuration: create {self.config_path} (see handoffs.example.yml) "
                "or set HANDOFF_DEFAULT_CHANNEL to the channel id cards should go to"
            )
        return default_config(self.default_channel)

    def with_routes(self, config: HandoffConfig) -> HandoffConfig:
        """A file without routes sends every card to HANDOFF_DEFAULT_CHANNEL; without that either, a handoff
        would have nowhere to go (SPEC §4), so it stops the program here."""
        if config.routes:
            return config
        if not self.default_channel:
            raise SettingsError(
                f"{self.config_path} has no routes: add a route with a channel (see handoffs.example.yml) "
                "or set HANDOFF_DEFAULT_CHANNEL to the channel id cards should go to"
            )
        return config.model_copy(update={"routes": default_config(self.default_channel).routes})

    def webhook_secrets(self, config: HandoffConfig) -> dict[str, str]:
        """The signing secrets by variable name: HANDOFF_WEBHOOK_SECRET (when set) and each configured
        webhook's `secret_env`. A configured webhook whose secret is not set stops the program here."""
        secrets = {DEFAULT_SECRET_ENV: self.webhook_secret} if self.webhook_secret else {}
        for index, hook in enumerate(config.webhooks):
            name = hook.secret_env or DEFAULT_SECRET_ENV
            if name not in secrets:
                user = f"webhooks[{index}] ({hook.url}{'' if hook.secret_env else ', which has no secret_env'})"
                secrets[name] = _webhook_secret(self.environment, name, user)
        return secrets

    def require_slack(self, *, socket_mode: bool) -> None:
        if not self.slack_bot_token:
            raise SettingsError("SLACK_BOT_TOKEN is not set: put the app's xoxb-… bot token in the environment or .env")
        if socket_mode and not self.slack_app_token:
            raise SettingsError("SLACK_APP_TOKEN is not set: Socket Mode needs the app-level xapp-… token")
        if not socket_mode and not self.slack_signing_secret:
            raise SettingsError("SLACK_SIGNING_SECRET is not set: HTTP mode needs the app's signing secret")


def read_environment(env_file: str | Path = ".env") -> dict[str, str]:
    """The process environment over the values of `.env` (the environment wins)."""
    text = _dot_env_text(Path(env_file))
    values = {key: value for key, value in dotenv_values(stream=io.StringIO(text)).items() if value is not None}
    values.update(os.environ)
    return values


def _dot_env_text(path: Path) -> str:
    """The text of `.env` ("" when there is none); SettingsError on a line python-dotenv would skip with a
    warning, which would leave its variable at the default (e.g. another database) instead of stopping."""
    if not (path.is_file() or path.is_fifo()):  # python-dotenv reads a FIFO too (secret managers mount one)
        return ""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SettingsError(f"{path} cannot be read ({error.strerror}): let this user read it, or remove it") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SettingsError(f"{path} line {line} is not UTF-8 text: save the file as UTF-8") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise SettingsError(f"{path} line {_line_number(binding.original)}{_named(binding.original.string)} "
                                "cannot be read: write it NAME=value, and close the quote a quoted value opens")
    return text


def _line_number(original: Original) -> int:
    """The line the statement is on: python-dotenv counts from the blank lines before it."""
    blank_lines = original.string[: len(original.string) - len(original.string.lstrip())]
    return original.line + len(re.findall(r"\r\n|\n|\r", blank_lines))


def _named(statement: str) -> str:
    match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", statement)
    return f" ({match.group(1)})" if match else ""


def _prefixed(env: Mapping[str, str], name: str, prefix: str, what: str) -> str | None:
    value = env.get(name, "").strip()
    if value and not value.startswith(prefix):
        raise SettingsError(f"{name} must be {what} starting with {prefix!r}")
    return value or None


def _database_url(env: Mapping[str, str]) -> str:
    url = env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise SettingsError(
            "DATABASE_URL must be sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/dbname"
        )
    try:
        parsed = make_url(url)  # as the engine will read it
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
        parsed = None
    if parsed is None or (parsed.port is not None and not 0 < parsed.port <= 65535):
        raise SettingsError(
            "DATABASE_URL is malformed: the port must be a number from 1 to 65535 and any :/@?# in the password "
            "%-encoded, as in postgresql+psycopg://user:password@host:5432/dbname"
        )
    in_memory = parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    if parsed.get_backend_name() == "sqlite" and in_memory:
        raise SettingsError(
            "DATABASE_URL must name a SQLite database file, as in sqlite:///./handoffs.db: the bot's threads and "
            "processes share the database, and an in-memory one is private to each connection"
        )
    return url


def _api_tokens(env: Mapping[str, str]) -> dict[str, str]:
    """Token -> name. One name may have several tokens (the old and the new one while it is rotated); one token
    may not have several names, as each request would be logged under the last of them."""
    tokens: dict[str, str] = {}
    positions: dict[str, int] = {}  # token -> its first entry
    raw = env.get("HANDOFF_API_TOKENS", "").strip()
    for position, pair in enumerate(filter(None, (p.strip() for p in raw.split(","))), start=1):
        name, sep, token = (part.strip() for part in pair.partition(":"))
        if not sep or not name or not token:
            raise SettingsError(f"HANDOFF_API_TOKENS entry {position} must be written name:token")
        if len(token) < MIN_TOKEN_LENGTH:
            raise SettingsError(
                f"HANDOFF_API_TOKENS entry {position} ({name}): the token must be at least "
                f"{MIN_TOKEN_LENGTH} characters"
            )
        if tokens.get(token, name) != name:
            raise SettingsError(
                f"HANDOFF_API_TOKENS entries {positions[token]} ({tokens[token]}) and {position} ({name}) have the "
                "same token: give each name a token of its own"
            )
        tokens[token] = name
        positions.setdefault(token, position)
    return tokens


def _port(env: Mapping[str, str]) -> int:
    raw = env.get("PORT", "").strip() or "3000"
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= 65535:
        raise SettingsError(f"PORT must be a number from 0 to 65535, not {raw!r}")
    return int(raw)


def _slack_api_url(env: Mapping[str, str]) -> str:
    url = env.get("SLACK_API_URL", "").strip() or DEFAULT_SLACK_API_URL
    if not url.startswith(("https://", "http://")):
        raise SettingsError(f"SLACK_API_URL must be an http(s) URL such as {DEFAULT_SLACK_API_URL}")
    return url if url.endswith("/") else url + "/"


def handoff_config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("HANDOFF_CONFIG", "").strip() or DEFAULT_CONFIG_PATH)


def default_channel(env: Mapping[str, str]) -> str | None:
    channel = env.get("HANDOFF_DEFAULT_CHANNEL", "").strip()
    if channel and not (channel[0] in "CG" and channel[1:].isalnum() and channel.isupper()):
        raise SettingsError(
            f"HANDOFF_DEFAULT_CHANNEL must be a channel id such as C0123ABCD (not a #name), not {channel!r}"
        )
    return channel or None


def _outbox_lease(env: Mapping[str, str]) -> float:
    raw = env.get("HANDOFF_OUTBOX_LEASE_SECONDS", "").strip()
    if not raw:
        return DEFAULT_OUTBOX_LEASE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 1.0 <= seconds <= 3600.0:
        raise SettingsError(f"HANDOFF_OUTBOX_LEASE_SECONDS must be a number of seconds from 1 to 3600, not {raw!r}")
    return seconds


def parse_workers(raw: str, name: str = "HANDOFF_WORKERS") -> int:
    """A worker count: empty is 1, `auto` is one per CPU this process may use."""
    value = raw.strip().lower()
    if value == "auto":
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    if not value:
        return 1
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_WORKERS:
        raise SettingsError(f"{name} must be a number of processes from 1 to {MAX_WORKERS} or auto, not {raw!r}")
    return int(value)


def _webhook_secret(env: Mapping[str, str], name: str, user: str) -> str:
    """The secret in variable `name`, which `user` is signed with; SettingsError when unset or short."""
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set: {user} is signed with it; set it to a long random string "
                            "(e.g. `openssl rand -hex 32`)")
    if len(value) < MIN_WEBHOOK_SECRET_LENGTH:
        raise SettingsError(f"{name} must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters (a long random string)")
    return value


def _optional_webhook_secret(env: Mapping[str, str]) -> str | None:
    if not env.get(DEFAULT_SECRET_ENV, "").strip():
        return None
    return _webhook_secret(env, DEFAULT_SECRET_ENV, "the webhooks to callback URLs")


def _webhook_timeout(env: Mapping[str, str]) -> float:
    raw = env.get("HANDOFF_WEBHOOK_TIMEOUT_SECONDS", "").strip()
    if not raw:
        return DEFAULT_WEBHOOK_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 120.0:
        raise SettingsError(f"HANDOFF_WEBHOOK_TIMEOUT_SECONDS must be a number of seconds from 0.1 to 120, not {raw!r}")
    return seconds


def _webhook_give_up_after(env: Mapping[str, str]) -> timedelta:
    raw = env.get("HANDOFF_WEBHOOK_GIVE_UP_AFTER", "").strip()
    if not raw:
        return DEFAULT_WEBHOOK_GIVE_UP_AFTER
    try:
        after = parse_duration(raw)
    except ValueError:
        after = timedelta(0)
    if after > MAX_WEBHOOK_GIVE_UP_AFTER or after <= timedelta(0):
        raise SettingsError(f"HANDOFF_WEBHOOK_GIVE_UP_AFTER must be a duration from 1s to 30d such as 1d or 12h, "
                            f"not {raw!r}")
    return after


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = read_environment() if env is None else env
    return Settings(
        database_url=_database_url(env),
        slack_bot_token=_prefixed(env, "SLACK_BOT_TOKEN", "xoxb-", "a bot token"),
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET", "").strip() or None,
        slack_app_token=_prefixed(env, "SLACK_APP_TOKEN", "xapp-", "an app-level token"),
        slack_api_url=_slack_api_url(env),
        config_path=handoff_config_path(env),
        config_path_explicit=bool(env.get("HANDOFF_CONFIG", "").strip()),
        default_channel=default_channel(env),
        api_tokens=_api_tokens(env),
        host=env.get("HOST", "").strip() or "127.0.0.1",
        port=_port(env),
        outbox_lease_seconds=_outbox_lease(env),
        workers=parse_workers(env.get("HANDOFF_WORKERS", "")),
        webhook_secret=_optional_webhook_secret(env),
        webhook_timeout_seconds=_webhook_timeout(env),
        webhook_give_up_after=_webhook_give_up_after(env),
        environment=dict(env),
    )


__all__ = ["ConfigError", "Settings", "SettingsError", "default_channel", "handoff_config_path", "load_settings",
           "parse_workers", "read_environment"]
