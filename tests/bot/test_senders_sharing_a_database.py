"""Several `serve` processes sending from one PostgreSQL database, with Slack slow: a lease outlived by a long
look, and renders of one card or one App Home sent by two processes at once.

Two outbox senders on one database stand for two `handoff-bot serve` processes (each its own database pool, its
own Slack client, its own dispatcher), as a team runs them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.outbox import ChannelPacer, OutboxSender
from bot.runtime import Runtime, build_runtime
from handoffs.config import HandoffConfig
from handoffs.effects import publish_home
from handoffs.lifecycle import Action, Actor, Request
from handoffs.model import HandoffIn
from storage.outbox import OutboxStore
from tests.bot.slack.e2e import wait_until
from tests.conftest import PG_URL, make_settings
from tests.factories import payload
from tests.fakes.slack_api import FakeSlack

needs_postgres = pytest.mark.skipif(not PG_URL, reason="several processes on one database need TEST_DATABASE_URL")


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


class Processes:
    """Runtimes and outbox senders on one database, each standing for one `serve` process."""

    def __init__(self, database_url: str, config: HandoffConfig, slack: FakeSlack) -> None:
        self.database_url, self.config, self.slack = database_url, config, slack
        self.runtimes: list[Runtime] = []
        self.senders: list[OutboxSender] = []

    def runtime(self) -> Runtime:
        runtime = build_runtime(make_settings(self.database_url, slack_api_url=self.slack.url), config=self.config)
        self.runtimes.append(runtime)
        return runtime

    def sender(self, *, timeout: int, lease: float, start: bool = True) -> OutboxSender:
        """A sender as `serve` builds it (no SDK retries), its client's timeout and its lease scaled down together
        (the product's 10 s and 30 s), pacing out of the way."""
        runtime = self.runtime()
        client = WebClient(token="xoxb-test-token", base_url=self.slack.url, timeout=timeout, retry_handlers=[])
        sender = OutboxSender(OutboxStore(runtime.db), runtime.repo, client, runtime.config, runtime.clock,
                              poll_seconds=0.1, pacer=ChannelPacer(rate=50.0, burst=10.0), lease_seconds=lease)
        runtime.notify = sender.wake
        self.senders.append(sender)
        if start:
            sender.start()
        return sender

    def close(self) -> None:
        """Stop every sender, each after its sends under way (twice is harmless)."""
        for sender in self.senders:
            sender.stop(timeout=10)
        self.senders = []


@pytest.fixture
def processes(make_database_url: Callable[[str], str], handoff_config: HandoffConfig,
              fake_slack: FakeSlack) -> Iterator[Processes]:
    group = Processes(make_database_url("postgres"), handoff_config, fake_slack)
    try:
        yield group
    finally:
        group.close()
        for runtime in group.runtimes:
            runtime.close()


def cards_of(slack: FakeSlack, channel: str, handoff_id: int) -> list[dict[str, Any]]:
    """The messages in `channel` that are the card of `handoff_id` (by the metadata every card carries)."""
    return [m for m in slack.channel_messages(channel)
            if (m.get("metadata") or {}).get("event_type") == "handoff_card"
            and m["metadata"]["event_payload"] == {"handoff_id": handoff_id}]


def pending(runtime: Runtime, handoff_id: int) -> list[str]:
    return [row.kind for row in runtime.repo.outbox_for(handoff_id) if row.state == "pending"]


# --------------------------------------------------------------------------- lease expiry mid-send


@needs_postgres
def test_a_card_post_still_being_handled_when_its_lease_ends_is_not_posted_by_a_second_process(
    processes: Processes, fake_slack: FakeSlack,
) -> None:
    """A retried card post looks for the card in the channel's history, page by page, before posting it. Each of
    those calls stays under the client's timeout, but together they outlast the lease. The second process used to
    take the row, read the history before the first one's post landed, and post a second card; the lease is now
    renewed before each page and before the post. Scaled down: client timeout 2 s, lease 2.5 s (as 10 s and
    30 s), each history page 1.6 s."""
    seeder = WebClient(token="xoxb-test-token", base_url=fake_slack.url)
    for n in range(450):  # a busy channel: the look reads three pages of 200
        seeder.chat_postMessage(channel="CHANDOFFS", text=f"earlier card {n}")
    first = processes.sender(timeout=2, lease=2.5)
    runtime = processes.runtimes[0]
    fake_slack.fail_next("chat.postMessage", status=500)  # the first try fails: the retry looks before posting
    fake_slack.set_delay(1.6, "conversations.history")
    handoff = runtime.service.submit(HandoffIn.model_validate(payload()), actor="producer").handoff
    runtime.notify()
    wait_until(lambda: fake_slack.calls("conversations.history"), what="the first process's look (retry)")
    second = processes.sender(timeout=2, lease=2.5)  # another `serve` on the same database
    assert second is not first
    wait_until(lambda: not pending(runtime, handoff.id), timeout=20, what="the card row finished")
    processes.close()  # each process finishes what it is sending
    cards = cards_of(fake_slack, "CHANDOFFS", handoff.id)
    assert len(cards) == 1, f"the card of H-{handoff.id} is in the channel {len(cards)} times"


# --------------------------------------------------------------------------- quick changes, two processes


@needs_postgres
def test_a_card_changed_twice_quickly_shows_its_last_state_with_two_processes_sending(
    processes: Processes, fake_slack: FakeSlack,
) -> None:
    """In one process a channel has one write in flight at a time, so a card's updates reach Slack in the order
    they were rendered. Two processes on one database each take a due row of the channel: while the first is
    sending the claim's update (its request a second on the way: a slow network, a busy machine), the second
    renders the release and sends it, and the older render lands last. The card used to show "claimed" (no Claim
    button) for good while the handoff was open; a send now renders again when the handoff changed meanwhile."""
    senders = [processes.sender(timeout=2, lease=3.0) for _ in range(2)]
    runtime = processes.runtimes[0]
    handoff = runtime.service.submit(HandoffIn.model_validate(payload()), actor="producer").handoff
    runtime.notify()
    wait_until(lambda: (h := runtime.repo.get(handoff.id)) and h.card_ts, what="the card")
    carded = runtime.repo.get(handoff.id)
    assert carded is not None and carded.card_ts
    card_ts = carded.card_ts
    sending_first = threading.Event()

    def slow_first_update(real: Callable[..., Any]) -> Callable[..., Any]:
        def update(**kwargs: Any) -> Any:
            if not sending_first.is_set():
                sending_first.set()
                time.sleep(1.0)  # this request reaches Slack a second after it was rendered
            return real(**kwargs)
        return update

    for sender in senders:
        sender.client.chat_update = slow_first_update(sender.client.chat_update)  # type: ignore[method-assign]
    runtime.service.act(handoff.id, Request(Action.claim), Actor("UANNA"))
    runtime.notify()
    assert sending_first.wait(5), "the claim's card update was never sent"
    runtime.service.act(handoff.id, Request(Action.release), Actor("UANNA"))
    runtime.notify()
    wait_until(lambda: not pending(runtime, handoff.id), timeout=15, what="every card write sent")
    processes.close()
    final = runtime.repo.get(handoff.id)
    assert final is not None and final.status.value == "open"
    shown = fake_slack.message("CHANDOFFS", card_ts)
    assert shown is not None
    buttons = [e["action_id"] for b in shown["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "handoff_claim" in buttons, f"the open handoff's card shows no Claim button: {buttons}"


@needs_postgres
def test_an_app_home_published_twice_quickly_shows_the_later_board_with_two_processes_sending(
    processes: Processes, fake_slack: FakeSlack,
) -> None:
    """The same as for a card, for a person's App Home: one process publishes one person's Home at a time (its
    lane), so the later board lands last; two processes each take one publish. The board built before the close
    lands after the one built after it: the closed handoff stayed on the person's Home as assigned to them. A
    publish now publishes again when a newer one was sent meanwhile."""
    senders = [processes.sender(timeout=2, lease=3.0) for _ in range(2)]
    runtime = processes.runtimes[0]
    handoff = runtime.service.submit(HandoffIn.model_validate(payload()), actor="producer").handoff
    runtime.service.act(handoff.id, Request(Action.claim), Actor("UANNA"))
    runtime.notify()
    wait_until(lambda: not pending(runtime, handoff.id), what="the card and the claim sent")
    publishing_first = threading.Event()

    def slow_first_publish(real: Callable[..., Any]) -> Callable[..., Any]:
        def publish(**kwargs: Any) -> Any:
            if not publishing_first.is_set():
                publishing_first.set()
                time.sleep(1.0)  # this request reaches Slack a second after its board was built
            return real(**kwargs)
        return publish

    for sender in senders:
        sender.client.views_publish = slow_first_publish(sender.client.views_publish)  # type: ignore[method-assign]
    runtime.repo.enqueue([publish_home("UANNA")])  # Anna opens her Home: H-1 assigned to her
    runtime.notify()
    assert publishing_first.wait(5), "the first publish was never sent"
    runtime.service.act(handoff.id, Request(Action.close, outcome="done"), Actor("UANNA"))
    runtime.repo.enqueue([publish_home("UANNA")])  # she closed it from her Home: it refreshes
    runtime.notify()
    wait_until(lambda: len(fake_slack.calls("views.publish")) >= 2, timeout=10, what="both publishes")
    processes.close()
    last = fake_slack.calls("views.publish")[-1]  # the last Slack received: what Anna's Home shows
    assert f"H-{handoff.id}" not in json.dumps(last.params["view"]), "the closed handoff is still on Anna's Home"
