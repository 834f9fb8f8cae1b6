"""Which webhooks a change causes and what each says: pure, no database, no HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handoffs.config import HandoffConfig, parse_config
from handoffs.lifecycle import Action, Actor, Request, decide
from handoffs.model import Status
from handoffs.ports import Effect
from handoffs.public import handoff_json
from handoffs.webhooks import WEBHOOK, submitter, webhook_effects, webhook_effects_for_change
from tests.factories import NOW, make_handoff

CALLBACK = "https://producer.test/callback/42"
DECISIONS = "https://automation.test/hooks/decisions"
EVERYTHING = "https://audit.test/all"


def config(**extra: Any) -> HandoffConfig:
    return parse_config({
        "routes": [{"name": "default", "channel": "CHANDOFFS"}],
        "webhooks": [
            {"url": DECISIONS, "events": ["approved", "rejected", "closed"], "secret_env": "DECISIONS_SECRET"},
            {"url": EVERYTHING},
        ],
        **extra,
    })


def body(effect: Effect) -> dict[str, Any]:
    return dict(json.loads(effect.payload["body"]))


def targets(effects: list[Effect]) -> list[tuple[str | None, str, str | None]]:
    return [(e.target, e.payload["event"], e.payload["secret_env"]) for e in effects]


def test_the_callback_gets_every_event_and_configured_endpoints_only_theirs() -> None:
    handoff = make_handoff(callback_url=CALLBACK)
    actor = Actor("UOWNER")

    claimed = webhook_effects(handoff, "claimed", actor, config(), at=NOW)
    approved = webhook_effects(handoff, "approved", actor, config(), at=NOW)

    assert targets(claimed) == [(CALLBACK, "claimed", None), (EVERYTHING, "claimed", None)]
    assert targets(approved) == [(CALLBACK, "approved", None), (DECISIONS, "approved", "DECISIONS_SECRET"),
                                 (EVERYTHING, "approved", None)]
    assert all(e.kind == WEBHOOK for e in claimed + approved)


def test_without_a_callback_or_a_matching_endpoint_nothing_is_sent() -> None:
    handoff = make_handoff(callback_url=None)
    assert webhook_effects(handoff, "claimed", Actor("UOWNER"), parse_config({}), at=NOW) == []
    assert targets(webhook_effects(handoff, "claimed", Actor("UOWNER"), config(), at=NOW)) == [
        (EVERYTHING, "claimed", None)
    ]


@pytest.mark.parametrize("event", ["released", "reassigned", "snoozed", "reopened", "nudged", "refused"])
def test_events_that_are_not_webhook_events_send_nothing(event: str) -> None:
    assert webhook_effects(make_handoff(callback_url=CALLBACK), event, Actor("UOWNER"), config(), at=NOW) == []


def test_a_url_that_is_both_the_callback_and_an_endpoint_gets_one_delivery_signed_with_the_endpoints_secret() -> None:
    handoff = make_handoff(callback_url=DECISIONS)
    assert targets(webhook_effects(handoff, "closed", Actor("UOWNER"), config(), at=NOW)) == [
        (DECISIONS, "closed", "DECISIONS_SECRET"), (EVERYTHING, "closed", None)
    ]
    assert targets(webhook_effects(handoff, "claimed", Actor("UOWNER"), config(), at=NOW)) == [
        (DECISIONS, "claimed", "DECISIONS_SECRET"), (EVERYTHING, "claimed", None)  # its receiver knows one secret
    ]


@pytest.mark.parametrize("callback", [
    "HTTPS://Automation.TEST/hooks/decisions", "https://automation.test:443/hooks/decisions",
    "https://automation.test./hooks/decisions",
])
def test_one_receiver_written_another_way_is_still_one_delivery_with_its_secret(callback: str) -> None:
    handoff = make_handoff(callback_url=callback)
    assert targets(webhook_effects(handoff, "closed", Actor("UOWNER"), config(), at=NOW)) == [
        (DECISIONS, "closed", "DECISIONS_SECRET"), (EVERYTHING, "closed", None)
    ]


@pytest.mark.parametrize("callback", [
    "https://automation.test/hooks/Decisions", "https://automation.test:8443/hooks/decisions",
    "http://automation.test/hooks/decisions", "https://automation.test/hooks/decisions?x=1",
])
def test_another_path_port_scheme_or_query_is_another_receiver(callback: str) -> None:
    handoff = make_handoff(callback_url=callback)
    assert targets(webhook_effects(handoff, "closed", Actor("UOWNER"), config(), at=NOW)) == [
        (callback, "closed", None), (DECISIONS, "closed", "DECISIONS_SECRET"), (EVERYTHING, "closed", None)
    ]


def test_the_body_is_fixed_json_with_the_event_the_delivery_the_handoff_and_the_actor() -> None:
    handoff = make_handoff(callback_url=CALLBACK, facts={"company": "ACME"})
    [effect] = webhook_effects(handoff, "escalated", Actor.system("sla"), parse_config({}), at=NOW)

    assert set(effect.payload) == {"delivery", "event", "body", "secret_env"}  # no secret value, ever
    assert isinstance(effect.payload["body"], str)
    sent = body(effect)
    assert sent == {
        "event": "escalated",
        "delivery": effect.payload["delivery"],
        "occurred_at": NOW.isoformat(),
        "handoff": handoff_json(handoff, callback_url=False),
        "actor": {"id": "sla", "type": "system"},
    }
    assert sent["handoff"]["ref"] == "H-42" and sent["handoff"]["facts"] == {"company": "ACME"}
    assert CALLBACK not in effect.payload["body"]  # other receivers get this body too
    assert len(effect.payload["delivery"]) == 32


def test_every_delivery_has_its_own_id() -> None:
    effects = [
        *webhook_effects(make_handoff(callback_url=CALLBACK), "approved", Actor("UOWNER"), config(), at=NOW),
        *webhook_effects(make_handoff(callback_url=CALLBACK), "approved", Actor("UOWNER"), config(), at=NOW),
    ]
    ids = [e.payload["delivery"] for e in effects]
    assert len(set(ids)) == len(ids) == 6
    assert all(body(e)["delivery"] == e.payload["delivery"] for e in effects)


def test_a_change_is_described_by_the_handoff_after_it() -> None:
    handoff = make_handoff(status=Status.open, owner=None, callback_url=CALLBACK, version=3)
    change = decide(handoff, Request(Action.claim), Actor("UBOB"), config(), NOW)

    [callback, _] = webhook_effects_for_change(handoff, change, Actor("UBOB"), config(), at=NOW)

    sent = body(callback)
    assert sent["event"] == "claimed"
    assert (sent["handoff"]["status"], sent["handoff"]["owner"], sent["handoff"]["version"]) == ("claimed", "UBOB", 4)
    assert sent["handoff"]["updated_at"] == NOW.isoformat()
    assert sent["actor"] == {"id": "UBOB", "type": "user"}
    assert handoff.status is Status.open  # the handoff given is left as it was


def test_an_approval_that_closes_the_handoff_sends_approved_then_closed() -> None:
    reply = make_handoff(kind="reply", callback_url=CALLBACK, requires_approval=True)
    change = decide(reply, Request(Action.approve), Actor("UAPPROVER"), config(), NOW)
    assert change.to_status is Status.closed

    effects = webhook_effects_for_change(reply, change, Actor("UAPPROVER"), config(), at=NOW)

    assert [(e.target, e.payload["event"]) for e in effects] == [
        (CALLBACK, "approved"), (DECISIONS, "approved"), (EVERYTHING, "approved"),
        (CALLBACK, "closed"), (DECISIONS, "closed"), (EVERYTHING, "closed"),
    ]
    assert {body(e)["handoff"]["status"] for e in effects} == {"closed"}
    assert {body(e)["handoff"]["outcome"] for e in effects} == {"approved"}


def test_an_approval_that_does_not_close_sends_approved_only() -> None:
    task = make_handoff(callback_url=CALLBACK)
    change = decide(task, Request(Action.approve), Actor("UAPPROVER"), config(), NOW)
    effects = webhook_effects_for_change(task, change, Actor("UAPPROVER"), config(), at=NOW)
    assert {e.payload["event"] for e in effects} == {"approved"}


def test_reassigning_a_handoff_nobody_owned_sends_claimed() -> None:
    """It is owned now, though nobody pressed Claim: a receiver that listens for `claimed` used to miss it."""
    queued = make_handoff(status=Status.open, owner=None, approvers=["ULEAD"], callback_url=CALLBACK)
    change = decide(queued, Request(Action.reassign, new_owner="UCAROL"), Actor("ULEAD"), config(), NOW)
    [callback, everything] = webhook_effects_for_change(queued, change, Actor("ULEAD"), config(), at=NOW)
    assert [(e.target, e.payload["event"]) for e in (callback, everything)] == [
        (CALLBACK, "claimed"), (EVERYTHING, "claimed")]
    assert (body(callback)["handoff"]["owner"], body(callback)["actor"]["id"]) == ("UCAROL", "ULEAD")
    owned = make_handoff(owner="UBOB", approvers=["ULEAD"], callback_url=CALLBACK)  # owned already: no new claim
    change = decide(owned, Request(Action.reassign, new_owner="UCAROL"), Actor("ULEAD"), config(), NOW)
    assert webhook_effects_for_change(owned, change, Actor("ULEAD"), config(), at=NOW) == []


def test_a_change_without_a_webhook_event_sends_nothing() -> None:
    handoff = make_handoff(callback_url=CALLBACK)
    change = decide(handoff, Request(Action.release), Actor("UOWNER"), config(), NOW)
    assert webhook_effects_for_change(handoff, change, Actor("UOWNER"), config(), at=NOW) == []


@pytest.mark.parametrize(("name", "kind"), [
    ("UAGENT", "user"), ("W0ENTERPRISE", "user"), ("producer", "system"), ("BLEADBOT", "system"),
    ("U", "system"),
])
def test_the_submitter_is_a_person_only_when_it_is_a_slack_user_id(name: str, kind: str) -> None:
    handoff = make_handoff(callback_url=CALLBACK)
    [effect] = webhook_effects(handoff, "created", submitter(name), parse_config({}), at=NOW)
    assert body(effect)["actor"] == {"id": name, "type": kind}
