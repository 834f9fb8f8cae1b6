"""Shortcuts and the New handoff modal: the builder, its parser, and both shortcuts end to end over real HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient

from bot import ids
from bot.blocks.modals import INPUT_LIMIT, ModalError
from bot.blocks.new_modal import NewModalSource, intake_errors, new_handoff_modal, parse_new_handoff
from bot.slack.listeners.shortcuts import message_plain_text, open_new_handoff_modal, prefill_from_message
from bot.slack.message_content import message_content
from bot.slack.payloads import message_permalink, parse_message_shortcut
from handoffs.config import HandoffConfig
from handoffs.intake import FieldError
from handoffs.lifecycle import Action, Actor, Request
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import fast_pacing, input_values, opened_view, submit_view, wait_outbox_idle, wait_until
from tests.fakes.slack_api import Call, FakeSlack
from tests.fakes.slack_signing import (
    FORM,
    post_signed,
    select_value,
    shortcut_body,
    slash_command_body,
    text_value,
    user_value,
    view_submission_body,
)

TRIGGER_LIFETIME = 3.0
MESSAGE_TS = "1700000100.000200"
PERMALINK = "https://example.slack.com/archives/CGENERAL/p1700000100000200"


def _blocks(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {block["block_id"]: block for block in view["blocks"] if "block_id" in block}


def _initial(view: dict[str, Any], block_id: str) -> Any:
    return _blocks(view)[block_id]["element"].get("initial_value")


def _valid_values(title: str = "Customer ACME wants a demo", blocks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The new-handoff modal's state, every field valid; `blocks` replaces some of them by block id."""
    return input_values(**{
        ids.NEW_TITLE: text_value(title),
        ids.NEW_NEXT_ACTION: text_value("Book the demo with Jane"),
        ids.NEW_KIND: select_value("task"),
        ids.NEW_URGENCY: select_value("normal"),
        ids.NEW_SUMMARY: text_value(None),
        ids.NEW_OWNER: user_value(None),
        ids.NEW_DUE_AT: {"type": "datetimepicker", "selected_date_time": None},
        **(blocks or {}),
    })


# ---------------------------------------------------------------- pure: builder, parser, payloads


def test_the_modal_has_every_input_with_block_id_equal_to_action_id(handoff_config: HandoffConfig) -> None:
    view = new_handoff_modal(handoff_config)
    assert view["callback_id"] == ids.NEW_MODAL and view["type"] == "modal"
    blocks = _blocks(view)
    assert list(blocks) == [ids.NEW_TITLE, ids.NEW_NEXT_ACTION, ids.NEW_KIND, ids.NEW_URGENCY, ids.NEW_SUMMARY,
                            ids.NEW_OWNER, ids.NEW_DUE_AT]
    assert all(block["element"]["action_id"] == block_id for block_id, block in blocks.items())
    kinds = [option["value"] for option in blocks[ids.NEW_KIND]["element"]["options"]]
    assert set(kinds) == set(handoff_config.kinds)
    assert blocks[ids.NEW_KIND]["element"]["initial_option"]["value"] == "task"
    assert blocks[ids.NEW_URGENCY]["element"]["initial_option"]["value"] == "normal"
    assert blocks[ids.NEW_SUMMARY]["element"]["multiline"] is True
    assert blocks[ids.NEW_OWNER]["element"]["type"] == "users_select" and blocks[ids.NEW_OWNER]["optional"] is True
    assert blocks[ids.NEW_DUE_AT]["element"]["type"] == "datetimepicker" and blocks[ids.NEW_DUE_AT]["optional"] is True
    assert not blocks[ids.NEW_TITLE].get("optional") and not blocks[ids.NEW_NEXT_ACTION].get("optional")
    assert NewModalSource.parse(view["private_metadata"]) == NewModalSource()


