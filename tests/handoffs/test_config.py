from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from handoffs.config import ConfigError, default_config, load_config, parse_config
from handoffs.model import Urgency

EXAMPLE = Path(__file__).resolve().parents[2] / "handoffs.example.yml"


def problems_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


def test_the_shipped_example_is_valid_and_means_what_its_comments_say() -> None:
    config = load_config(EXAMPLE)
    assert config.timezone == "Europe/Berlin"
    assert config.business_hours is not None
    assert (config.business_hours.start, config.business_hours.end) == (time(9), time(18))
    assert config.managers == ["U0MANAGER"]
    assert config.review.channel == "C0REVIEW"
    assert [route.name for route in config.routes] == ["hot-leads", "default"]
    assert config.routes[0].owners is not None and config.routes[0].owners.round_robin == ["U0ANNA", "U0BEN"]
    assert config.fallback() is config.routes[1]
    # kinds in the file override the built-in ones, and the other built-ins stay
    assert config.kinds["lead"].required_facts == ["company", "contact"]
    assert config.kinds["lead"].label == "Lead"
    assert config.kinds["reply"].close_on_approve is True
    assert {"task", "intake", "support"} <= set(config.kinds)
    assert config.sla[Urgency.urgent].claim == timedelta(minutes=15)
    assert config.sla[Urgency.low].resolve == timedelta(days=7)
    assert config.nudges.escalate_to == "C0LEADS"
    assert config.dedupe.window == timedelta(hours=24)
    assert config.outcomes_for("lead") == ["won", "lost", "nurture", "disqualified"]
    assert config.outcomes_for("task") == ["done", "no_action", "duplicate"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"routes": [{"name": "a", "chanel": "C0SALES"}]}, "routes[0].chanel: unknown key (did you mean 'channel'?)"),
        ({"review": {"aprovers": ["U0LEAD"]}}, "review.aprovers: unknown key (did you mean 'approvers'?)"),
        ({"timezon": "UTC"}, "timezon: unknown key (did you mean 'timezone'?)"),
        (
            {"routes": [{"name": "a", "channel": "C0A", "when": {"urgncy": "high"}}]},
            "routes[0].when.urgncy: unknown key (did you mean 'urgency'?)",
        ),
        # keys under a mapping (a kind's name, an urgency) are walked through too
        (
            {"kinds": {"lead": {"required_fact": ["x"]}}},
            "kinds.lead.required_fact: unknown key (did you mean 'required_facts'?)",
        ),
        (
            {"sla": {"urgent": {"claim": "1m", "resolv": "2h"}}},
            "sla.urgent.resolv: unknown key (did you mean 'resolve'?)",
        ),
        ({"routes": [{"name": "a", "zzz": 1}]}, "routes[0].zzz: unknown key"),
    ],
)
def test_a_typo_in_a_key_names_its_path_and_suggests_the_key(data: dict[str, Any], expected: str) -> None:
    assert expected in problems_of(data)


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"routes": [{"name": "a", "channel": "#sales"}]}, "routes[0].channel", "Slack channel id"),
        ({"managers": ["@boss"]}, "managers[0]", "Slack user id"),
        ({"routes": [{"name": "a", "channel": "C0A", "queue": "C0A"}]}, "routes[0].queue", "user group id"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
        ({"sla": {"high": {"claim": "soon", "resolve": "1d"}}}, "sla.high.claim", "not a duration"),
        ({"nudges": {"repeat_every": "400d"}}, "nudges.repeat_every", "too long"),
        ({"business_hours": {"start": "18:00", "end": "09:00"}}, "business_hours", "end must be later"),
        ({"business_hours": {"days": ["monday"]}}, "business_hours.days[0]", "'mon'"),
        ({"review": {"confidence_below": 1.5}}, "review.confidence_below", "less than or equal to 1"),
        ({"routes": [{"name": "a", "when": {"urgency": "hot"}}]}, "routes[0].when.urgency[0]", "'urgent'"),
        ({"routes": [{"name": "a", "owner": "U0A", "owners": {"round_robin": ["U0B"]}}]}, "routes[0]", "not both"),
        ({"webhooks": [{"url": "http://hooks.example.com/x"}]}, "webhooks[0].url", "https"),
        ({"webhooks": [{"url": "https://h.example.com", "events": ["deleted"]}]}, "webhooks[0].events[0]", "'closed'"),
        ({"intake_channels": [{"channel": "C0AI", "producers": []}]}, "intake_channels[0].producers", "at least 1"),
        ({"outcomes": []}, "outcomes", "at least 1"),
        ({"nudges": {"escalate_to": "#leads"}}, "nudges.escalate_to", "Slack channel id"),
    ],
)
def test_every_value_error_names_its_path(data: dict[str, Any], path: str, words: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(f"{path}: ") and words in p for p in problems), problems


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ("sla: {normal: {claim: -60.0, resolve: 3d}}", "sla.normal.claim"),
        ("sla: {high: {claim: 0.0, resolve: 1d}}", "sla.high.claim"),
        ("nudges: {repeat_every: 1.0e+13}", "nudges.repeat_every"),
        ("nudges: {check_every: 30.5}", "nudges.check_every"),
        ("dedupe: {window: -5.0}", "dedupe.window"),
        ("dedupe: {window: .inf}", "dedupe.window"),
        ("dedupe: {window: 3600}", "dedupe.window"),
        ("dedupe: {window: true}", "dedupe.window"),
        ("sla: {low: {claim: 0s, resolve: 7d}}", "sla.low.claim"),
        ("dedupe: {window: -5m}", "dedupe.window"),
    ],
)
def test_a_duration_that_is_not_a_positive_number_and_a_unit_is_refused_with_a_hint(
    tmp_path: Path, yaml_text: str, path: str
) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: not a duration: "), problem
    assert problem.endswith("(write a positive number and a unit: 30s, 15m, 4h, 3d)"), problem


