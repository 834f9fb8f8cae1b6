"""The intake API over real HTTP: uvicorn on a loopback port (the `live_server` fixture), on SQLite and PostgreSQL.

Refusals decided before storage (validation, size, tokens) are in test_api_http_input.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.runtime import Runtime
from tests.conftest import LiveServer
from tests.factories import counts, lead, payload

SUBMITTED_KEYS = {"id", "ref", "status", "owner", "queue", "channel", "review_reasons", "duplicate_of"}


@pytest.fixture
def client(live_server: LiveServer, auth_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=auth_headers, timeout=10) as http:
        yield http


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        yield http


def create(client: httpx.Client, body: dict[str, Any], expected: int = 201) -> dict[str, Any]:
    response = client.post("/api/handoffs", json=body)
    assert response.status_code == expected, response.text
    return dict(response.json())


def show(client: httpx.Client, ref: str | int) -> dict[str, Any]:
    response = client.get(f"/api/handoffs/{ref}")
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- create -----------------------------------------------------------------------------------


def test_create_answers_201_with_the_contract_body(client: httpx.Client, runtime: Runtime) -> None:
    before = counts(runtime)
    body = create(client, payload(summary="Jane wants a quote"))
    assert set(body) == SUBMITTED_KEYS
    assert body["ref"] == f"H-{body['id']}"
    assert (body["status"], body["owner"], body["queue"], body["channel"]) == ("open", None, "CHANDOFFS", "CHANDOFFS")
    assert body["review_reasons"] == [] and body["duplicate_of"] is None
    assert counts(runtime) == {"handoffs": before["handoffs"] + 1, "events": before["events"] + 1,
                               "outbox": before["outbox"] + 1}
    stored = show(client, body["ref"])
    assert stored["summary"] == "Jane wants a quote"
    assert [(e["action"], e["actor"]) for e in stored["events"]] == [("created", "producer")]
    assert [d["kind"] for d in stored["deliveries"]] == ["slack.post_card"]


def test_an_idempotent_repeat_answers_200_with_the_same_body(client: httpx.Client, runtime: Runtime) -> None:
    body = payload(external_id="lead-7", source={"system": "hubspot", "url": "https://crm.test/7"})
    first = create(client, body)
    before = counts(runtime)
    again = create(client, body, expected=200)
    assert again == first
    assert counts(runtime) == before


def test_the_same_key_with_other_content_is_409(client: httpx.Client, runtime: Runtime) -> None:
    body = payload(external_id="lead-8", source={"system": "hubspot"})
    first = create(client, body)
    before = counts(runtime)
    conflict = client.post("/api/handoffs", json={**body, "next_action": "Something else"})
    assert conflict.status_code == 409
    assert conflict.json()["existing"] == first["ref"]
    assert counts(runtime) == before


def test_a_duplicate_answers_200_with_duplicate_of_and_counts_it(client: httpx.Client, runtime: Runtime) -> None:
    body = {"title": "Refund order 17", "next_action": "Refund it", "source": {"url": "https://shop.test/o/17"}}
    original = create(client, {**body, "external_id": "mail-1"})
    before = counts(runtime)
    again = create(client, {**body, "title": "refund ORDER 17", "external_id": "mail-2"}, expected=200)
    assert again["duplicate_of"] == original["ref"]
    assert again["id"] == original["id"]
    after = counts(runtime)
    # no new handoff or card: one `seen_again` event and one card update showing "seen again ×1"
    assert (after["handoffs"], after["outbox"], after["events"]) == (before["handoffs"], before["outbox"] + 1,
                                                                     before["events"] + 1)
    stored = show(client, original["ref"])
    assert stored["seen_count"] == 2
    assert stored["events"][-1]["action"] == "seen_again"
    # the producer retrying the same duplicate submission does not count it twice
    create(client, {**body, "title": "refund ORDER 17", "external_id": "mail-2"}, expected=200)
    assert show(client, original["ref"])["seen_count"] == 2
    assert counts(runtime) == after


def test_review_triggers_send_it_for_approval_in_the_review_channel(client: httpx.Client) -> None:
    triggers: list[tuple[dict[str, Any], str]] = [
        ({"confidence": 0.4}, "confidence 0.40 is below 0.70"),
        ({"missing_info": ["budget"]}, "1 missing item(s)"),
        ({"risk_flags": ["legal", "pricing"]}, "2 risk flag(s)"),
    ]
    for fields, reason in triggers:
        body = create(client, payload(**fields))
        assert body["review_reasons"] == [reason], fields
        assert (body["channel"], body["queue"], body["status"]) == ("CREVIEW", "CREVIEW", "open"), fields
        stored = show(client, body["id"])
        assert stored["requires_approval"] is True, fields
        assert stored["approvers"] == ["ULEAD"], fields
    confident = create(client, payload(confidence=0.7))
    assert confident["review_reasons"] == [] and confident["channel"] == "CHANDOFFS"


def test_hot_leads_alternate_between_the_round_robin_owners(client: httpx.Client) -> None:
    bodies = [create(client, lead(urgency=urgency)) for urgency in ("high", "urgent", "high", "urgent")]
    assert [b["owner"] for b in bodies] == ["UANNA", "UBEN", "UANNA", "UBEN"]
    assert {(b["status"], b["channel"], b["queue"]) for b in bodies} == {("claimed", "CSALES", None)}
    assert show(client, bodies[0]["ref"])["approvers"] == ["UMANAGER"]


def test_the_default_route_starts_open_in_its_channel_unless_an_owner_is_named(client: httpx.Client) -> None:
    body = create(client, lead(urgency="normal"))
    assert (body["status"], body["owner"], body["queue"], body["channel"]) == ("open", None, "CHANDOFFS", "CHANDOFFS")
    owned = create(client, payload(owner="UCHOSEN", approvers=["UBOSS"]))
    assert (owned["status"], owned["owner"], owned["queue"], owned["channel"]) == ("claimed", "UCHOSEN", None,
                                                                                   "CHANDOFFS")


def test_http_callback_urls_are_allowed_for_loopback(client: httpx.Client) -> None:
    for url in ("http://127.0.0.1:9999/hook", "http://localhost/hook", "http://[::1]/hook", "https://hooks.test/x"):
        ref = create(client, payload(callback_url=url))["ref"]
        assert show(client, ref)["callback_url"] == url


# --- read -------------------------------------------------------------------------------------


def test_a_handoff_is_found_by_ref_or_number(client: httpx.Client) -> None:
    created = create(client, payload())
    by_ref = show(client, created["ref"])
    assert by_ref["id"] == created["id"] and by_ref["ref"] == created["ref"]
    assert show(client, str(created["id"]))["id"] == created["id"]
    assert show(client, created["ref"].lower())["id"] == created["id"]
    assert isinstance(by_ref["events"], list) and by_ref["events"][0]["action"] == "created"


def test_the_list_is_newest_first_in_pages_that_do_not_overlap(client: httpx.Client) -> None:
    ids = [create(client, payload())["id"] for _ in range(5)]
    seen: list[int] = []
    cursor = None
    for _ in range(3):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/api/handoffs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
    assert seen == sorted(ids, reverse=True)
    assert cursor is None
    full = client.get("/api/handoffs", params={"limit": 5}).json()
    assert len(full["items"]) == 5 and full["next_cursor"] is None


def test_the_list_filters_by_status_owner_and_stalled(client: httpx.Client) -> None:
    open_one = create(client, payload())
    anna = create(client, payload(owner="UANNA"))
    overdue = create(client, payload(owner="UBEN", due_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat()))

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/handoffs", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids(status="open") == [open_one["id"]]
    assert ids(status="claimed") == [overdue["id"], anna["id"]]
    assert ids(owner="UANNA") == [anna["id"]]
    assert ids(owner="UANNA", status="open") == []
    assert ids(stalled="true") == [overdue["id"]]
    assert ids(stalled="false") == [overdue["id"], anna["id"], open_one["id"]]
    # the URL as SPEC §6 writes it, the blanks left blank: each empty parameter is one not given (it was a 422)
    assert ids(status="", owner="", stalled="true", limit="", cursor="") == [overdue["id"]]
    assert ids(status="", owner="", stalled="", limit="", cursor="") == [overdue["id"], anna["id"], open_one["id"]]
    assert ids(limit="1", cursor="") == [overdue["id"]]


# --- outcome ----------------------------------------------------------------------------------


def test_outcome_closes_a_claimed_handoff(client: httpx.Client) -> None:
    ref = create(client, payload(owner="UOWNER"))["ref"]
    response = client.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "done", "note": "sent"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["outcome"], body["outcome_note"]) == ("closed", "done", "sent")
    last = show(client, ref)["events"][-1]
    assert (last["action"], last["actor"], last["from_status"], last["to_status"]) == (
        "closed", "producer", "claimed", "closed")
    assert last["data"] == {"outcome": "done", "note": "sent"}


def _unchanged_but_refusal_logged(client: httpx.Client, runtime: Runtime, ref: str, before: dict[str, Any],
                                  rows_before: dict[str, int]) -> None:
    after = show(client, ref)
    assert (after["status"], after["version"], after["outcome"]) == (before["status"], before["version"],
                                                                     before["outcome"])
    assert after["events"][:-1] == before["events"]
    assert after["events"][-1]["action"] == "refused"  # refusals are part of the history
    rows = counts(runtime)
    assert (rows["handoffs"], rows["outbox"]) == (rows_before["handoffs"], rows_before["outbox"])


def test_outcome_refuses_an_open_handoff(client: httpx.Client, runtime: Runtime) -> None:
    ref = create(client, payload())["ref"]
    before, rows = show(client, ref), counts(runtime)
    response = client.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "done"})
    assert response.status_code == 409
    assert response.json()["code"] == "wrong_status"
    assert "open" in response.json()["detail"]
    _unchanged_but_refusal_logged(client, runtime, ref, before, rows)


def test_outcome_refuses_an_outcome_the_kind_does_not_have(client: httpx.Client, runtime: Runtime) -> None:
    ref = create(client, lead(owner="UOWNER"))["ref"]
    before, rows = show(client, ref), counts(runtime)
    response = client.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "done"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "outcome"]
    assert "won" in error["msg"]
    _unchanged_but_refusal_logged(client, runtime, ref, before, rows)


def test_outcome_refuses_done_before_approval(client: httpx.Client, runtime: Runtime) -> None:
    ref = create(client, payload(owner="UOWNER", requires_approval=True))["ref"]
    before, rows = show(client, ref), counts(runtime)
    response = client.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "done"})
    assert response.status_code == 409
    assert response.json()["code"] == "needs_approval"
    _unchanged_but_refusal_logged(client, runtime, ref, before, rows)
    closed = client.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "no_action"})
    assert closed.status_code == 200 and closed.json()["outcome"] == "no_action"


def test_outcome_refuses_a_closed_handoff(client: httpx.Client, runtime: Runtime) -> None:
    ref = create(client, payload(owner="UOWNER"))["ref"]
    assert client.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "done"}).status_code == 200
    before, rows = show(client, ref), counts(runtime)
    again = client.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "duplicate"})
    assert again.status_code == 409 and again.json()["code"] == "terminal"
    _unchanged_but_refusal_logged(client, runtime, ref, before, rows)
