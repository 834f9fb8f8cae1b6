"""Intake channels end to end: signed message events over real HTTP, answers through the outbox to a fake Slack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from bot.runtime import build_runtime
from bot.server import build_bot
from bot.slack.listeners.events import Candidate, find_candidate, to_handoff
from bot.slack.payloads import ChannelMessage, parse_message_event
from handoffs.config import parse_config
from storage.outbox import OutboxStore
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import fast_pacing, wait_until
from tests.conftest import DEFAULT_CONFIG, LiveServer, make_settings
from tests.fakes.slack_api import Call, FakeSlack
from tests.fakes.slack_signing import (
    APP_ID,
    JSON,
    event_body,
    message_event,
    post_signed,
    retry_headers,
    url_verification_body,
)

INTAKE = "CINTAKE"
PRODUCER_BOT = "BLEADBOT"
PRODUCER_USER = "UAGENT"


@pytest.fixture
def intake(database_url: str, fake_slack: FakeSlack) -> Iterator[SlackHarness]:
    """The harness of tests/bot/slack/conftest.py, with an intake channel and two trusted producers."""
    config = parse_config({**DEFAULT_CONFIG,
                           "intake_channels": [{"channel": INTAKE, "producers": [PRODUCER_BOT, PRODUCER_USER]}]})
    settings = make_settings(database_url, slack_api_url=fake_slack.url, slack_signing_secret=SIGNING_SECRET)
    runtime = build_runtime(settings, config=config)
    bot = build_bot(runtime)
    bot.start()
    with LiveServer(bot.asgi) as server:
        harness = SlackHarness(fake_slack, server, runtime, bot)
        fast_pacing(harness)
        yield harness
    bot.stop()
    runtime.close()


def lead(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "ACME wants a demo", "next_action": "Call Jane to book it", "kind": "lead", "intent": "demo",
        "facts": {"company": "ACME", "contact": "jane@acme.test"}, "created_by": "lead-classifier",
    }
    body.update(overrides)
    return body


def slack_text(text: str) -> str:
    """Text as Slack sends it in an event: `& < >` are entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def json_block(data: Any, *, tag: str = "json", before: str = "Here is the handoff:") -> str:
    return slack_text(f"{before}\n```{tag}\n{json.dumps(data, indent=2)}\n```")


