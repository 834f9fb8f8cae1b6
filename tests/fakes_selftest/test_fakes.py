"""Checks of the test doubles themselves: the fake Slack Web API and the signed-request builders."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from slack_bolt import Ack, App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import (
    FORM,
    JSON,
    block_action_body,
    event_body,
    message_event,
    post_signed,
    shortcut_body,
    sign,
    slash_command_body,
    text_value,
    view_submission_body,
)

SECRET = "test-signing-secret"
BLOCKS = [{"type": "section", "block_id": "b1", "text": {"type": "mrkdwn", "text": "*hi*"}}]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


def client(fake: FakeSlack, **kwargs: Any) -> WebClient:
    return WebClient(base_url=fake.url, token="xoxb-x", retry_handlers=[], **kwargs)


def test_post_message_is_recorded_with_decoded_blocks(fake: FakeSlack) -> None:
    web = client(fake)
    first = web.chat_postMessage(channel="C1", text="hello", blocks=BLOCKS)
    second = web.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])

    assert first["ok"] and first["channel"] == "C1"
    assert first["message"]["blocks"] == BLOCKS
    assert float(second["ts"]) > float(first["ts"])
    [call] = fake.wait_for("chat.postMessage", channel="C1", text="hello")
    assert call.params["blocks"] == BLOCKS
    assert call.headers["authorization"] == "Bearer xoxb-x"
    assert call.ok and call.answered_at is not None and call.answered_at >= call.received_at
    assert [c.params["text"] for c in fake.posted_cards("C1")] == ["hello"]
    assert [c.params["text"] for c in fake.thread_replies(thread_ts=first["ts"])] == ["reply"]


def test_form_encoded_json_params_are_decoded(fake: FakeSlack) -> None:
    web = client(fake)
    web.api_call("chat.postMessage", params={"channel": "C1", "blocks": json.dumps(BLOCKS), "text": "t"})
    [call] = fake.calls("chat.postMessage")
    assert call.params["blocks"] == BLOCKS
    assert b"blocks=" in call.raw_body


def test_other_methods_answer_realistically(fake: FakeSlack) -> None:
    web = client(fake)
    fake.users["UANNA"] = {"tz": "America/New_York", "tz_offset": -18000}
    fake.usergroups["S1"] = ["UANNA", "UBEN"]
    assert web.auth_test()["user_id"] == "UBOT"
    posted = web.chat_postMessage(channel="C1", text="card")
    updated = web.chat_update(channel="C1", ts=posted["ts"], text="card v2")
    assert updated["ts"] == posted["ts"] and fake.message("C1", posted["ts"])["text"] == "card v2"  # type: ignore[index]
    assert [c.params["text"] for c in fake.updates(posted["ts"])] == ["card v2"]
    with pytest.raises(SlackApiError) as missing:
        web.chat_update(channel="C1", ts="1.2", text="x")
    assert missing.value.response["error"] == "message_not_found"
    link = web.chat_getPermalink(channel="C1", message_ts=posted["ts"])["permalink"]
    assert link == f"https://example.slack.com/archives/C1/p{posted['ts'].replace('.', '')}"
    assert web.chat_postEphemeral(channel="C1", user="UANNA", text="psst")["message_ts"]
    assert [c.params["text"] for c in fake.ephemerals("UANNA")] == ["psst"]
    view = web.views_open(trigger_id="t", view={"type": "modal", "callback_id": "cb", "title": {}})["view"]
    assert view["id"].startswith("V") and view["callback_id"] == "cb" and view["hash"]
    assert web.views_update(view_id=view["id"], view={"type": "modal"})["view"]["id"] == view["id"]
    assert web.views_publish(user_id="UANNA", view={"type": "home", "blocks": []})["view"]["type"] == "home"
    assert web.users_info(user="UANNA")["user"]["tz"] == "America/New_York"
    assert web.users_info(user="UBEN")["user"]["tz"] == "Europe/Berlin"
    assert web.usergroups_users_list(usergroup="S1")["users"] == ["UANNA", "UBEN"]
    assert web.conversations_info(channel="C1")["channel"]["id"] == "C1"
    assert web.conversations_replies(channel="C1", ts=posted["ts"])["messages"] == []
    assert web.reactions_add(channel="C1", timestamp=posted["ts"], name="eyes")["ok"]
    assert web.chat_scheduleMessage(channel="C1", post_at=2000000000, text="later")["ok"]
    with pytest.raises(SlackApiError) as unknown:
        web.api_call("no.such.method")
    assert unknown.value.response.status_code == 200 and unknown.value.response["error"] == "unknown_method"


def test_requests_without_bot_token_are_not_authed(fake: FakeSlack) -> None:
    answer = httpx.post(f"{fake.url}chat.postMessage", data={"channel": "C1", "text": "x"})
    assert answer.status_code == 200 and answer.json() == {"ok": False, "error": "not_authed"}


def test_fail_next_429_surfaces_retry_after(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", count=1, status=429, retry_after=1)
    web = client(fake)
    with pytest.raises(SlackApiError) as failure:
        web.chat_postMessage(channel="C1", text="x")
    assert failure.value.response.status_code == 429
    assert failure.value.response.headers["Retry-After"] in ("1", ["1"])
    assert web.chat_postMessage(channel="C1", text="x")["ok"]
    assert len(fake.posted_cards()) == 1 and len(fake.posted_cards(include_failed=True)) == 2


def test_fail_next_500_and_200_error_and_fail_channel(fake: FakeSlack) -> None:
    web = client(fake)
    fake.fail_next("chat.update", status=500)
    fake.fail_next("chat.update", status=200, error="edit_window_closed")
    with pytest.raises(SlackApiError) as server_error:
        web.chat_update(channel="C1", ts="1.1", text="x")
    assert server_error.value.response.status_code == 500
    with pytest.raises(SlackApiError) as app_error:
        web.chat_update(channel="C1", ts="1.1", text="x")
    assert app_error.value.response["error"] == "edit_window_closed"

    fake.fail_channel("CGONE")
    for _ in range(2):
        with pytest.raises(SlackApiError) as gone:
            web.chat_postMessage(channel="CGONE", text="x")
        assert gone.value.response["error"] == "channel_not_found"
    assert web.chat_postMessage(channel="C1", text="x")["ok"]
    fake.fail_channel("CGONE", None)
    assert web.chat_postMessage(channel="CGONE", text="x")["ok"]


def test_delay_applies_to_one_method_only(fake: FakeSlack) -> None:
    fake.set_delay(0.6, method="chat.postMessage")
    web = client(fake)
    slow_elapsed: list[float] = []

    def slow() -> None:
        started = time.monotonic()
        web.chat_postMessage(channel="C1", text="slow")
        slow_elapsed.append(time.monotonic() - started)

    thread = threading.Thread(target=slow)
    thread.start()
    fake.wait_for("chat.postMessage", timeout=2)
    started = time.monotonic()
    assert web.auth_test()["ok"]
    assert time.monotonic() - started < 0.3
    thread.join(timeout=5)
    assert slow_elapsed and slow_elapsed[0] >= 0.55
    [call] = fake.calls("chat.postMessage")
    assert call.latency is not None and call.latency >= 0.55


def test_enforce_rate_limits_per_channel(fake: FakeSlack) -> None:
    fake.enforce_rate(per_channel_per_second=1.0, burst=1)
    web = client(fake)
    assert web.chat_postMessage(channel="C1", text="1")["ok"]
    with pytest.raises(SlackApiError) as limited:
        web.chat_postMessage(channel="C1", text="2")
    assert limited.value.response.status_code == 429
    retry_after = limited.value.response.headers["Retry-After"]
    retry_after = retry_after[0] if isinstance(retry_after, list) else retry_after
    assert int(retry_after) >= 1
    assert web.chat_postMessage(channel="C2", text="1")["ok"]
    assert fake.rate_limited_count == 1


def test_down_refuses_connections_and_up_serves_again(fake: FakeSlack) -> None:
    url = fake.url
    fake.down()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}auth.test", headers={"Authorization": "Bearer xoxb-x"}, timeout=2)
    fake.up()
    assert fake.url == url
    answer = httpx.post(f"{url}auth.test", headers={"Authorization": "Bearer xoxb-x"}, timeout=2)
    assert answer.json()["ok"] is True


def test_wait_for_times_out_with_summary(fake: FakeSlack) -> None:
    client(fake).chat_postMessage(channel="C1", text="only one")
    with pytest.raises(AssertionError, match=r"chat\.postMessage .*only one"):
        fake.wait_for("chat.postMessage", count=2, timeout=0.1)
    fake.reset()
    assert fake.calls() == []


def test_sign_verifies_with_slack_sdk() -> None:
    body = slash_command_body("help", "UANNA")
    headers = sign(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    assert not verifier.is_valid_request(body, sign(SECRET, body, int(time.time()) - 600))


def test_bodies_dispatch_through_bolt(fake: FakeSlack) -> None:
    """Each builder's payload reaches the matching Bolt listener, with signature checks on."""
    app = App(signing_secret=SECRET, client=client(fake))
    seen: dict[str, Any] = {}

    @app.action("handoff_claim")
    def on_action(ack: Ack, body: dict[str, Any], context: Any) -> None:
        ack()
        seen["action"] = (body["actions"][0]["value"], context.user_id, context.channel_id)

    @app.view("handoff_edit")
    def on_view(ack: Ack, view: dict[str, Any]) -> None:
        ack()
        seen["view"] = (view["state"]["values"]["title"]["input"]["value"], view["private_metadata"])

    @app.command("/handoff")
    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        ack()
        seen["command"] = command["text"]

    @app.shortcut("new_handoff")
    def on_shortcut(ack: Ack) -> None:
        ack()
        seen["shortcut"] = True

    @app.message_shortcut("create_handoff")
    def on_message_shortcut(ack: Ack, shortcut: dict[str, Any]) -> None:
        ack()
        seen["message_shortcut"] = shortcut["message"]["text"]

    @app.event("message")
    def on_message(event: dict[str, Any]) -> None:
        seen["event"] = event["metadata"]["event_type"]

    def dispatch(body: bytes, content_type: str) -> int:
        request = BoltRequest(body=body.decode(), headers={"content-type": content_type, **sign(SECRET, body)})
        return app.dispatch(request).status

    assert dispatch(block_action_body("handoff_claim", "42", "UANNA", channel="CSALES"), FORM) == 200
    state = {"title": {"input": text_value("New title")}}
    assert dispatch(view_submission_body("handoff_edit", state, "UANNA", private_metadata='{"id": 42}'), FORM) == 200
    assert dispatch(slash_command_body("show H-42", "UANNA"), FORM) == 200
    assert dispatch(shortcut_body("new_handoff", "UANNA"), FORM) == 200
    message = {"text": "please call ACME", "user": "UBEN"}
    assert dispatch(shortcut_body("create_handoff", "UANNA", "message_action", message=message), FORM) == 200
    event = message_event("CINTAKE", "UBEN", "x", metadata={"event_type": "handoff", "event_payload": {}})
    assert dispatch(event_body(event), JSON) == 200

    deadline = time.monotonic() + 5
    while "event" not in seen and time.monotonic() < deadline:  # events run after the ack
        time.sleep(0.01)
    assert seen == {
        "action": ("42", "UANNA", "CSALES"),
        "view": ("New title", '{"id": 42}'),
        "command": "show H-42",
        "shortcut": True,
        "message_shortcut": "please call ACME",
        "event": "handoff",
    }
    payload = json.loads(parse_qs(block_action_body("a", "1", "U1").decode())["payload"][0])
    assert payload["container"]["type"] == "message" and payload["actions"][0]["type"] == "button"

    forged = BoltRequest(body="payload=%7B%7D", headers={"content-type": FORM, **sign("wrong", b"payload=%7B%7D")})
    assert app.dispatch(forged).status == 401


def test_post_signed_sends_signature_headers(fake: FakeSlack) -> None:
    answer = post_signed(fake.url + "auth.test", b"a=1", FORM, SECRET, headers={"Authorization": "Bearer xoxb-y"})
    assert answer.json()["ok"] is True
    [call] = fake.calls("auth.test")
    assert SignatureVerifier(SECRET).is_valid_request(call.raw_body, call.headers)
    assert call.params == {"a": "1"}
