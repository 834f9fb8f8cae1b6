"""The `/handoff` grammar on its own: text in, a typed command (or a CommandError naming the problem) out."""

from __future__ import annotations

import pytest

from bot.slack.command_parser import (
    USAGE,
    Assign,
    Claim,
    Close,
    Command,
    CommandError,
    Help,
    Mine,
    New,
    Reopen,
    Show,
    Stalled,
    Stats,
    parse_command,
)

KINDS = frozenset({"task", "lead", "reply"})


def parse(text: str) -> Command:
    return parse_command(text, known_kinds=KINDS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("   ", Help()),
        ("help", Help()),
        ("HELP", Help()),
        ("new", New(None)),
        ("new Call ACME back  about the renewal", New("Call ACME back about the renewal")),
        ("mine", Mine()),
        ("stalled", Stalled()),
        ("stalled <@UANNA|anna>", Stalled(user="UANNA")),
        ("stalled <@W012ABC>", Stalled(user="W012ABC")),
        ("stalled <#CSALES|sales>", Stalled(channel="CSALES")),
        ("stalled Lead", Stalled(kind="lead")),
        ("stalled task <#CHANDOFFS> <@UBEN|ben>", Stalled(user="UBEN", channel="CHANDOFFS", kind="task")),
        ("show H-42", Show(42)),
        ("show h-42", Show(42)),
        ("show 42", Show(42)),
        ("claim H-7", Claim(7)),
        ("assign H-42 <@UBEN|ben>", Assign(42, "UBEN")),
        ("assign H-42 <@UBEN>", Assign(42, "UBEN")),
        ("close H-42 done", Close(42, "done", None)),
        ("close H-42 done sent the quote, all good", Close(42, "done", "sent the quote, all good")),
        ("close H-42", Close(42, None, None)),
        ("close H-42 done Sent.\n\n- price agreed\n- PO 17 ", Close(42, "done", "Sent.\n\n- price agreed\n- PO 17")),
        ("close\tH-42\ndone\nline one\nline two", Close(42, "done", "line one\nline two")),
        ("reopen H-3", Reopen(3)),
        ("stats", Stats("7d")),
        ("stats 7d", Stats("7d")),
        ("stats 30D", Stats("30d")),
        ("stats 90d", Stats("90d")),
    ],
)
def test_valid_commands_parse(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("frobnicate H-1", "`frobnicate` is not a /handoff command"),
        ("claim", "`claim` needs a handoff reference"),
        ("show", "`show` needs a handoff reference"),
        ("close", "`close` needs a handoff reference"),
        ("reopen", "`reopen` needs a handoff reference"),
        ("assign", "`assign` needs a handoff reference"),
        ("show H-abc", "`H-abc` is not a handoff reference"),
        ("claim H-0", "`H-0` is not a handoff reference"),
        ("show H-²", "`H-²` is not a handoff reference"),  # a digit to str.isdigit, not to int()
        ("show ４２", "`４２` is not a handoff reference"),
        ("close #42 done", "`#42` is not a handoff reference"),
        ("show H-42 extra", "unexpected `extra`"),
        ("mine please", "unexpected `please`"),
        ("assign H-42", "`assign` needs the person"),
        ("assign H-42 @bob", "`@bob` is not a user"),
        ("assign H-42 bob", "`bob` is not a user"),
        ("assign H-42 <#C1>", "`<#C1>` is not a user"),
        ("assign H-42 <#CSALES|sales>", "`<#CSALES|sales>` is not a user"),
        ("assign H-42 <!here>", "`<!here>` is not a user"),
        ("assign H-42 <@UBEN> <@UANNA>", "unexpected `<@UANNA>`"),
        ("stalled @bob", "`@bob` is not a user"),
        ("stalled <@bob>", "`<@bob>` is not a user"),
        ("stalled #sales", "`#sales` is not a channel"),
        ("stalled <#C1>", "`<#C1>` is not a channel"),
        ("stalled gadget", "`gadget` is neither a @user, a #channel nor a kind (lead, reply, task)"),
        ("stats 8d", "`8d` is not a period"),
        ("stats week", "`week` is not a period"),
        ("stats 7", "`7` is not a period"),
        ("stats 7d 30d", "unexpected `30d`"),
    ],
)
def test_bad_input_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert problem in raised.value.problem


def test_the_usage_line_names_every_subcommand() -> None:
    for part in ("help", "new [title]", "mine", "stalled [@user] [#channel] [kind]", "show H-42", "claim H-42",
                 "assign H-42 @user", "close H-42 <outcome> [note]", "reopen H-42", "stats [7d|30d|90d]"):
        assert part in USAGE


@pytest.mark.parametrize(("text", "kind"), [
    ("stalled CRM-Update", "CRM-Update"), ("stalled crm-update", "CRM-Update"), ("stalled LEAD", "lead"),
    ("stalled Ops", "Ops"), ("stalled ops", "ops"),  # two kinds that differ only in case: the exact one
])
def test_stalled_finds_a_configured_kind_spelled_as_configured(text: str, kind: str) -> None:
    """A kind configured with capitals (`CRM-Update`) was refused as 'neither a @user, a #channel nor a kind'."""
    assert parse_command(text, known_kinds=frozenset({"lead", "CRM-Update", "Ops", "ops"})) == Stalled(kind=kind)


def test_a_kind_named_only_up_to_case_by_two_kinds_is_refused() -> None:
    with pytest.raises(CommandError):
        parse_command("stalled OPS", known_kinds=frozenset({"Ops", "ops"}))