def test_the_modal_from_a_message_is_prefilled_and_carries_only_the_source(handoff_config: HandoffConfig) -> None:
    view = new_handoff_modal(handoff_config, title="A" * 200, summary="B" * 4000, source_url=PERMALINK,
                             source_channel="CGENERAL", source_ts=MESSAGE_TS)
    assert len(_initial(view, ids.NEW_TITLE)) == 150 and _initial(view, ids.NEW_TITLE).endswith("…")
    assert len(_initial(view, ids.NEW_SUMMARY)) == INPUT_LIMIT
    assert json.loads(view["private_metadata"]) == {"url": PERMALINK, "channel": "CGENERAL", "ts": MESSAGE_TS}
    assert PERMALINK in json.dumps(view["blocks"][0])  # "From a Slack message in #general", linked


def test_the_parser_makes_a_handoff_with_a_slack_source() -> None:
    due = datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
    values = _valid_values(blocks={
        ids.NEW_SUMMARY: text_value("  They asked on the call.\r\nBudget is fine.  "),
        ids.NEW_OWNER: user_value("UANNA"),
        ids.NEW_URGENCY: select_value("high"),
        ids.NEW_DUE_AT: {"type": "datetimepicker", "selected_date_time": int(due.timestamp())},
    })
    handoff = parse_new_handoff(values, NewModalSource(url=PERMALINK, channel="CGENERAL", ts=MESSAGE_TS))
    assert handoff.title == "Customer ACME wants a demo" and handoff.next_action == "Book the demo with Jane"
    assert handoff.summary == "They asked on the call.\nBudget is fine."
    assert (handoff.owner, handoff.urgency.value, handoff.due_at) == ("UANNA", "high", due)
    assert handoff.source is not None
    assert handoff.source.model_dump() == {"system": "slack", "url": PERMALINK, "label": "Slack message"}
    assert parse_new_handoff(_valid_values(), NewModalSource()).source is None


def test_the_parser_names_the_block_of_each_problem() -> None:
    with pytest.raises(ModalError) as empty:
        parse_new_handoff(_valid_values(title="   ", blocks={ids.NEW_NEXT_ACTION: text_value("")}), NewModalSource())
    assert set(empty.value.errors) == {ids.NEW_TITLE, ids.NEW_NEXT_ACTION}
    with pytest.raises(ModalError) as long_title:
        parse_new_handoff(_valid_values(title="x" * 151), NewModalSource())
    assert set(long_title.value.errors) == {ids.NEW_TITLE}
    with pytest.raises(ModalError) as bad_owner:
        parse_new_handoff(_valid_values(blocks={ids.NEW_OWNER: user_value("not-a-user")}), NewModalSource())
    assert set(bad_owner.value.errors) == {ids.NEW_OWNER}
    now = datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
    past = {ids.NEW_DUE_AT: {"type": "datetimepicker", "selected_date_time": int(now.timestamp()) - 3600}}
    with pytest.raises(ModalError) as due_in_the_past:
        parse_new_handoff(_valid_values(blocks=past), NewModalSource(), now=now)
    assert due_in_the_past.value.errors == {ids.NEW_DUE_AT: "Pick a time in the future."}


def test_kind_rules_the_form_cannot_meet_are_shown_by_the_kind() -> None:
    errors = intake_errors([FieldError(("facts", "company"), "required"), FieldError(("facts", "contact"), "required"),
                            FieldError(("intent",), "required")], "lead")
    assert list(errors) == [ids.NEW_KIND]
    assert "company" in errors[ids.NEW_KIND] and "contact" in errors[ids.NEW_KIND] and "intent" in errors[ids.NEW_KIND]
    assert intake_errors([FieldError(("kind",), "unknown kind 'x'")], "x") == {ids.NEW_KIND: "unknown kind 'x'"}


def test_prefill_takes_the_first_line_as_title_and_the_whole_text_as_summary() -> None:
    text = "\n  Customer <@U123|jane> wants a demo &amp; a quote  \nSee <https://acme.test/x|the brief> &lt;soon&gt;"
    title, summary = prefill_from_message(text)
    assert title == "Customer @jane wants a demo & a quote"
    assert summary == "Customer @jane wants a demo & a quote  \nSee the brief (https://acme.test/x) <soon>"
    long_title, long_summary = prefill_from_message("t" * 400 + "\n" + "s" * 5000)
    assert long_title is not None and len(long_title) == 150 and long_title.endswith("…")
    assert long_summary is not None and len(long_summary) == INPUT_LIMIT
    assert prefill_from_message("") == (None, None)
    assert message_plain_text("<!here> <#C1|general> <!subteam^S1|@team>") == "@here #general @team"