def deliver(harness: SlackHarness, event: dict[str, Any], *, event_id: str | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response:
    response = post_signed(harness.events_url, event_body(event, event_id=event_id), JSON, SIGNING_SECRET,
                           headers=headers)
    assert response.status_code == 200, response.text
    return response


def drained(harness: SlackHarness) -> None:
    """Wait until the outbox has sent everything written so far (the listener writes before it answers)."""
    store = OutboxStore(harness.runtime.db)
    wait_until(lambda: store.health().pending == 0, what="the outbox to drain")


def replies(harness: SlackHarness, ts: str) -> list[Call]:
    return harness.slack.thread_replies(INTAKE, ts)


def reactions(harness: SlackHarness, ts: str) -> list[Call]:
    return harness.slack.calls("reactions.add", ok=True, channel=INTAKE, timestamp=ts)


def handoffs(harness: SlackHarness) -> list[Any]:
    return list(reversed(harness.runtime.repo.page().items))


def card_link(harness: SlackHarness, handoff_id: int) -> str:
    card = harness.card_of(handoff_id)
    return f"https://example.slack.com/archives/{card.params['channel']}/p{card.response['ts'].replace('.', '')}"


# ---------------------------------------------------------------- end to end


def test_metadata_and_json_block_make_handoffs_and_an_invalid_one_gets_one_reply(intake: SlackHarness) -> None:
    with_metadata = message_event(INTAKE, PRODUCER_USER, "New lead: ACME", ts="1700000001.000100",
                                  metadata={"event_type": "handoff", "event_payload": lead()})
    with_block = message_event(INTAKE, "ULEADBOT", json_block({
        "title": "Renewal Q&A for Globex", "next_action": "Send the <renewal> deck",
        "source": {"url": "https://crm.test/deals/7", "label": "CRM deal"}, "summary": "See https://crm.test/deals/7",
    }), ts="1700000002.000100", bot_id=PRODUCER_BOT, subtype="bot_message")
    invalid = message_event(INTAKE, PRODUCER_USER, json_block({"title": "", "urgency": "soon", "<!channel>": 1}),
                            ts="1700000003.000100")
    for event in (with_metadata, with_block, invalid):
        deliver(intake, event)

    first, second = handoffs(intake)
    assert (first.title, first.kind, first.facts["company"]) == ("ACME wants a demo", "lead", "ACME")
    assert (first.source_system, first.external_id) == ("slack", f"{INTAKE}:1700000001.000100")
    assert (first.source_channel, first.source_ts) == (INTAKE, "1700000001.000100")
    assert intake.runtime.repo.events(first.id)[0].actor == PRODUCER_USER
    assert (second.title, second.next_action) == ("Renewal Q&A for Globex", "Send the <renewal> deck")
    assert (second.source_system, second.source_url, second.source_label) == ("slack", "https://crm.test/deals/7",
                                                                               "CRM deal")
    assert second.external_id == f"{INTAKE}:1700000002.000100"
    assert intake.runtime.repo.events(second.id)[0].actor == PRODUCER_BOT

    for handoff in (first, second):
        source_ts = handoff.source_ts
        assert source_ts is not None
        [reply] = wait_until(partial(replies, intake, source_ts), what=f"the reply on {handoff.ref}")
        link = card_link(intake, handoff.id)
        assert reply.params["text"] == f"📌 Handoff {handoff.ref} created: <{link}|open the card>"
        [reacted] = wait_until(partial(reactions, intake, source_ts), what=f"✅ on {handoff.ref}")
        assert reacted.params["name"] == "white_check_mark"

    [problems] = wait_until(lambda: replies(intake, "1700000003.000100"), what="the reply listing the problems")
    text = problems.params["text"]
    for path in ("title", "next_action", "urgency", "&lt;!channel&gt;"):
        assert f"`{path}`" in text, text
    assert "<!channel>" not in text and "Field required" in text
    drained(intake)
    assert len(replies(intake, "1700000003.000100")) == 1 and not reactions(intake, "1700000003.000100")
    assert len(handoffs(intake)) == 2


@pytest.mark.parametrize(("text", "wanted"), [
    ('```json\n{"title": "Broken", \n```', "`code block`: not valid JSON"),
    ('```json\n{"title": "Deep", "facts": ' + "[" * 3000 + "]" * 3000 + "}\n```",
     "`code block`: not valid JSON: nested too deeply"),
    (json_block(lead(facts={"company": "ACME"})), "`facts.contact`: required for kind 'lead'"),
    (json_block(lead(kind="invoice", intent=None)), "`kind`: unknown kind 'invoice'"),
    (json_block(["not", "an", "object"]), "`code block`: the handoff must be a JSON object"),
])
def test_each_kind_of_invalid_handoff_is_named_in_one_reply(intake: SlackHarness, text: str, wanted: str) -> None:
    deliver(intake, message_event(INTAKE, PRODUCER_USER, text, ts="1700000010.000100"))
    [reply] = wait_until(lambda: replies(intake, "1700000010.000100"), what="the reply")
    assert wanted in reply.params["text"], reply.params["text"]
    assert handoffs(intake) == []


def test_metadata_that_is_not_an_object_is_answered_too(intake: SlackHarness) -> None:
    deliver(intake, message_event(INTAKE, PRODUCER_USER, "x", ts="1700000011.000100",
                                  metadata={"event_type": "handoff", "event_payload": None}))
    [reply] = wait_until(lambda: replies(intake, "1700000011.000100"), what="the reply")
    assert "`metadata`: the handoff must be a JSON object" in reply.params["text"]


def test_retries_and_repeated_event_ids_make_one_handoff_and_no_extra_replies(intake: SlackHarness) -> None:
    valid = message_event(INTAKE, PRODUCER_USER, json_block(lead()), ts="1700000020.000100")
    invalid = message_event(INTAKE, PRODUCER_USER, json_block({"title": "No next action"}), ts="1700000021.000100")
    for event, event_id in ((valid, "Ev0VALID0001"), (invalid, "Ev0INVALID01")):
        deliver(intake, event, event_id=event_id)
        deliver(intake, event, event_id=event_id, headers=retry_headers(1))
        deliver(intake, event, event_id=event_id, headers=retry_headers(2, "http_error"))
    deliver(intake, valid, event_id="Ev0OTHERID01")  # the same message under another event id

    [handoff] = handoffs(intake)
    wait_until(lambda: replies(intake, "1700000020.000100") and reactions(intake, "1700000020.000100"),
               what="the answer to the valid message")
    wait_until(lambda: replies(intake, "1700000021.000100"), what="the answer to the invalid message")
    drained(intake)
    assert len(replies(intake, "1700000020.000100")) == 1
    assert len(reactions(intake, "1700000020.000100")) == 1
    assert len(replies(intake, "1700000021.000100")) == 1
    assert len(intake.slack.posted_cards()) == 1
    assert [e.action for e in intake.runtime.repo.events(handoff.id)] == ["created"]


def test_the_same_handoff_posted_again_in_a_new_message_is_answered_as_already_tracked(intake: SlackHarness) -> None:
    deliver(intake, message_event(INTAKE, PRODUCER_USER, json_block(lead(external_id="lead-7")),
                                  ts="1700000030.000100"))
    deliver(intake, message_event(INTAKE, PRODUCER_USER, json_block(lead(external_id="lead-7")),
                                  ts="1700000031.000100"))
    [handoff] = handoffs(intake)
    [again] = wait_until(lambda: replies(intake, "1700000031.000100"), what="the already-tracked reply")
    assert again.params["text"] == (
        f"📌 This is already tracked as {handoff.ref}: <{card_link(intake, handoff.id)}|open the card>")
    wait_until(lambda: reactions(intake, "1700000031.000100"), what="✅ on the repeat")


def test_a_handoff_from_an_untrusted_sender_is_refused_in_the_thread(intake: SlackHarness) -> None:
    deliver(intake, message_event(INTAKE, "UHUMAN", json_block(lead()), ts="1700000040.000100"))
    deliver(intake, message_event(INTAKE, "UHUMAN", "Anyone seen the ACME lead?", ts="1700000041.000100"))
    deliver(intake, message_event(INTAKE, "UOTHER", "x", ts="1700000042.000100", bot_id="BOTHERBOT",
                                  subtype="bot_message", metadata={"event_type": "handoff", "event_payload": lead()}))
    [refused] = wait_until(lambda: replies(intake, "1700000040.000100"), what="the not-trusted reply")
    assert "not a trusted producer" in refused.params["text"] and "UHUMAN" in refused.params["text"]
    [refused_bot] = wait_until(lambda: replies(intake, "1700000042.000100"), what="the not-trusted reply (bot)")
    assert "BOTHERBOT" in refused_bot.params["text"]
    drained(intake)
    assert replies(intake, "1700000041.000100") == []  # ordinary talk is left alone
    assert handoffs(intake) == []


def test_a_trusted_message_without_a_handoff_is_told_how_to_send_one(intake: SlackHarness) -> None:
    deliver(intake, message_event(INTAKE, PRODUCER_USER, "Daily run finished, nothing new.", ts="1700000050.000100"))
    [hint] = wait_until(lambda: replies(intake, "1700000050.000100"), what="the hint")
    assert "No handoff found" in hint.params["text"] and "```json" in hint.params["text"]


def test_a_handoff_with_a_file_attached_or_sent_with_me_is_not_dropped(intake: SlackHarness) -> None:
    attached = message_event(INTAKE, PRODUCER_USER, json_block(lead(external_id="lead-file")), ts="1700000055.000100",
                             subtype="file_share", upload=False, files=[{"id": "F0LEAD", "name": "brief.pdf"}])
    another = lead(external_id="lead-me", title="Globex wants a demo")  # not the same content as the first
    with_me = message_event(INTAKE, PRODUCER_USER, json_block(another), ts="1700000056.000100", subtype="me_message")
    for event in (attached, with_me):
        deliver(intake, event)

    assert [handoff.external_id for handoff in handoffs(intake)] == ["lead-file", "lead-me"]
    for ts in ("1700000055.000100", "1700000056.000100"):
        [reply] = wait_until(partial(replies, intake, ts), what=f"the reply on {ts}")
        assert reply.params["text"].startswith("📌 Handoff ")
        wait_until(partial(reactions, intake, ts), what=f"✅ on {ts}")


def test_own_messages_edits_deletions_thread_replies_and_other_channels_are_ignored(intake: SlackHarness) -> None:
    block = json_block(lead())
    own = message_event(INTAKE, "UBOT", block, ts="1700000060.000100", bot_id="BBOT", app_id=APP_ID)
    own_as_producer = message_event(INTAKE, PRODUCER_USER, block, ts="1700000061.000100", app_id=APP_ID)
    in_thread = message_event(INTAKE, PRODUCER_USER, block, ts="1700000062.000100", thread_ts="1700000060.000100")
    elsewhere = message_event("CGENERAL", PRODUCER_USER, block, ts="1700000063.000100")
    edited = {"type": "message", "subtype": "message_changed", "channel": INTAKE, "ts": "1700000064.000100",
              "hidden": True, "message": {"type": "message", "user": PRODUCER_USER, "text": block,
                                          "ts": "1700000020.000100"}}
    deleted = {"type": "message", "subtype": "message_deleted", "channel": INTAKE, "ts": "1700000065.000100",
               "hidden": True, "deleted_ts": "1700000020.000100"}
    joined = message_event(INTAKE, PRODUCER_USER, block, ts="1700000066.000100", subtype="channel_join")
    own_file = message_event(INTAKE, PRODUCER_USER, block, ts="1700000067.000100", app_id=APP_ID,
                             subtype="file_share", files=[{"id": "F0OWN"}])
    broadcast = message_event(INTAKE, PRODUCER_USER, block, ts="1700000068.000100", subtype="thread_broadcast",
                              thread_ts="1700000060.000100")
    topic = message_event(INTAKE, PRODUCER_USER, block, ts="1700000069.000100", subtype="channel_topic")
    for event in (own, own_as_producer, in_thread, elsewhere, edited, deleted, joined, own_file, broadcast, topic):
        deliver(intake, event)
    drained(intake)
    assert handoffs(intake) == []
    assert intake.slack.calls("chat.postMessage") == [] and intake.slack.calls("reactions.add") == []


def test_the_request_url_check_answers_the_challenge(intake: SlackHarness) -> None:
    response = post_signed(intake.events_url, url_verification_body("c-12345"), JSON, SIGNING_SECRET)
    assert response.status_code == 200
    assert response.json()["challenge"] == "c-12345"
    forged = post_signed(intake.events_url, url_verification_body("c-12345"), JSON, "wrong-secret")
    assert forged.status_code == 401


# ---------------------------------------------------------------- parsing (pure)


def _message(text: str = "", **fields: Any) -> ChannelMessage:
    return ChannelMessage(event_id="Ev1", channel=INTAKE, ts="1700000000.000100", text=text, **fields)


def test_a_code_block_without_a_tag_counts_when_it_holds_an_object() -> None:
    found = find_candidate(_message(slack_text('look:\n```{"title": "A & B", "next_action": "x"}```')))
    assert found == Candidate("code block", {"title": "A & B", "next_action": "x"})
    assert find_candidate(_message("```print('hello')```")) is None
    assert find_candidate(_message("no code here")) is None


def test_links_that_slack_added_inside_the_json_are_undone() -> None:
    text = ('```json\n{"title": "T &lt;b&gt;", "next_action": "Mail <mailto:jane@acme.test|jane@acme.test>",'
            ' "source": {"url": "<https://crm.test/7>"}, "summary": "<http://acme.test|acme.test>"}\n```')
    found = find_candidate(_message(text))
    assert found is not None and found.data == {"title": "T <b>", "next_action": "Mail jane@acme.test",
                                                "source": {"url": "https://crm.test/7"}, "summary": "acme.test"}


def test_metadata_wins_over_a_code_block_and_defaults_are_filled_in() -> None:
    message = _message(json_block({"title": "from the block"}), metadata_type="handoff",
                       metadata_payload={"title": "from metadata", "next_action": "N",
                                         "source": {"system": "n8n"}})
    candidate = find_candidate(message)
    assert candidate is not None and candidate.origin == "metadata"
    handoff = to_handoff(candidate, message)
    assert handoff.title == "from metadata"
    assert handoff.source is not None and handoff.source.system == "n8n"
    assert handoff.external_id == f"{INTAKE}:1700000000.000100"
    kept = to_handoff(Candidate("metadata", {"title": "T", "next_action": "N", "external_id": "x-1"}), message)
    assert kept.external_id == "x-1" and kept.source is not None and kept.source.system == "slack"


def test_the_event_parser_knows_the_apps_own_messages() -> None:
    body = json.loads(event_body(message_event(INTAKE, "UBOT", "hi", bot_id="BBOT")))
    parsed = parse_message_event(body)
    assert parsed is not None and parsed.own  # posted as the bot user the event was delivered to
    body = json.loads(event_body(message_event(INTAKE, "USOMEONE", "hi", app_id=APP_ID)))
    assert parse_message_event(body).own  # type: ignore[union-attr]
    body = json.loads(event_body(message_event(INTAKE, "USOMEONE", "hi")))
    assert not parse_message_event(body).own  # type: ignore[union-attr]
    assert parse_message_event({"event": {"type": "message", "subtype": "message_deleted"}}) is None
