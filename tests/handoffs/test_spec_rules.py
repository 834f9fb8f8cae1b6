"""Rules of SPEC §2–§5 that the code once missed: due times, review reasons, the fallback route, one owner rule
a route, and the claim deadline against the producer's due time. Pure domain."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from handoffs.config import ConfigError, HandoffConfig, parse_config
from handoffs.intake import IntakePlan, plan_intake, review_reasons
from handoffs.lifecycle import Action, Actor, Request, decide
from handoffs.model import HandoffEdit, HandoffIn, Status
from tests.conftest import DEFAULT_CONFIG
from tests.factories import NOW, handoff_in, lead, make_handoff


@pytest.fixture
def config() -> HandoffConfig:
    return parse_config(DEFAULT_CONFIG)


def plan(config: HandoffConfig, **fields: Any) -> IntakePlan:
    return plan_intake(HandoffIn.model_validate(fields), config, actor="producer", now=NOW)


# --- §2 validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1893456000", "1893456000.5"])
def test_a_due_at_written_as_a_string_of_digits_is_refused(value: str) -> None:
    """SPEC §2: `due_at` is an "ISO-8601 datetime with offset". The model refuses a JSON number (a Unix time) on
    purpose (`_no_number`); the same Unix time in quotes was read as seconds since 1970 and stored as a due
    time of 2030-01-01, with no error to the producer."""
    with pytest.raises(ValidationError) as caught:
        HandoffIn.model_validate({"title": "t", "next_action": "n", "due_at": value})
    assert [error["loc"] for error in caught.value.errors()] == [("due_at",)]
    with pytest.raises(ValidationError):
        HandoffEdit.model_validate({"due_at": value})


# --- §4 review triggers ---------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.6999, 0.696])
def test_a_review_reason_never_says_a_confidence_is_below_the_same_number(
    config: HandoffConfig, confidence: float,
) -> None:
    """SPEC §4.4: "confidence below the threshold … the card says why". 0.6999 with a 0.7 threshold reads
    read "confidence 0.70 is below 0.70" (both rounded to two places): the card contradicted itself."""
    reasons = review_reasons(handoff_in(confidence=confidence), config)
    assert len(reasons) == 1
    shown = [float(number) for number in re.findall(r"\d+(?:\.\d+)?", reasons[0])]
    assert len(shown) == 2, reasons
    assert shown[0] < shown[1], reasons


# --- §4 routing ---------------------------------------------------------------------------------


def test_a_matching_route_without_anyone_to_own_it_falls_back_to_the_fallback_route() -> None:
    """SPEC §4.5: "A route without a reachable owner falls back to the fallback route." The code went on to the
    next route that happened to match instead, so a lead landed in another team's route."""
    config = parse_config({"routes": [
        {"name": "orphan", "when": {"kind": "lead"}, "approvers": ["U0BOSS"]},
        {"name": "partners", "when": {"kind": "lead"}, "channel": "C0PARTNERS", "owner": "U0PARTNER"},
        {"name": "default", "channel": "C0D"},
    ]})
    result = plan(config, **lead())
    assert (result.route, result.channel) == ("default", "C0D")
    assert result.owner is None and result.status is Status.open


# --- §4 handoffs.yml validation -------------------------------------------------------------------


@pytest.mark.parametrize("owner_rule", [{"owner": "U0ANNA"}, {"owners": {"round_robin": ["U0ANNA", "U0BEN"]}}])
def test_a_route_with_a_person_and_a_user_group_queue_is_refused(owner_rule: dict[str, Any]) -> None:
    """SPEC §4.5: a route names an owner *or* an owner pool: "fixed user, round robin, or a user group queue".
    `owner` with `owners` is refused ("set either owner or owners, not both"), but `owner`/`owners` with `queue`
    was accepted and the queue silently ignored: the handoff started claimed by the person, never in S0OPS."""
    data = {"routes": [{"name": "ops", "channel": "C0OPS", "queue": "S0OPS", **owner_rule}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert any(problem.startswith("routes[0]") for problem in caught.value.problems), caught.value.problems


# --- §2 / §5 deadlines ------------------------------------------------------------------------------


def test_the_claim_deadline_is_never_later_than_the_producers_due_time(config: HandoffConfig) -> None:
    """SPEC §2: `due_at` from the producer; §5: an open handoff is stalled only "past `claim_by`". A low-urgency
    handoff due in 30 minutes got claim_by = now + 1d: nobody was nudged until a day after it was due."""
    due = NOW.replace(minute=30).isoformat()
    result = plan(config, title="t", next_action="n", urgency="low", due_at=due)
    assert result.status is Status.open
    assert result.claim_by <= result.due_at, (result.claim_by, result.due_at)


def test_an_edit_that_moves_the_due_time_before_the_claim_deadline_brings_it_along(config: HandoffConfig) -> None:
    """As at intake: an open handoff (stalled only past `claim_by`) whose due time an approver moves to 30 minutes
    from now is not left unclaimed, un-nudged, until tomorrow."""
    handoff = make_handoff(status=Status.open, owner=None, queue="CSALES", approvers=["UANNA"],
                           claim_by=NOW + timedelta(days=1), due_at=NOW + timedelta(days=3))
    due = NOW + timedelta(minutes=30)
    change = decide(handoff, Request(Action.edit, edit=HandoffEdit(due_at=due)), Actor("UANNA"), config, NOW)
    assert change.updates["due_at"] == due and change.updates["claim_by"] == due
    assert change.data["changes"]["claim_by"] == {"old": (NOW + timedelta(days=1)).isoformat(), "new": due.isoformat()}
    later = decide(handoff, Request(Action.edit, edit=HandoffEdit(due_at=NOW + timedelta(days=5))), Actor("UANNA"),
                   config, NOW)
    assert "claim_by" not in later.updates  # a later due time leaves the claim deadline alone