def test_the_permalink_is_built_from_the_payload() -> None:
    assert message_permalink("example", "CGENERAL", MESSAGE_TS) == PERMALINK
    assert message_permalink("example", "CGENERAL", MESSAGE_TS, thread_ts="1700000000.000100") == (
        f"{PERMALINK}?thread_ts=1700000000.000100&cid=CGENERAL")
    assert message_permalink("example", "CGENERAL", MESSAGE_TS, thread_ts=MESSAGE_TS) == PERMALINK
    assert message_permalink("evil.com/x?", "CGENERAL", MESSAGE_TS) is None
    assert message_permalink("example", "CGENERAL", "not-a-ts") is None
    assert message_permalink(None, "CGENERAL", MESSAGE_TS) is None
    form = shortcut_body(ids.MESSAGE_SHORTCUT, "UALICE", type="message_action", channel_id="CGENERAL",
                         message={"text": "hi", "ts": MESSAGE_TS, "thread_ts": "1700000000.000100"})
    body = json.loads(parse_qs(form.decode())["payload"][0])
    shortcut = parse_message_shortcut(body)
    assert (shortcut.user_id, shortcut.channel_id, shortcut.ts) == ("UALICE", "CGENERAL", MESSAGE_TS)
    assert shortcut.text == "hi"
    assert shortcut.permalink == f"{PERMALINK}?thread_ts=1700000000.000100&cid=CGENERAL"
    assert shortcut.reply_thread == "1700000000.000100"  # a reply's thread is named by its parent's ts


AI_LEAD = "New lead: ACME wants a demo"


@pytest.mark.parametrize(("message", "content"), [
    pytest.param({"text": "", "attachments": [{"fallback": AI_LEAD, "title": AI_LEAD, "text": "Budget approved.",
                                               "fields": [{"title": "Owner", "value": "<@U1>"}]}]},
                 f"{AI_LEAD}\nBudget approved.\nOwner: <@U1>", id="attachments"),
    pytest.param({"text": "", "attachments": [{"fallback": AI_LEAD}]}, AI_LEAD, id="attachment-fallback-only"),
    pytest.param({"text": "New summary posted", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": AI_LEAD}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Budget* approved"},
         "fields": [{"type": "mrkdwn", "text": "Due Friday"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "by triage-bot"}, {"type": "image"}]},
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}}]},
    ]}, f"{AI_LEAD}\n*Budget* approved\nDue Friday\nby triage-bot ", id="blocks-fuller-than-text"),
    pytest.param({"text": "Call <@U1> re <https://acme.test|ACME>", "blocks": [{"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [
            {"type": "text", "text": "Call "}, {"type": "user", "user_id": "U1"}, {"type": "text", "text": " re "},
            {"type": "link", "url": "https://acme.test", "text": "ACME"}]},
    ]}]}, "Call <@U1> re <https://acme.test|ACME>", id="a-persons-message"),
    pytest.param({"text": "", "blocks": [{"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [{"type": "text", "text": "Steps:"},
                                                   {"type": "emoji", "name": "fire"}]},
        {"type": "rich_text_list", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "one"}]},
            {"type": "rich_text_section", "elements": [{"type": "broadcast", "range": "here"}]}]},
    ]}]}, "Steps::fire:\n• one\n• <!here>", id="rich-text-list"),
    pytest.param({"text": None, "blocks": "nonsense", "attachments": [None, 3, {"fields": [7]}]}, "", id="junk"),
])
def test_the_content_of_an_apps_message_is_found_in_its_blocks_or_attachments(
    message: dict[str, Any], content: str
) -> None:
    assert message_content(message) == content


