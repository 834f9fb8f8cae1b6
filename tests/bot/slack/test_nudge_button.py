"""A manager's "Nudge" on a line of /handoff stalled: logged as `nudged`, delivered to the owner or the queue."""

from __future__ import annotations

from bot import ids
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import wait_outbox_idle
from tests.fakes.slack_signing import FORM, block_action_body, post_signed


def _press_nudge(harness: SlackHarness, handoff_id: int, user: str) -> None:
    body = block_action_body(ids.NUDGE, str(handoff_id), user, channel="CHANDOFFS")
    assert post_signed(harness.events_url, body, FORM, SIGNING_SECRET).status_code == 200


def test_a_managers_nudge_dms_the_owner_and_is_logged(harness: SlackHarness) -> None:
    created = harness.create(owner="UANNA", title="<!channel> renew ACME")
    _press_nudge(harness, created["id"], "UMANAGER")
    dm = harness.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("channel") == "UANNA")[0]
    assert created["ref"] in dm.params["text"] and "<!channel>" not in dm.params["text"]
    nudged = [e for e in harness.runtime.repo.events(created["id"]) if e.action == "nudged"]
    assert [(e.actor, e.data["to"]) for e in nudged] == [("UMANAGER", "UANNA")]
    harness.slack.wait_for(lambda c: c.method == "chat.postEphemeral" and "Nudge sent" in c.params.get("text", ""))


def test_an_unowned_handoff_is_nudged_in_its_cards_thread(harness: SlackHarness) -> None:
    created = harness.create()
    card = harness.card_of(created["id"])
    _press_nudge(harness, created["id"], "UMANAGER")
    reply = harness.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == card.response["ts"]
    )[0]
    assert "nudged" in reply.params["text"]


def test_only_managers_may_nudge(harness: SlackHarness) -> None:
    created = harness.create(owner="UANNA")
    version = harness.runtime.repo.get(created["id"]).version  # type: ignore[union-attr]
    _press_nudge(harness, created["id"], "USTRANGER")
    notice = harness.slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == "USTRANGER")
    assert "Only a manager" in notice[0].params["text"]
    events = harness.runtime.repo.events(created["id"])
    assert "nudged" not in [e.action for e in events]
    assert events[-1].action == "refused" and events[-1].data["attempted"] == "nudge"
    assert harness.runtime.repo.get(created["id"]).version == version  # type: ignore[union-attr]
    assert not harness.slack.calls("chat.postMessage", channel="UANNA")  # no DM went out


def test_a_nudge_that_would_reach_nobody_is_refused_not_reported_as_sent(harness: SlackHarness) -> None:
    """Unowned, and its card never posted (the bot is not in the route's channel): there is no owner to DM and
    no thread to remind the queue in. The manager used to be told "Nudge sent." with nothing sent."""
    harness.slack.fail_channel("CHANDOFFS", "not_in_channel")
    created = harness.create()
    wait_outbox_idle(harness)  # the card's post failed for good
    assert harness.runtime.repo.get(created["id"]).card_ts is None  # type: ignore[union-attr]
    posts_before = len(harness.slack.calls("chat.postMessage"))
    _press_nudge(harness, created["id"], "UMANAGER")
    wait_outbox_idle(harness)
    events = harness.runtime.repo.events(created["id"])
    assert "nudged" not in [e.action for e in events]
    assert events[-1].action == "refused" and events[-1].data["code"] == "nobody_to_nudge"
    told = [c.params["text"] for c in harness.slack.calls(ok=True) if c.params.get("user") == "UMANAGER"
            or c.params.get("channel") == "UMANAGER"]  # privately, or by DM as the bot is not in that channel
    assert len(told) == 1 and "would reach nobody" in told[0], told
    sent_since = harness.slack.calls("chat.postMessage", ok=True)[posts_before:]
    assert [c.params["channel"] for c in sent_since] in ([], ["UMANAGER"])
