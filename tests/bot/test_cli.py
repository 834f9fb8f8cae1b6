"""`handoff-bot` as an operator runs it: a subprocess, in an empty directory, with a controlled environment."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import SettingsError, load_settings
from tests.conftest import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "handoffs.example.yml"
SCRIPT = Path(sys.executable).with_name("handoff-bot")


def run(cwd: Path, *args: str, dot_env: bytes | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command with only PATH and the given variables set, and no .env in `cwd` but `dot_env`."""
    return run_with(cwd, args, env, dot_env)


def run_with(
    cwd: Path, args: Sequence[str], env: Mapping[str, str], dot_env: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    assert not (cwd / ".env").exists()
    if dot_env is not None:
        (cwd / ".env").write_bytes(dot_env)
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8", **env}
    return subprocess.run([*command, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60)


def test_check_config_accepts_the_shipped_example(tmp_path: Path) -> None:
    result = run(tmp_path, "check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{EXAMPLE}: OK (2 route(s), 5 kind(s))"
    assert result.stderr == ""


def test_check_config_is_not_stopped_by_a_setting_it_does_not_need(tmp_path: Path) -> None:
    """It loaded every setting first: PORT=abc was exit 2 without the file being checked (SPEC: exit 0 or 1)."""
    result = run(tmp_path, "check-config", str(EXAMPLE), PORT="abc", HANDOFF_API_TOKENS="broken",
                 dot_env=b'DATABASE_URL="sqlite:///./team.db\n')
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{EXAMPLE}: OK (2 route(s), 5 kind(s))"
    assert result.stderr == ""


BAD_CONFIG = """\
timezone: Europe/Berlin
managers: [boss]
routes:
  - name: hot-leads
    when: {kind: lead, urgency: [high, hot]}
    chanel: C0SALES
  - name: default
    channel: "#handoffs"
sla:
  urgent: {claim: soon, resolve: 4h}
"""


def test_check_config_lists_every_error_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "handoffs.yml"
    config.write_text(BAD_CONFIG)
    result = run(tmp_path, "check-config", str(config))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert all(line.startswith(f"{config}: ") for line in lines)
    problems = [line.removeprefix(f"{config}: ") for line in lines]
    assert "routes[0].chanel: unknown key (did you mean 'channel'?)" in problems
    assert any(p.startswith("managers[0]: must be a Slack user id") for p in problems)
    assert any(p.startswith("routes[0].when.urgency[1]: ") for p in problems)
    assert any(p.startswith("routes[1].channel: must be a Slack channel id") for p in problems)
    assert any(p.startswith("sla.urgent.claim: not a duration") for p in problems)
    assert problems[-1] == f"{len(problems) - 1} error(s)"
    assert "Traceback" not in result.stdout + result.stderr


def test_migrate_creates_a_fresh_sqlite_database_and_is_repeatable(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", DATABASE_URL="sqlite:///./fresh.db")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    with sqlite3.connect(tmp_path / "fresh.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"handoffs", "events", "outbox", "route_cursors", "alembic_version"} <= tables
    assert len(version) == 1
    again = run(tmp_path, "migrate", DATABASE_URL="sqlite:///./fresh.db")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "abc"), ("DATABASE_URL", "mysql://x"), ("HANDOFF_API_TOKENS", "broken"), ("SLACK_BOT_TOKEN", "nope")],
)
def test_a_malformed_setting_stops_with_one_line_naming_it(tmp_path: Path, variable: str, value: str) -> None:
    result = run_with(tmp_path, ["migrate"], {variable: value})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"handoff-bot: {variable} ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "handoffs.db").exists()


@pytest.mark.parametrize("command", ["migrate", "serve"])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg://u@127.0.0.1:abc/db", "the port must be a number"),
        ("sqlite:///", "must name a SQLite database file"),
        ("sqlite:///:memory:", "must name a SQLite database file"),
    ],
    ids=["port-not-a-number", "sqlite-without-a-file", "sqlite-in-memory"],
)
def test_a_database_url_the_bot_cannot_use_stops_with_one_line_naming_it(
    tmp_path: Path, command: str, url: str, says: str
) -> None:
    result = run(tmp_path, command, DATABASE_URL=url, SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s",
                 HANDOFF_DEFAULT_CHANNEL="CHANDOFFS", PORT=str(free_port()))
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("handoff-bot: DATABASE_URL ") and says in line
    assert result.stdout == ""  # not "database at sqlite:/// is up to date"


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_a_database_url_naming_a_file_that_is_not_sqlite_stops_with_one_line(tmp_path: Path, command: str) -> None:
    """A typo naming another file (.env, a backup in another format): it was a DatabaseError traceback, exit 1."""
    (tmp_path / "notes.txt").write_text("this is not a database\n" * 100)
    result = run(tmp_path, command, DATABASE_URL="sqlite:///./notes.txt", SLACK_BOT_TOKEN="xoxb-1",
                 SLACK_SIGNING_SECRET="s", HANDOFF_DEFAULT_CHANNEL="CHANDOFFS", PORT=str(free_port()))
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("handoff-bot: DATABASE_URL ") and "not a SQLite database" in line, line
    assert result.stdout == ""
    assert (tmp_path / "notes.txt").read_text() == "this is not a database\n" * 100