def test_open_new_handoff_modal_for_the_slash_command(handoff_config: HandoffConfig) -> None:
    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.url)
        assert open_new_handoff_modal(client, "123.456.abc", handoff_config, title="Call Jane") is True
        [call] = slack.calls("views.open")
        assert call.params["trigger_id"] == "123.456.abc"
        assert _initial(call.params["view"], ids.NEW_TITLE) == "Call Jane"
        slack.fail_next("views.open", status=200, error="expired_trigger_id")
        assert open_new_handoff_modal(client, "123.456.abc", handoff_config) is False


# ---------------------------------------------------------------- end to end


def _message_shortcut(harness: SlackHarness, text: str, **message: Any) -> tuple[Call, float]:
    body = shortcut_body(ids.MESSAGE_SHORTCUT, "UALICE", type="message_action", channel_id="CGENERAL",
                         message={"text": text, "ts": MESSAGE_TS, **message})
    started = time.monotonic()
    response = post_signed(harness.events_url, body, FORM, SIGNING_SECRET)
    assert response.status_code == 200 and not response.content, response.text
    opened = opened_view(harness, ids.NEW_MODAL)
    return opened, opened.received_at - started


def _only_handoff(harness: SlackHarness) -> Any:
    items = harness.runtime.repo.page().items
    assert len(items) == 1, items
    return items[0]


def test_a_message_shortcut_makes_a_handoff_linked_both_ways(harness: SlackHarness) -> None:
    fast_pacing(harness)
    text = "Customer ACME wants a demo\nThey asked on the call; budget approved."
    opened, delay = _message_shortcut(harness, text)
    assert delay < TRIGGER_LIFETIME, f"views.open arrived {delay:.2f}s after the shortcut"
    assert opened.params["trigger_id"] and opened.ok
    view = opened.params["view"]
    assert _initial(view, ids.NEW_TITLE) == "Customer ACME wants a demo"
    assert _initial(view, ids.NEW_SUMMARY) == text
    assert not harness.slack.calls("chat.getPermalink")  # the permalink came from the payload

    values = _valid_values(blocks={ids.NEW_SUMMARY: text_value(text)})
    submitted = submit_view(harness, opened, values, "UALICE")
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["response_action"] == "update"

    handoff = _only_handoff(harness)
    assert (handoff.source_system, handoff.source_url, handoff.source_label) == ("slack", PERMALINK, "Slack message")
    assert (handoff.source_channel, handoff.source_ts) == ("CGENERAL", MESSAGE_TS)
    assert handoff.summary == text
    assert harness.runtime.repo.events(handoff.id)[0].actor == "UALICE"
    assert f"H-{handoff.id}" in json.dumps(submitted.json()["view"])

    card = harness.card_of(handoff.id)
    assert PERMALINK in json.dumps(card.params["blocks"])  # the card links back to the message
    [reply] = wait_until(lambda: harness.slack.thread_replies("CGENERAL", MESSAGE_TS), what="the source reply")
    card_link = f"https://example.slack.com/archives/CHANDOFFS/p{card.response['ts'].replace('.', '')}"
    assert reply.params["text"] == f"📌 Handoff H-{handoff.id} created: <{card_link}|open the card>"
    [permalink_call] = harness.slack.calls("chat.getPermalink")
    assert permalink_call.params["channel"] == "CHANDOFFS"
    assert permalink_call.params["message_ts"] == card.response["ts"]


def test_a_shortcut_on_an_ai_tools_message_prefills_the_form_from_its_attachments(harness: SlackHarness) -> None:
    """The product's core case: an app's message with an empty `text` and its content in attachments. The form
    used to open empty (only `text` was read)."""
    attachment = {"fallback": AI_LEAD, "title": AI_LEAD, "text": "Budget approved; call Jane before Friday."}
    opened, _ = _message_shortcut(harness, "", bot_id="B0LEADBOT", subtype="bot_message", attachments=[attachment])
    view = opened.params["view"]
    assert _initial(view, ids.NEW_TITLE) == AI_LEAD
    assert _initial(view, ids.NEW_SUMMARY) == f"{AI_LEAD}\nBudget approved; call Jane before Friday."


