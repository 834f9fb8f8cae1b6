"""The `/handoff` grammar (SPEC §6): text in, a typed command out, or a CommandError saying what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handoffs.model import parse_ref

USAGE = (
    "Usage: `/handoff help` · `new [title]` · `mine` · `stalled [@user] [#channel] [kind]` · `show H-42` · "
    "`claim H-42` · `assign H-42 @user` · `close H-42 <outcome> [note]` · `reopen H-42` · `stats [7d|30d|90d]`"
)
PERIODS = ("7d", "30d", "90d")

_USER = re.compile(r"^<@([UW][A-Z0-9]{2,20})(?:\|[^>]*)?>$")
_CHANNEL = re.compile(r"^<#([CG][A-Z0-9]{2,20})(?:\|[^>]*)?>$")


class CommandError(Exception):
    """Bad input: `problem` says what was wrong; the answer adds the usage line."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class New:
    title: str | None


@dataclass(frozen=True)
class Mine:
    pass


@dataclass(frozen=True)
class Stalled:
    user: str | None = None
    channel: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Show:
    handoff_id: int


@dataclass(frozen=True)
class Claim:
    handoff_id: int


@dataclass(frozen=True)
class Assign:
    handoff_id: int
    user: str


@dataclass(frozen=True)
class Close:
    handoff_id: int
    outcome: str | None
    note: str | None


@dataclass(frozen=True)
class Reopen:
    handoff_id: int


@dataclass(frozen=True)
class Stats:
    period: str


Command = Help | New | Mine | Stalled | Show | Claim | Assign | Close | Reopen | Stats


def _ref(words: list[str], position: int, verb: str) -> int:
    if len(words) <= position:
        raise CommandError(f"`{verb}` needs a handoff reference such as H-42.")
    handoff_id = parse_ref(words[position])
    if handoff_id is None:
        raise CommandError(f"`{words[position]}` is not a handoff reference (write H-42).")
    return handoff_id


def _user(word: str) -> str:
    match = _USER.match(word)
    if not match:
        raise CommandError(f"`{word}` is not a user: mention the person with @ and pick them from the list.")
    return match.group(1)


def _no_more(words: list[str], count: int, verb: str) -> None:
    if len(words) > count:
        raise CommandError(f"`{verb}` takes no more than {count - 1} argument(s); unexpected `{words[count]}`.")


def _rest_after(text: str, count: int) -> str | None:
    """What follows the first `count` words, as written: a note keeps its line breaks."""
    parts = text.split(maxsplit=count)
    if len(parts) <= count:
        return None
    return parts[count].strip() or None


def _stalled(words: list[str], known_kinds: frozenset[str]) -> Stalled:
    user = channel = kind = None
    for word in words[1:]:
        if word.startswith("<@"):
            user = _user(word)
        elif word.startswith("<#"):
            match = _CHANNEL.match(word)
            if not match:
                raise CommandError(f"`{word}` is not a channel: pick it with #.")
            channel = match.group(1)
        elif word.startswith("@"):
            raise CommandError(f"`{word}` is not a user: mention the person with @ and pick them from the list.")
        elif word.startswith("#"):
            raise CommandError(f"`{word}` is not a channel: pick it with # from the list.")
        elif (named := _kind_named(word, known_kinds)) is not None:
            kind = named
        else:
            kinds = ", ".join(sorted(known_kinds))
            raise CommandError(f"`{word}` is neither a @user, a #channel nor a kind ({kinds}).")
    return Stalled(user, channel, kind)


def _kind_named(word: str, known_kinds: frozenset[str]) -> str | None:
    """The configured kind `word` names, spelled as configured (`crm-update` finds `CRM-Update`); an exact match
    first, for kinds that differ only in case."""
    if word in known_kinds:
        return word
    matches = [kind for kind in known_kinds if kind.casefold() == word.casefold()]
    return matches[0] if len(matches) == 1 else None


def parse_command(text: str, *, known_kinds: frozenset[str]) -> Command:
    words = text.split()
    if not words:
        return Help()
    verb = words[0].lower()
    if verb == "help":
        return Help()
    if verb == "new":
        return New(" ".join(words[1:]) or None)
    if verb == "mine":
        _no_more(words, 1, verb)
        return Mine()
    if verb == "stalled":
        return _stalled(words, known_kinds)
    if verb in ("show", "claim", "reopen"):
        handoff_id = _ref(words, 1, verb)
        _no_more(words, 2, verb)
        by_ref: dict[str, type[Show] | type[Claim] | type[Reopen]] = {"show": Show, "claim": Claim, "reopen": Reopen}
        return by_ref[verb](handoff_id)
    if verb == "assign":
        handoff_id = _ref(words, 1, verb)
        if len(words) < 3:
            raise CommandError("`assign` needs the person: `/handoff assign H-42 @user`.")
        _no_more(words, 3, verb)
        return Assign(handoff_id, _user(words[2]))
    if verb == "close":
        handoff_id = _ref(words, 1, verb)
        outcome = words[2] if len(words) > 2 else None
        return Close(handoff_id, outcome, _rest_after(text, 3))
    if verb == "stats":
        period = words[1].lower() if len(words) > 1 else "7d"
        _no_more(words, 2, verb)
        if period not in PERIODS:
            raise CommandError(f"`{words[1]}` is not a period: use 7d, 30d or 90d.")
        return Stats(period)
    raise CommandError(f"`{words[0]}` is not a /handoff command.")