def test_serve_with_a_malformed_setting_stops_before_serving(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", PORT="abc", SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line == "handoff-bot: PORT must be a number from 0 to 65535, not 'abc'"


def test_serve_with_a_bad_configuration_stops_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "handoffs.yml"
    config.write_text(BAD_CONFIG)
    result = run(tmp_path, "serve", HANDOFF_CONFIG=str(config), SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s",
                 PORT=str(free_port()), DATABASE_URL="sqlite:///./serve.db")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert str(config) in line and "check-config" in line
    assert not (tmp_path / "serve.db").exists()  # stopped before touching the database


# --- the same entry point in-process (faster), for the many variants ----------------------------

SETTINGS = ("DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL",
            "HANDOFF_CONFIG", "HANDOFF_DEFAULT_CHANNEL", "HANDOFF_API_TOKENS", "HOST", "PORT")


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("PORT", "8²"),
        ("HANDOFF_WORKERS", "²"),
        ("DATABASE_URL", "postgres"),
        ("HANDOFF_API_TOKENS", "zapier:short"),
        ("HANDOFF_API_TOKENS", "a:0123456789,:0123456789"),
        ("HANDOFF_API_TOKENS", "zapier:tok-shared-123,n8n:tok-shared-123"),
        ("SLACK_APP_TOKEN", "xoxb-not-an-app-token"),
        ("SLACK_API_URL", "slack.com/api"),
        ("HANDOFF_DEFAULT_CHANNEL", "#general"),
    ],
)
def test_every_malformed_setting_is_one_line_naming_it(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["migrate"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"handoff-bot: {variable} ")


def test_one_api_token_under_two_names_is_refused_without_showing_the_token() -> None:
    """The last name won: every request Zapier made was logged as n8n (the name is the actor in the log)."""
    with pytest.raises(SettingsError) as refused:
        load_settings({"HANDOFF_API_TOKENS": "zapier:tok-shared-123, n8n:tok-other-456 ,n8n:tok-shared-123"})
    assert str(refused.value) == ("HANDOFF_API_TOKENS entries 1 (zapier) and 3 (n8n) have the same token: "
                                  "give each name a token of its own")


def test_one_name_may_have_two_api_tokens_while_its_token_is_rotated() -> None:
    tokens = load_settings({"HANDOFF_API_TOKENS": "zapier:tok-old-12345,n8n:tok-n8n-12345,zapier:tok-new-12345"})
    assert tokens.api_tokens == {"tok-old-12345": "zapier", "tok-n8n-12345": "n8n", "tok-new-12345": "zapier"}
    same_entry_twice = load_settings({"HANDOFF_API_TOKENS": "zapier:tok-old-12345,zapier:tok-old-12345"})
    assert same_entry_twice.api_tokens == {"tok-old-12345": "zapier"}


def test_a_setting_in_dot_env_is_read_and_checked_too(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clean_env / ".env").write_text("PORT=eighty\n")
    assert main(["migrate"]) == 2
    assert capsys.readouterr().err.strip() == "handoff-bot: PORT must be a number from 0 to 65535, not 'eighty'"


def test_a_dot_env_line_that_cannot_be_read_stops_the_program(tmp_path: Path) -> None:
    """python-dotenv skips it with a warning: `migrate` went on with the default database (./handoffs.db)."""
    result = run(tmp_path, "migrate", dot_env=b'DATABASE_URL="sqlite:///./team.db\n')
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "handoff-bot: .env line 1 (DATABASE_URL) cannot be read: write it NAME=value, and close the quote "
        "a quoted value opens"]
    assert result.stdout == ""
    assert not (tmp_path / "handoffs.db").exists()
    assert not (tmp_path / "team.db").exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("# the team's database\n\nPORT=3000\n\n\nDATABASE_URL='sqlite:///./team.db\nHOST=0.0.0.0\n",
         ".env line 6 (DATABASE_URL) cannot be read"),
        ("PORT=3000\r\n\r\n  = 3000\r\n", ".env line 3 cannot be read"),
    ],
    ids=["after-blank-lines", "no-name"],
)
def test_a_dot_env_line_that_cannot_be_read_is_named_by_its_line(
    clean_env: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    (clean_env / ".env").write_bytes(content.encode())
    assert main(["migrate"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"handoff-bot: {says}: write it NAME=value"), line
    assert not (clean_env / "handoffs.db").exists()


def test_a_dot_env_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    """It was a UnicodeDecodeError traceback from python-dotenv, for every command."""
    result = run(tmp_path, "migrate", dot_env=b"# the team's database\nHANDOFF_DEFAULT_CHANNEL=C0B\xdcRO\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == ["handoff-bot: .env line 2 is not UTF-8 text: save the file as UTF-8"]
    assert result.stdout == ""


def test_a_dot_env_this_user_may_not_read_is_one_line_naming_it(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a PermissionError traceback (tests run as root, who reads any file: the refusal is simulated)."""
    (clean_env / ".env").write_text("PORT=8080\n")
    real_read_bytes = Path.read_bytes

    def refuse_dot_env(path: Path) -> bytes:
        if path.name == ".env":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse_dot_env)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value) == ".env cannot be read (Permission denied): let this user read it, or remove it"


def test_a_dot_env_still_reads_quotes_comments_and_references(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text('# the bot\nexport HOST="0.0.0.0"  # all interfaces\nPORT=8080\n'
                                    "HANDOFF_DEFAULT_CHANNEL='C0HANDOFFS'\nDATABASE_URL=sqlite:///./${HOST}.db\n")
    monkeypatch.setenv("PORT", "9090")  # the environment wins
    settings = load_settings()
    assert (settings.host, settings.port, settings.default_channel) == ("0.0.0.0", 9090, "C0HANDOFFS")
    assert settings.database_url == "sqlite:///./0.0.0.0.db"


def test_check_config_reads_handoff_config_when_no_path_is_given(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HANDOFF_CONFIG", str(EXAMPLE))
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.strip().endswith("OK (2 route(s), 5 kind(s))")


def test_check_config_reads_only_handoff_config_and_the_default_channel(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / ".env").write_text(f"HANDOFF_CONFIG={EXAMPLE}\nPORT=abc\nDATABASE_URL=mysql://x\n")
    monkeypatch.setenv("HANDOFF_DEFAULT_CHANNEL", "#general")  # not needed: the file has routes
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.strip() == f"{EXAMPLE}: OK (2 route(s), 5 kind(s))"
    (clean_env / "handoffs.yml").write_text("timezone: Europe/Berlin\n")
    monkeypatch.setenv("HANDOFF_DEFAULT_CHANNEL", "C0HANDOFFS")
    assert main(["check-config", "handoffs.yml"]) == 0
    assert capsys.readouterr().out.strip() == (
        "handoffs.yml: OK (1 route(s), 5 kind(s); every card goes to HANDOFF_DEFAULT_CHANNEL C0HANDOFFS)")


def test_check_config_of_a_file_without_routes_names_a_malformed_default_channel(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file needs the channel, so a malformed one is an error of this file's routes: exit 1, as when unset."""
    (clean_env / "handoffs.yml").write_text("timezone: Europe/Berlin\n")
    monkeypatch.setenv("HANDOFF_DEFAULT_CHANNEL", "#general")
    assert main(["check-config", "handoffs.yml"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "handoffs.yml: routes: HANDOFF_DEFAULT_CHANNEL must be a channel id such as C0123ABCD (not a #name), "
        "not '#general'",
        "handoffs.yml: 1 error(s)",
    ]


def test_check_config_without_a_path_stops_on_a_dot_env_it_cannot_read(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """HANDOFF_CONFIG may be on that line: which file to check is unknown, as for any command (exit 2)."""
    (clean_env / ".env").write_text("HANDOFF_CONFIG='other.yml\n")
    assert main(["check-config"]) == 2
    assert capsys.readouterr().err.startswith("handoff-bot: .env line 1 (HANDOFF_CONFIG) cannot be read")


def test_check_config_on_a_missing_or_broken_file_is_exit_1(clean_env: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "nope.yml"]) == 1
    assert "nope.yml: cannot read the file" in capsys.readouterr().out
    (clean_env / "broken.yml").write_text("routes: [\n")
    assert main(["check-config", "broken.yml"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("broken.yml: line ") and "not valid YAML" in out


def test_migrate_uses_the_default_database_url(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert (clean_env / "handoffs.db").exists()
    assert "sqlite:///./handoffs.db is up to date" in capsys.readouterr().out


def test_migrate_against_an_unreachable_database_is_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    assert main(["migrate"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "cannot reach the database" in line and "DATABASE_URL" in line


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_a_database_a_newer_bot_migrated_stops_with_one_line_naming_the_revision(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A rollback after a newer version migrated: alembic's "Can't locate revision" was a traceback, exit 1."""
    assert main(["migrate"]) == 0
    with sqlite3.connect(clean_env / "handoffs.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099_from_a_newer_bot'")
    for name, value in {"PORT": str(free_port()), "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                        "HANDOFF_DEFAULT_CHANNEL": "CHANDOFFS"}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main([command]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("handoff-bot: ") and "'0099_from_a_newer_bot'" in line, line
    assert "newer version" in line and "backup" in line, line
    with sqlite3.connect(clean_env / "handoffs.db") as connection:  # left as it was
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099_from_a_newer_bot",)]


def test_a_connection_option_postgresql_does_not_know_is_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """psycopg refuses it before connecting, as a ProgrammingError (it was a traceback)."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?sslmod=require")
    assert main(["migrate"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == ('handoff-bot: cannot reach the database (check DATABASE_URL): '
                    'invalid connection option "sslmod"')


@pytest.mark.parametrize("host", ["256.1.1.1", "no such host", "10.255.255.1"])
def test_serve_on_a_host_it_cannot_listen_on_is_one_line_naming_host(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    for name, value in {"HOST": host, "PORT": str(free_port()), "SLACK_BOT_TOKEN": "xoxb-1",
                        "SLACK_SIGNING_SECRET": "s", "HANDOFF_DEFAULT_CHANNEL": "CHANDOFFS"}.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("handoff-bot: ") and host in line and "set HOST" in line, line
    assert not (clean_env / "handoffs.db").exists()  # stopped before touching the database


def test_serve_on_a_port_in_use_is_one_line_naming_port(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for name, value in {"PORT": str(port), "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                            "HANDOFF_DEFAULT_CHANNEL": "CHANDOFFS"}.items():
            monkeypatch.setenv(name, value)
        assert main(["serve"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (f"handoff-bot: cannot listen on 127.0.0.1:{port}: Address already in use "
                    "(set HOST and PORT to a free address of this machine)")


def test_a_file_without_routes_sends_every_card_to_the_default_channel_or_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / "handoffs.yml").write_text("timezone: Europe/Berlin\n")
    assert main(["check-config"]) == 1
    assert "handoffs.yml: routes: handoffs.yml has no routes: add a route" in capsys.readouterr().out
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    assert main(["serve"]) == 2  # it used to start, then answer every handoff 503
    assert "or set HANDOFF_DEFAULT_CHANNEL" in capsys.readouterr().err
    monkeypatch.setenv("HANDOFF_DEFAULT_CHANNEL", "C0HANDOFFS")
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.strip() == (
        "handoffs.yml: OK (1 route(s), 5 kind(s); every card goes to HANDOFF_DEFAULT_CHANNEL C0HANDOFFS)")
    assert load_settings().load_handoff_config().fallback().channel == "C0HANDOFFS"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'business_hours: {start: "09:00", end: 24:00}\n', "business_hours.end: must be a time of day"),
        (b"# B\xfcro\nroutes:\n  - {name: default, channel: C0HANDOFFS}\n", "not UTF-8 text"),
        (b"kinds: {2024: {}}\n", "kinds[2024]: "),
    ],
    ids=["24-00", "latin-1", "numeric-kind"],
)
def test_files_that_used_to_give_a_traceback_give_their_problem(
    clean_env: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    (clean_env / "handoffs.yml").write_bytes(content)
    assert main(["check-config"]) == 1
    assert says in capsys.readouterr().out