def test_a_shortcut_on_a_reply_in_a_thread_answers_in_that_thread(harness: SlackHarness) -> None:
    """Slack asks for the parent's ts in `thread_ts`, never a reply's: the bot's replies used to name the reply."""
    fast_pacing(harness)
    parent = "1700000000.000100"
    opened, _ = _message_shortcut(harness, "Customer ACME wants a demo", thread_ts=parent)
    assert submit_view(harness, opened, _valid_values(), "UALICE").status_code == 200
    handoff = _only_handoff(harness)
    assert handoff.source_url == f"{PERMALINK}?thread_ts={parent}&cid=CGENERAL"  # the link names the reply itself
    harness.card_of(handoff.id)
    [reply] = wait_until(lambda: harness.slack.thread_replies("CGENERAL"), what="the source reply")
    assert reply.params["thread_ts"] == parent
    harness.runtime.service.act(handoff.id, Request(Action.claim), Actor("UALICE"))
    harness.runtime.service.act(handoff.id, Request(Action.close, outcome="done"), Actor("UALICE"))
    harness.runtime.notify()
    replies = wait_until(lambda: (r := harness.slack.thread_replies("CGENERAL")) and len(r) == 2 and r,
                         what="the outcome reply")
    assert [r.params["thread_ts"] for r in replies] == [parent, parent]


def test_from_a_channel_the_bot_is_not_in_the_links_go_to_the_person_by_dm(harness: SlackHarness) -> None:
    """The message shortcut works in any channel, the bot's replies there do not (`not_in_channel`): the card's
    link, and later the outcome, went nowhere (failed for good). They now come in the app's DM."""
    fast_pacing(harness)
    harness.slack.fail_channel("CGENERAL", "not_in_channel")
    opened, _ = _message_shortcut(harness, "Customer ACME wants a demo")
    assert submit_view(harness, opened, _valid_values(), "UALICE").status_code == 200
    handoff = _only_handoff(harness)
    harness.card_of(handoff.id)
    [told] = wait_until(lambda: [c for c in harness.slack.calls("chat.postMessage")
                                 if c.ok and c.channel == "UALICE"], what="the link in the app's DM")
    assert f"📌 Handoff H-{handoff.id} created" in told.params["text"] and "thread_ts" not in told.params
    harness.runtime.service.act(handoff.id, Request(Action.claim), Actor("UALICE"))
    harness.runtime.service.act(handoff.id, Request(Action.close, outcome="done"), Actor("UALICE"))
    harness.runtime.notify()
    wait_until(lambda: len([c for c in harness.slack.calls("chat.postMessage")
                            if c.ok and c.channel == "UALICE"]) == 2, what="the outcome in the app's DM")
    wait_outbox_idle(harness)
    assert [row.kind for row in harness.runtime.repo.outbox_for(handoff.id) if row.state == "failed"] == []


def test_the_global_shortcut_opens_an_empty_modal_and_submits_without_a_source(harness: SlackHarness) -> None:
    fast_pacing(harness)
    started = time.monotonic()
    response = post_signed(harness.events_url, shortcut_body(ids.GLOBAL_SHORTCUT, "UBOB"), FORM, SIGNING_SECRET)
    assert response.status_code == 200 and not response.content
    opened = opened_view(harness, ids.NEW_MODAL)
    assert opened.received_at - started < TRIGGER_LIFETIME
    view = opened.params["view"]
    assert _initial(view, ids.NEW_TITLE) is None
    assert NewModalSource.parse(view["private_metadata"]) == NewModalSource()

    submitted = submit_view(harness, opened, _valid_values(title="Renew the TLS certificate", blocks={
        ids.NEW_OWNER: user_value("UCAROL"), ids.NEW_URGENCY: select_value("high"),
    }), "UBOB")
    assert submitted.status_code == 200 and submitted.json()["response_action"] == "update"
    handoff = _only_handoff(harness)
    assert (handoff.title, handoff.owner, handoff.status.value, handoff.urgency.value) == (
        "Renew the TLS certificate", "UCAROL", "claimed", "high")
    assert handoff.source_url is None and handoff.source_channel is None
    harness.card_of(handoff.id)
    assert not harness.slack.calls("chat.getPermalink")