@pytest.mark.parametrize(
    "rule",
    [
        {"claim": timedelta(0), "resolve": timedelta(days=1)},
        {"claim": timedelta(seconds=-60), "resolve": timedelta(days=1)},
        {"claim": timedelta(hours=1), "resolve": timedelta(days=400)},
    ],
)
def test_a_timedelta_given_in_code_is_held_to_the_same_range(rule: dict[str, timedelta]) -> None:
    assert problems_of({"sla": {"normal": rule}})


def test_a_field_that_takes_a_channel_or_a_user_gives_one_clean_problem() -> None:
    problems = problems_of({"nudges": {"escalate_to": "#leads"}})
    assert len(problems) == 1, problems
    assert problems[0].startswith("nudges.escalate_to: ")
    assert "channel id" in problems[0] and "user id" in problems[0]


def test_all_errors_are_listed_at_once() -> None:
    problems = problems_of({
        "timezone": "Nowhere/Else",
        "managers": ["boss"],
        "routes": [{"name": "a", "chanel": "C0A"}, {"name": "b", "channel": "general"}],
    })
    assert len(problems) == 4
    assert [p.split(":")[0] for p in problems] == ["timezone", "managers[0]", "routes[0].chanel", "routes[1].channel"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"routes": [{"name": "a", "channel": "C0A"}, {"name": "a", "channel": "C0B"}]}, "repeated: a"),
        ({"routes": [{"name": "a", "channel": "C0A"}], "fallback_route": "b"}, "fallback_route: no route is named 'b'"),
        ({"routes": [{"name": "a", "when": {"kind": "leed"}, "channel": "C0A"}]}, "routes[0].when.kind: unknown kind"),
    ],
)
def test_cross_reference_errors_name_their_path(data: dict[str, Any], expected: str) -> None:
    assert any(expected in p for p in problems_of(data))


def test_top_level_must_be_a_mapping() -> None:
    assert problems_of(["routes"]) == ["(top level): must be a mapping of settings"]


def test_an_empty_file_means_the_defaults(tmp_path: Path) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_text("# nothing yet\n")
    config = load_config(file)
    assert config.routes == []
    assert config.timezone == "UTC"
    assert config.outcomes == ["done", "no_action", "duplicate"]


def test_unquoted_yaml_times_are_read_as_clock_times(tmp_path: Path) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_text("business_hours: {start: 08:30, end: 17:00}\ndigest: {channel: C0LEADS, at: 09:00}\n")
    config = load_config(file)
    assert config.business_hours is not None
    assert (config.business_hours.start, config.business_hours.end) == (time(8, 30), time(17))
    assert config.digest is not None and config.digest.at == time(9)


