"""Producer text can never ping anyone or disguise a link: checked on the JSON actually sent to Slack."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bot import ids
from bot.text import WORD_JOINER
from tests.bot.slack.conftest import SlackHarness
from tests.bot.slack.e2e import (
    block_types,
    card_text,
    create,
    fast_pacing,
    input_values,
    opened_view,
    submit_view,
    wait_update,
)
from tests.fakes.slack_api import Call
from tests.fakes.slack_signing import text_value

HOSTILE = "<!channel> <!here> @here <@U123> <!subteam^S1> <https://evil.test|bank.com>"
FORBIDDEN = ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<!subteam", "|bank.com>")
# "@here" only ever as "@<word joiner>here"; same for @channel and @everyone
MARKUP = re.compile(r"<[!@#]|<https?:|\|bank\.com>")  # an opener of Slack markup, or a disguised link's end
BARE_BROADCAST = re.compile(r"@(here|channel|everyone)", re.IGNORECASE)


def hostile_payload() -> dict[str, object]:
    """Every free-text field of the intake API carries the hostile text."""
    return {
        "title": f"T {HOSTILE}",
        "next_action": f"N {HOSTILE}",
        "summary": f"S {HOSTILE}",
        "facts": {f"K {HOSTILE}": f"V {HOSTILE}", "plain": HOSTILE},
        "draft": f"D {HOSTILE}\nsecond line {HOSTILE}",
        "intent": f"I {HOSTILE}"[:100],
        "missing_info": [f"M {HOSTILE}"],
        "risk_flags": [f"R {HOSTILE}"],
        "already_done": [f"A {HOSTILE}"],
        "constraints": [f"C {HOSTILE}"],
        "decisions": [f"X {HOSTILE}"],
        "definition_of_done": f"DoD {HOSTILE}",
        "created_by": f"B {HOSTILE}"[:80],
        "source": {"system": f"Y {HOSTILE}"[:80], "label": f"L {HOSTILE}", "url": "https://crm.example.com/deal/1"},
        "external_id": f"E {HOSTILE}",
    }


def sent(call: Call) -> str:
    """What the bot sent, serialised as Slack receives it (JSON escapes undone so nothing hides)."""
    return json.dumps(call.params, ensure_ascii=False)


def _split(value: Any, plain_texts: list[str]) -> Any:
    """`value` without its plain_text strings and input prefills (collected in `plain_texts`)."""
    if isinstance(value, dict):
        if value.get("type") == "plain_text" and isinstance(value.get("text"), str):
            plain_texts.append(value["text"])
            return {**value, "text": ""}
        out = {}
        for key, item in value.items():
            if key == "initial_value" and isinstance(item, str):
                continue  # what an editable input holds is the stored text itself, never rendered
            out[key] = _split(item, plain_texts)
        return out
    if isinstance(value, list):
        return [_split(item, plain_texts) for item in value]
    return value


def assert_inert(call: Call) -> None:
    """No live mention, broadcast or disguised link anywhere Slack parses markup (text and mrkdwn), and
    plain_text fields (which Slack never parses) still cannot even look like markup."""
    plain_texts: list[str] = []
    parsed = json.dumps(_split(call.params, plain_texts), ensure_ascii=False)
    for needle in FORBIDDEN:
        assert needle not in parsed, f"{needle!r} reached Slack in {call.method}: {parsed[:2000]}"
    assert not BARE_BROADCAST.search(parsed), f"a bare broadcast reached Slack: {parsed[:2000]}"
    for text in plain_texts:
        assert not MARKUP.search(text), f"markup-like plain_text: {text!r}"
        assert not BARE_BROADCAST.search(text), f"a bare broadcast in plain_text: {text!r}"
    assert call.params.get("link_names") in (None, False, "0", "false", 0)
    assert call.params.get("parse") in (None, "none")


def test_hostile_text_in_every_field_reaches_the_card_inert(harness: SlackHarness) -> None:
    created = create(harness, **hostile_payload())
    card = harness.card_of(created["id"])
    assert_inert(card)
    shown = sent(card)
    # the text is there, neutralised, not dropped
    assert "&lt;!channel&gt;" in shown and f"@{WORD_JOINER}here" in shown
    assert "bank.com" in shown
    # the only link on the card is the validated source URL, whose real host is shown next to its label
    links = re.findall(r"<(https?://[^|>]+)\|([^>]*)>", shown)
    assert [url for url, _ in links] == ["https://crm.example.com/deal/1"]
    assert "crm.example.com" in links[0][1]
    # and the card is still a handoff card with its buttons
    assert ids.CLAIM in {e["action_id"] for b in card.params["blocks"] if b["type"] == "actions"
                         for e in b["elements"]}


def test_thread_replies_and_updates_about_hostile_text_are_inert(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness, owner="UALICE", **hostile_payload())
    hid = created["id"]
    ts = harness.card_of(hid).response["ts"]

    # an edit whose new values are hostile (the reply names the changed fields)
    harness.click(ids.EDIT, hid, "UALICE")
    modal = opened_view(harness, ids.EDIT_MODAL)
    assert_inert(modal)
    response = submit_view(harness, modal, input_values(**{
        ids.EDIT_TITLE: text_value(f"Edited {HOSTILE}"), ids.EDIT_NEXT_ACTION: text_value(f"Next {HOSTILE}"),
    }), "UALICE")
    assert response.status_code == 200 and not response.content, response.text
    wait_update(harness, ts, lambda c: "Edited" in card_text(c), "the edited card")

    # a reject whose reason is hostile
    harness.click(ids.REJECT, hid, "UALICE")
    modal = opened_view(harness, ids.REJECT_MODAL)
    assert_inert(modal)
    response = submit_view(harness, modal, input_values(**{ids.REJECT_REASON: text_value(f"No: {HOSTILE}")}),
                           "UALICE")
    assert response.status_code == 200 and not response.content, response.text
    final = wait_update(harness, ts, lambda c: "Rejected" in card_text(c) and "actions" not in block_types(c),
                        "the rejected card")
    replies = harness.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts,
                                     count=2, ok=True)
    assert any("Rejected by" in r.params["text"] and "&lt;!channel&gt;" in r.params["text"] for r in replies)
    for call in [final, *replies, *harness.slack.updates(), *harness.slack.calls("chat.postMessage")]:
        assert_inert(call)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # rendering does not depend on the database
def test_the_literal_check_holds_in_plain_text_too(harness: SlackHarness) -> None:
    card = harness.card_of(create(harness, **hostile_payload())["id"])
    shown = sent(card)
    assert [needle for needle in FORBIDDEN if needle in shown] == []


def assert_no_empty_text(call: Call) -> None:
    """Slack refuses a section without text or fields, or an empty context element (`invalid_blocks`)."""
    for block in call.params["blocks"]:
        if block["type"] == "section":
            texts = [(block.get("text") or {}).get("text", ""), *(f["text"] for f in block.get("fields", []))]
            assert any(text.strip() for text in texts), f"a section without text: {block}"
        if block["type"] == "context":
            assert all(e.get("text", "").strip() for e in block["elements"]), f"an empty context element: {block}"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # rendering does not depend on the database
def test_a_summary_of_only_bidi_controls_leaves_the_card_valid(harness: SlackHarness) -> None:
    """The summary is optional and kept as sent; the card drops bidi controls, and a summary that was nothing
    else is left out, not sent as a section without text (which Slack refuses for good)."""
    fast_pacing(harness)
    created = create(harness, owner="UALICE", summary="\u202e\u200f", draft="\u202e")
    card = harness.card_of(created["id"])
    assert_no_empty_text(card)
    stored = harness.runtime.repo.get(created["id"])
    assert stored is not None and stored.summary == "\u202e\u200f"

    harness.click(ids.EDIT, created["id"], "UALICE")
    modal = opened_view(harness, ids.EDIT_MODAL)
    response = submit_view(harness, modal, input_values(**{
        ids.EDIT_SUMMARY: text_value("\u2066\u2069"), ids.EDIT_NEXT_ACTION: text_value("Phone Jane today"),
    }), "UALICE")
    assert response.status_code == 200 and not response.content, response.text
    edited = wait_update(harness, card.response["ts"], lambda c: "Phone Jane today" in card_text(c), "the edit")
    assert_no_empty_text(edited)