def _errors(response: Any) -> dict[str, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response_action"] == "errors", body
    return dict(body["errors"])


def test_modal_problems_are_shown_inline_on_their_field(harness: SlackHarness) -> None:
    post_signed(harness.events_url, shortcut_body(ids.GLOBAL_SHORTCUT, "UBOB"), FORM, SIGNING_SECRET)
    opened = opened_view(harness, ids.NEW_MODAL)

    empty_title = _errors(submit_view(harness, opened, _valid_values(title=""), "UBOB"))
    assert list(empty_title) == [ids.NEW_TITLE]

    lead = _errors(submit_view(harness, opened, _valid_values(blocks={ids.NEW_KIND: select_value("lead")}), "UBOB"))
    assert list(lead) == [ids.NEW_KIND] and "company" in lead[ids.NEW_KIND]

    bad_owner = _errors(submit_view(harness, opened, _valid_values(blocks={ids.NEW_OWNER: user_value("bob")}), "UBOB"))
    assert list(bad_owner) == [ids.NEW_OWNER]

    harness.slack.users["UAPPBOT"] = {"is_bot": True}  # owners are people, as reassigning insists
    not_people = {app: _errors(submit_view(harness, opened, _valid_values(blocks={ids.NEW_OWNER: user_value(app)}),
                                           "UBOB")) for app in ("UAPPBOT", "USLACKBOT")}
    assert not_people == {
        "UAPPBOT": {ids.NEW_OWNER: "The owner you picked is an app, not a person; a handoff needs a person to own it."},
        "USLACKBOT": {ids.NEW_OWNER: "Slackbot cannot own a handoff; pick a person."},
    }

    expired = view_submission_body(ids.NEW_MODAL, _valid_values(), "UBOB", private_metadata="garbage")
    assert list(_errors(post_signed(harness.events_url, expired, FORM, SIGNING_SECRET))) == [ids.NEW_TITLE]
    assert harness.runtime.repo.page().items == []


@pytest.mark.parametrize(
    ("surface", "told_in", "text"),
    [
        ("global shortcut", "UBOB", "please use the shortcut again"),  # no channel: the app's DM
        ("message shortcut", "CGENERAL", "please use the shortcut again"),
        ("/handoff new", "CGENERAL", "please run the command again"),
    ],
)
def test_a_form_slack_would_not_open_is_told_to_the_person(
    harness: SlackHarness, surface: str, told_in: str, text: str
) -> None:
    """An expired trigger (the bot was slow) used to leave the global shortcut and `/handoff new` silent: the
    person waited for a form that never came."""
    fast_pacing(harness)
    harness.slack.fail_next("views.open", status=200, error="expired_trigger_id")
    body = {
        "global shortcut": lambda: shortcut_body(ids.GLOBAL_SHORTCUT, "UBOB"),
        "message shortcut": lambda: shortcut_body(ids.MESSAGE_SHORTCUT, "UBOB", type="message_action",
                                                  channel_id="CGENERAL", message={"text": "x", "ts": MESSAGE_TS}),
        "/handoff new": lambda: slash_command_body("new Call ACME", "UBOB", channel_id="CGENERAL"),
    }[surface]()
    assert post_signed(harness.events_url, body, FORM, SIGNING_SECRET).status_code == 200
    harness.slack.wait_for("views.open", timeout=10)

    def told() -> list[Call]:
        return [call for call in harness.slack.calls(ok=True)
                if call.method in ("chat.postEphemeral", "chat.postMessage") and call.params.get("channel") == told_in
                and text in str(call.params.get("text"))]

    [notice] = wait_until(told, what=f"the notice after the {surface}")
    assert notice.params.get("user", "UBOB") == "UBOB"
    assert harness.runtime.repo.page().items == []