def test_broken_yaml_names_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_text("routes:\n  - name: a\n    channel: [C0A\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert caught.value.source == str(file)
    assert caught.value.problems[0].startswith("line ")
    assert "not valid YAML" in caught.value.problems[0]


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.yml")


def test_default_config_is_one_route_to_the_default_channel() -> None:
    config = default_config("C0HANDOFFS")
    assert [(r.name, r.channel) for r in config.routes] == [("default", "C0HANDOFFS")]
    assert config.fallback() is config.routes[0]
    assert default_config(None).routes == []


def test_fallback_is_the_named_route_or_the_last_catch_all() -> None:
    routes = [
        {"name": "first", "channel": "C0ONE"},
        {"name": "leads", "when": {"kind": "lead"}, "channel": "C0LEADS"},
        {"name": "last", "channel": "C0LAST"},
    ]
    assert parse_config({"routes": routes}).fallback().name == "last"  # type: ignore[union-attr]
    assert parse_config({"routes": routes, "fallback_route": "leads"}).fallback().name == "leads"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"routes": [{"name": "leads", "when": {"kind": "lead"}, "channel": "C0L"}]},
         "routes: no route takes the handoffs the others do not match"),
        ({"routes": [{"name": "ops", "owner": "U0OPS"}], "fallback_route": "ops"},
         "fallback_route: route 'ops' has no channel"),
        ({"routes": [{"name": "ops", "owner": "U0OPS"}]}, "routes: no route takes the handoffs"),
    ],
)
def test_a_file_that_would_leave_a_handoff_nowhere_to_go_is_refused(data: dict[str, Any], expected: str) -> None:
    """SPEC §4: no handoff is ever left without an owner or a queue (these files used to pass, then every handoff
    no route took was answered 503)."""
    assert [p for p in problems_of(data) if p.startswith(expected)], problems_of(data)


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        # YAML reads an unquoted 24:00 as the number 1440: read as seconds it became 00:24 UTC, then a traceback
        ('business_hours: {start: "09:00", end: 24:00}', "business_hours.end: "),
        ("digest: {channel: C0LEADS, at: 24:30}", "digest.at: "),  # was read as 00:24:30
        ("business_hours: {start: 9.5}", "business_hours.start: "),
        ("business_hours: {start: yes}", "business_hours.start: "),
        ('business_hours: {start: "09:00+02:00"}', "business_hours.start: "),
        ("kinds: {2024: {}}", "kinds[2024]: "),  # was a TypeError sorting kind names
        ("kinds: {'': {}}", "kinds.: "),  # a kind no handoff could name (1–50 characters)
        (f"kinds: {{{'k' * 51}: {{}}}}", f"kinds.{'k' * 51}: "),
    ],
)
def test_a_bad_clock_time_or_kind_name_is_a_problem_with_its_path(
    tmp_path: Path, yaml_text: str, problem: str
) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert [p for p in caught.value.problems if p.startswith(problem)], caught.value.problems


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_bytes(b"# B\xfcro Berlin\nroutes:\n  - {name: default, channel: C0HANDOFFS}\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 4\): save the file as UTF-8"):
        load_config(file)


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        # the whole first `routes` list, the one meant, was dropped ("last one wins") and the file passed
        ("routes:\n  - {name: sales, when: {kind: lead}, channel: C0SALES}\n  - {name: default, channel: C0A}\n"
         "routes:\n  - {name: default, channel: C0B}\n",
         "routes: key written twice (line 1 and line 4)"),
        ("routes:\n  - {name: default, channel: C0A, channel: C0B}\n",
         "routes[0].channel: key written twice (line 2, column 21 and line 2, column 35)"),
        ("kinds:\n  lead:\n    label: Lead\n    required_facts: [company]\n    label: Leads\n",
         "kinds.lead.label: key written twice (line 3 and line 5)"),
    ],
)
def test_a_key_written_twice_is_a_problem_naming_it_and_its_lines(tmp_path: Path, yaml_text: str, problem: str) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert problem in caught.value.problems, caught.value.problems


def test_every_key_written_twice_is_listed_with_the_other_problems(tmp_path: Path) -> None:
    file = tmp_path / "handoffs.yml"
    file.write_text("managers: [U0A]\nmanagers: [U0B]\nroutes:\n  - {name: default, chanel: C0A, chanel: C0B}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert caught.value.problems == [
        "managers: key written twice (line 1 and line 2)",
        "routes[0].chanel: key written twice (line 4, column 21 and line 4, column 34)",
        "routes[0].chanel: unknown key (did you mean 'channel'?)",
    ]


def test_anchors_and_merge_keys_still_work_and_a_merged_key_may_be_overridden(tmp_path: Path) -> None:
    """YAML's merge key (`<<`) brings in another mapping's keys, and a key written next to it wins: that is not a
    key written twice. Neither is one anchor merged in several places."""
    file = tmp_path / "handoffs.yml"
    file.write_text(
        "sla:\n"
        "  urgent: &fast {claim: 15m, resolve: 4h}\n"
        "  high: {<<: *fast, resolve: 1d}\n"
        "routes:\n"
        "  - &leads {name: leads, when: {kind: lead}, channel: C0LEADS, approvers: [U0LEAD]}\n"
        "  - {<<: [*leads], name: replies, when: {kind: reply}, channel: C0REPLIES}\n"
        "  - <<: *leads\n"
        "    name: default\n"
        "    when: {}\n"
    )
    config = load_config(file)
    assert config.sla[Urgency.high] == config.sla[Urgency.urgent].model_copy(update={"resolve": timedelta(days=1)})
    assert [(r.name, r.when.kind, r.channel, r.approvers) for r in config.routes] == [
        ("leads", ["lead"], "C0LEADS", ["U0LEAD"]),
        ("replies", ["reply"], "C0REPLIES", ["U0LEAD"]),
        ("default", None, "C0LEADS", ["U0LEAD"]),
    ]


def test_a_file_nested_too_deeply_is_one_problem_not_a_crash(tmp_path: Path) -> None:
    """PyYAML's composer recurses at every level: `managers: [[[…]]]` a thousand deep was a RecursionError."""
    file = tmp_path / "handoffs.yml"
    file.write_text("managers: " + "[" * 1000 + "]" * 1000 + "\n")  # (PyYAML takes seconds to scan 3000)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert caught.value.source == str(file)
    assert len(caught.value.problems) == 1 and "nested too deeply" in caught.value.problems[0]
