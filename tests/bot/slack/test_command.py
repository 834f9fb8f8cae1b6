"""`/handoff` end to end: signed slash commands over real HTTP to the running bot, answers read from the ack.

Every answer must be private (`response_type: ephemeral`, in the ack body), and nothing may be posted in the
channel the command was typed in. Time is controlled: the runtime's clock is real time plus an offset the
test moves (so deadlines pass without sleeping, while the outbox, whose retries count on the same clock,
keeps working).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot import ids
from bot.blocks.card import CARD_TEXT_BUDGET
from bot.runtime import build_runtime
from bot.server import build_bot
from bot.slack.command_parser import USAGE
from bot.slack.listeners import commands
from bot.slack.listeners.commands import _event_line, whole_lines
from bot.text import mrkdwn_safe
from handoffs.config import HandoffConfig
from handoffs.lifecycle import Action, Actor, Request
from handoffs.model import Event, HandoffIn, Status
from storage.tables import EventRow, HandoffRow, OutboxRow
from tests.bot.blocks.test_card import text_length
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import fast_pacing, wait_outbox_idle, wait_until
from tests.conftest import LiveServer, make_settings
from tests.factories import lead, payload
from tests.fakes.slack_api import Call, FakeSlack
from tests.fakes.slack_signing import FORM, block_action_body, post_signed, slash_command_body

HERE = "CGENERAL"  # where the commands are typed: nothing may ever be posted there
WAIT = 10.0
REF = re.compile(r"\*(?:<[^|>]+\|)?H-(\d+)>?\*")


class Clock:
    """Real time plus an offset the test moves."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta

    def set_offset(self, offset: timedelta) -> None:
        with self._lock:
            self._offset = offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def harness(
    database_url: str, handoff_config: HandoffConfig, fake_slack: FakeSlack, clock: Clock
) -> Iterator[SlackHarness]:
    """The shared harness, on the test's clock, with fast pacing (seeding posts many cards)."""
    settings = make_settings(database_url, slack_api_url=fake_slack.url, slack_signing_secret=SIGNING_SECRET)
    runtime = build_runtime(settings, config=handoff_config, clock=clock)
    bot = build_bot(runtime)
    bot.start()
    with LiveServer(bot.asgi) as server:
        harness = SlackHarness(fake_slack, server, runtime, bot)
        fast_pacing(harness)
        yield harness
    bot.stop()
    runtime.close()


# --- seeding (through the real service, on the test's clock) -----------------------------------------


def seed(h: SlackHarness, **fields: Any) -> int:
    body = fields.pop("body", None) or payload(**fields)
    result = h.runtime.service.submit(HandoffIn.model_validate(body), actor="producer")
    return result.handoff.id


def act(h: SlackHarness, handoff_id: int, user: str, action: Action, **arguments: Any) -> None:
    h.runtime.service.act(handoff_id, Request(action, **arguments), Actor(user))


def in_(h: SlackHarness, delta: timedelta) -> str:
    return (h.runtime.clock() + delta).isoformat()


def status(h: SlackHarness, handoff_id: int) -> tuple[str, str | None, str | None, int]:
    handoff = h.runtime.repo.get(handoff_id)
    assert handoff is not None
    return handoff.status.value, handoff.owner, handoff.outcome, handoff.version


def state(h: SlackHarness) -> dict[str, Any]:
    """Everything a command could change: each handoff, its events (refusals aside), the outbox."""
    with h.runtime.db.read() as session:
        handoffs = session.execute(select(
            *(col(column) for column in (HandoffRow.id, HandoffRow.status, HandoffRow.version, HandoffRow.owner,
                                         HandoffRow.outcome, HandoffRow.outcome_note, HandoffRow.stall_at)),
        ).order_by(col(HandoffRow.id))).all()
        events = session.execute(
            select(col(EventRow.handoff_id), col(EventRow.action), func.count())
            .where(col(EventRow.action) != "refused").group_by(col(EventRow.handoff_id), col(EventRow.action))
        ).all()
        outbox = session.execute(select(func.count()).select_from(OutboxRow)).scalar_one()
    return {"handoffs": [tuple(row) for row in handoffs], "events": sorted(tuple(row) for row in events),
            "outbox": outbox}


def refused(h: SlackHarness, handoff_id: int) -> list[str]:
    return [str(e.data.get("code")) for e in h.runtime.repo.events(handoff_id) if e.action == "refused"]


# --- the command and its answer -----------------------------------------------------------------------


def slash(h: SlackHarness, text: str, user: str, *, trigger_id: str | None = None) -> dict[str, Any]:
    """Send `/handoff <text>` as `user` in HERE; the answer must be private and in the ack itself."""
    body = slash_command_body(text, user, channel_id=HERE, trigger_id=trigger_id)
    response = post_signed(h.events_url, body, FORM, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["response_type"] == "ephemeral", answer
    assert answer["text"], answer
    return dict(answer)


def shown(answer: dict[str, Any]) -> str:
    """Every text the answer shows (its fallback text and every text in its blocks)."""
    found: list[str] = [answer.get("text") or ""]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(answer.get("blocks") or [])
    return "\n".join(found)


def lists(blocks: list[dict[str, Any]]) -> dict[str, list[int]]:
    """heading -> handoff ids listed under it, in order, for the list answers of `mine` and `stalled`."""
    groups: dict[str, list[int]] = {}
    current = ""
    for block in blocks:
        if block["type"] != "section":
            continue
        text = block["text"]["text"]
        match = REF.search(text)
        if match:
            groups[current].append(int(match.group(1)))
        else:
            current = text.strip("*")
            groups[current] = []
    return groups


def stalled_ids(blocks: list[dict[str, Any]]) -> list[int]:
    [(_, found)] = [(k, v) for k, v in lists(blocks).items() if k.startswith("Stalled handoffs")]
    return found


def nudge_buttons(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["accessory"]["value"] for b in blocks
            if b["type"] == "section" and (b.get("accessory") or {}).get("action_id") == ids.NUDGE]


def more_button(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == ids.LIST_PAGE]
    assert len(found) <= 1
    return found[0] if found else None


def slack_writes(h: SlackHarness) -> list[Call]:
    """Everything the bot asked Slack to show: messages, updates, ephemerals, modals."""
    return [c for c in h.slack.calls() if c.method.startswith("chat.") or c.method.startswith("views.")]


def nothing_here(h: SlackHarness) -> None:
    """Nothing was ever posted (publicly or privately) in the channel where the commands were typed."""
    assert [c.summary() for c in h.slack.calls() if c.channel == HERE] == []


def modals_opened(h: SlackHarness, trigger_id: str) -> list[Call]:
    return h.slack.calls("views.open", trigger_id=trigger_id)


def barrier(h: SlackHarness, user: str) -> None:
    """Wait until a `/handoff new` sent now has opened its form: lazy listeners of earlier commands were
    started before it (Bolt starts them before answering), so whatever they were going to open is open."""
    trigger = f"barrier-{user}-{len(h.slack.calls())}"
    slash(h, "new", user, trigger_id=trigger)
    h.slack.wait_for("views.open", timeout=WAIT, trigger_id=trigger)


# --- help, new ----------------------------------------------------------------------------------------


def test_help_and_empty_text_answer_privately_with_the_usage(harness: SlackHarness) -> None:
    for text in ("help", "", "   "):
        answer = slash(harness, text, "UANNA")
        assert "*handoff-bot*" in answer["text"]
        assert USAGE in answer["text"]
    wait_outbox_idle(harness)
    assert slack_writes(harness) == []


def test_new_answers_privately_and_opens_the_new_handoff_form(harness: SlackHarness) -> None:
    # as Slack sends what was typed (escaping on): entities for & < >, mentions and links as markup
    typed = "new Call R&amp;D &lt;ACME&gt; with <@UBEN|ben>, see <https://acme.test/t/1|the ticket>"
    answer = slash(harness, typed, "UANNA", trigger_id="trigger-new")
    assert "Opening the new handoff form" in answer["text"]

    [opened] = harness.slack.wait_for("views.open", timeout=WAIT, trigger_id="trigger-new")
    view = opened.params["view"]
    assert view["callback_id"] == ids.NEW_MODAL
    [title] = [b["element"].get("initial_value") for b in view["blocks"] if b.get("block_id") == ids.NEW_TITLE]
    assert title == "Call R&D <ACME> with @ben, see the ticket (https://acme.test/t/1)"  # as the person typed it

    slash(harness, "new", "UANNA", trigger_id="trigger-blank")  # no title: an empty form
    [blank] = harness.slack.wait_for("views.open", timeout=WAIT, trigger_id="trigger-blank")
    assert [b["element"].get("initial_value") for b in blank.params["view"]["blocks"]
            if b.get("block_id") == ids.NEW_TITLE] == [None]
    wait_outbox_idle(harness)
    assert [c.method for c in slack_writes(harness)] == ["views.open", "views.open"]
    assert state(harness)["handoffs"] == []


# --- mine ---------------------------------------------------------------------------------------------


def test_mine_lists_what_the_caller_owns_and_what_awaits_their_approval(harness: SlackHarness) -> None:
    owned = seed(harness, owner="UANNA")
    owned_in_review = seed(harness, owner="UANNA", requires_approval=True, approvers=["ULEAD"])
    to_approve = seed(harness, owner="UBEN", requires_approval=True, approvers=["UANNA", "ULEAD"])
    closed = seed(harness, owner="UANNA")
    act(harness, closed, "UANNA", Action.close, outcome="done")
    approved = seed(harness, owner="UBEN", requires_approval=True, approvers=["UANNA"])
    act(harness, approved, "UANNA", Action.approve)
    seed(harness, owner="UBEN", approvers=["UANNA"])  # an approver, but no approval is required
    seed(harness, owner="UBEN")
    seed(harness)  # open in the queue
    review = seed(harness, confidence=0.3)  # low confidence: the review route, its approvers (ULEAD)

    answer = slash(harness, "mine", "UANNA")

    assert answer["text"].startswith("You own 2 open handoff(s); 1 wait for your approval.")
    assert lists(answer["blocks"]) == {
        "Yours": [owned_in_review, owned],
        "Waiting for your approval": [to_approve],
    }
    lead_view = slash(harness, "mine", "ULEAD")
    assert lists(lead_view["blocks"]) == {"Yours": [], "Waiting for your approval": [review, to_approve,
                                                                                    owned_in_review]}
    empty = slash(harness, "mine", "UNOBODY")
    assert lists(empty["blocks"]) == {"Yours": [], "Waiting for your approval": []}
    assert "You own nothing open." in shown(empty) and "Nothing waits for your approval." in shown(empty)
    wait_outbox_idle(harness)
    nothing_here(harness)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_mine_gives_the_totals_and_pages_through_every_handoff(harness: SlackHarness) -> None:
    """20 owned and 17 to approve: the answer said "You own 15 …; 15 wait" (the page, not the totals), and the
    five owned beyond the page could be reached nowhere (the App Home points to `/handoff mine` for them)."""
    owned = [seed(harness, owner="UANNA") for _ in range(20)]
    to_approve = [seed(harness, owner="UBEN", requires_approval=True, approvers=["UANNA"]) for _ in range(17)]

    first = slash(harness, "mine", "UANNA")

    assert first["text"].startswith("You own 20 open handoff(s); 17 wait for your approval."), first["text"]
    assert lists(first["blocks"]) == {"Yours": owned[::-1][:15], "Waiting for your approval": to_approve[::-1][:15]}
    button = more_button(first["blocks"])
    assert button is not None and json.loads(button["value"]) == {"q": "mine", "offset": 15}
    click = block_action_body(ids.LIST_PAGE, button["value"], "UANNA", channel=HERE, message_ts="1700000001.000100")
    assert post_signed(harness.events_url, click, FORM, SIGNING_SECRET).status_code == 200
    [page] = harness.slack.wait_for(
        lambda c: c.method == "chat.postEphemeral" and bool(c.params.get("blocks")), timeout=WAIT, ok=True
    )
    assert lists(page.params["blocks"]) == {"Yours (from #16)": owned[::-1][15:],
                                            "Waiting for your approval (from #16)": to_approve[::-1][15:]}
    assert more_button(page.params["blocks"]) is None


# --- stalled ------------------------------------------------------------------------------------------


def seed_stalled_and_healthy(h: SlackHarness, clock: Clock) -> dict[str, int]:
    """A mix of stalled and healthy handoffs; then 5h10m pass. Comments give how late each is at the end."""
    t: dict[str, int] = {}
    # stalled
    t["open_urgent"] = seed(h, urgency="urgent")  # open, claim by +15m: 4h55m late
    t["awaiting"] = seed(h, urgency="high", owner="UCARL", requires_approval=True,  # claimed, not approved,
                         approvers=["ULEAD"])  # claim by +1h: 4h10m late
    t["lead"] = seed(h, body=lead(urgency="high", owner="UANNA", due_at=in_(h, timedelta(hours=2))))  # 3h10m
    t["open_normal"] = seed(h)  # open, claim by +4h: 1h10m late
    t["claimed_ben"] = seed(h, owner="UBEN", due_at=in_(h, timedelta(hours=4, minutes=30)))  # 40m late
    clock.advance(timedelta(minutes=10))
    t["review"] = seed(h, urgency="high", confidence=0.3)  # open in review, claim by +1h10m: 4h late
    # healthy
    seed(h, owner="UANNA", due_at=in_(h, timedelta(hours=10)))  # claimed, due in 5h
    seed(h, urgency="low")  # open, claim by +1d
    closed = seed(h, owner="UANNA", due_at=in_(h, timedelta(minutes=30)))
    act(h, closed, "UANNA", Action.close, outcome="done")
    rejected = seed(h, owner="UBEN", due_at=in_(h, timedelta(minutes=30)))
    act(h, rejected, "UBEN", Action.reject, reason="not ours")
    approved = seed(h, urgency="high", owner="UCARL", requires_approval=True, approvers=["ULEAD"],
                    due_at=in_(h, timedelta(hours=10)))  # its claim deadline passes, but it is approved
    act(h, approved, "ULEAD", Action.approve)
    reopened = seed(h, owner="UANNA", due_at=in_(h, timedelta(minutes=30)))  # reopened later: open again,
    act(h, reopened, "UANNA", Action.close, outcome="done")                   # with a fresh claim deadline
    clock.advance(timedelta(hours=4))
    act(h, reopened, "UMANAGER", Action.reopen)  # claim by (+4h) +4h
    clock.advance(timedelta(hours=1))
    return t


def test_stalled_lists_exactly_the_stalled_handoffs_most_overdue_first(harness: SlackHarness, clock: Clock) -> None:
    t = seed_stalled_and_healthy(harness, clock)
    expected = [t["open_urgent"], t["awaiting"], t["review"], t["lead"], t["open_normal"], t["claimed_ben"]]

    answer = slash(harness, "stalled", "UMANAGER")

    assert answer["text"] == "6 stalled handoff(s) shown."
    assert stalled_ids(answer["blocks"]) == expected
    text = shown(answer)
    assert "4h 55m late" in text and "4h 10m late" in text and "40m late" in text
    assert more_button(answer["blocks"]) is None

    # each line of a manager's list has a Nudge button; nobody else's does
    assert nudge_buttons(answer["blocks"]) == [str(i) for i in expected]
    owner_view = slash(harness, "stalled", "UANNA")
    assert stalled_ids(owner_view["blocks"]) == expected
    assert nudge_buttons(owner_view["blocks"]) == []
    assert "accessory" not in json.dumps(owner_view["blocks"])

    wait_outbox_idle(harness)
    nothing_here(harness)


def test_stalled_filters_by_person_channel_and_kind(harness: SlackHarness, clock: Clock) -> None:
    t = seed_stalled_and_healthy(harness, clock)
    in_handoffs = [t["open_urgent"], t["awaiting"], t["open_normal"], t["claimed_ben"]]

    def found(text: str) -> list[int]:
        return stalled_ids(slash(harness, text, "UMANAGER")["blocks"])

    assert found("stalled <@UANNA|anna>") == [t["lead"]]
    assert found("stalled <@UBEN>") == [t["claimed_ben"]]
    assert found("stalled <@UCARL|carl>") == [t["awaiting"]]
    assert found("stalled <#CSALES|sales>") == [t["lead"]]
    assert found("stalled <#CHANDOFFS>") == in_handoffs
    assert found("stalled <#CREVIEW>") == [t["review"]]
    assert found("stalled lead") == [t["lead"]]
    assert found("stalled task") == [t["open_urgent"], t["awaiting"], t["review"], t["open_normal"], t["claimed_ben"]]
    assert found("stalled task <@UBEN|ben> <#CHANDOFFS>") == [t["claimed_ben"]]
    assert found("stalled lead <#CHANDOFFS>") == []
    nobody = slash(harness, "stalled <@UZED>", "UMANAGER")
    assert "Nothing is stalled." in shown(nobody)


def test_stalled_pages_by_fifteen_and_more_sends_the_next_page_privately(
    harness: SlackHarness, clock: Clock
) -> None:
    late = [seed(harness) for _ in range(20)]  # open, claim by +4h, in creation order
    seed(harness, urgency="low")  # healthy
    clock.advance(timedelta(hours=5))

    first = slash(harness, "stalled", "UMANAGER")

    assert stalled_ids(first["blocks"]) == late[:15]
    assert len(first["blocks"]) < 50
    button = more_button(first["blocks"])
    assert button is not None and json.loads(button["value"]) == {"q": "stalled", "offset": 15}

    wait_outbox_idle(harness)
    before = len(slack_writes(harness))
    click = block_action_body(ids.LIST_PAGE, button["value"], "UMANAGER", channel=HERE,
                              message_ts="1700000001.000100")
    response = post_signed(harness.events_url, click, FORM, SIGNING_SECRET)
    assert response.status_code == 200, response.text

    [page] = harness.slack.wait_for(
        lambda c: c.method == "chat.postEphemeral" and bool(c.params.get("blocks")), timeout=WAIT, ok=True
    )
    assert (page.channel, page.params["user"]) == (HERE, "UMANAGER")
    blocks = page.params["blocks"]
    assert stalled_ids(blocks) == late[15:]
    assert more_button(blocks) is None
    assert nudge_buttons(blocks) == [str(i) for i in late[15:]]
    wait_outbox_idle(harness)
    assert [c.method for c in slack_writes(harness)[before:]] == ["chat.postEphemeral"]  # nothing public


@pytest.mark.parametrize("value", ['{"q": "stalled", "offset": null}', '[1, 2]', '{"q": "stalled", "offset": 1e30}',
                                   '{"q": "stalled", "offset": "x"}', 'not json'])
def test_a_more_button_with_a_value_the_bot_never_wrote_changes_nothing(harness: SlackHarness, value: str) -> None:
    click = block_action_body(ids.LIST_PAGE, value, "UMANAGER", channel=HERE, message_ts="1700000001.000100")
    assert post_signed(harness.events_url, click, FORM, SIGNING_SECRET).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the listener's rule: one backend shows it
@pytest.mark.parametrize(("query", "status_before"), [
    ("claim {ref}", None), ("close {ref} done", "claimed"), ("assign {ref} <@UBEN>", "claimed"),
    ("reopen {ref}", "closed"), ("stats 90d", None), ("help", None),
])
def test_a_more_button_runs_no_command_but_the_lists(
    harness: SlackHarness, query: str, status_before: str | None
) -> None:
    """A forged "More" value naming another command (`{"q": "claim H-1"}`) used to run it for the clicker; only
    `stalled` and `mine`, which change nothing, page."""
    handoff_id = seed(harness)
    if status_before:
        harness.runtime.service.act(handoff_id, Request(Action.claim), Actor("UANNA"))
    if status_before == "closed":
        harness.runtime.service.act(handoff_id, Request(Action.close, outcome="done"), Actor("UANNA"))
    wait_outbox_idle(harness)
    before, writes = state(harness), len(slack_writes(harness))
    value = json.dumps({"q": query.format(ref=f"H-{handoff_id}"), "offset": 0})
    click = block_action_body(ids.LIST_PAGE, value, "UMANAGER", channel=HERE, message_ts="1700000001.000100")
    assert post_signed(harness.events_url, click, FORM, SIGNING_SECRET).status_code == 200
    barrier(harness, "UMANAGER")
    wait_outbox_idle(harness)
    assert state(harness) == before
    assert [c.method for c in slack_writes(harness)[writes:]] == ["views.open"]  # the barrier's form only


def test_a_more_button_far_past_the_end_answers_with_an_empty_page(harness: SlackHarness) -> None:
    value = json.dumps({"q": "stalled", "offset": 10**30})
    click = block_action_body(ids.LIST_PAGE, value, "UMANAGER", channel=HERE, message_ts="1700000001.000100")
    assert post_signed(harness.events_url, click, FORM, SIGNING_SECRET).status_code == 200
    [page] = harness.slack.wait_for(lambda c: c.method == "chat.postEphemeral", timeout=WAIT, ok=True)
    assert "Nothing is stalled" in json.dumps(page.params)


# --- show ---------------------------------------------------------------------------------------------


def test_show_cuts_its_event_lines_whole_and_says_so() -> None:
    lines = [f"<!date^{1700000000 + n}^{{date_short_pretty}}|x> · line {n}" for n in range(10)]
    assert whole_lines(lines, 3000) == "\n".join(lines)
    cut = whole_lines(lines, 200)
    assert len(cut) <= 200 and cut.endswith("\n…")
    assert cut.splitlines()[:-1] == lines[: len(cut.splitlines()) - 1]  # whole lines, oldest first
    assert whole_lines(lines, len("\n".join(lines))) == "\n".join(lines)  # an exact fit is not cut


@pytest.mark.parametrize("actor", ["Webflow", "UiPath", "Workato", "<!here>"])
def test_show_names_an_api_client_as_text_not_as_a_mention(actor: str) -> None:
    """A token name that merely starts with U or W is no user id: `<@Webflow>` would show no name."""
    event = Event(id=1, handoff_id=1, action="created", actor=actor, at=datetime(2025, 3, 12, 10, tzinfo=UTC),
                  from_status=None, to_status="open", data={})
    line = _event_line(event)
    assert line.endswith(f"created by {mrkdwn_safe(actor)}")
    assert "<@" not in line and "<!here>" not in line
    assert _event_line(replace(event, actor="U0ANNA")).endswith("created by <@U0ANNA>")


def test_show_answers_with_the_card_and_its_latest_events(harness: SlackHarness) -> None:
    handoff_id = seed(harness, title="Send ACME the renewal quote")
    act(harness, handoff_id, "UANNA", Action.claim)
    act(harness, handoff_id, "UANNA", Action.reassign, new_owner="UBEN")

    answer = slash(harness, f"show H-{handoff_id}", "UCARL")

    assert answer["text"] == f"H-{handoff_id}: Send ACME the renewal quote"
    text = shown(answer)
    assert "Send ACME the renewal quote" in text and "<@UBEN>" in text
    [events] = [b for b in answer["blocks"] if b["type"] == "context" and "created by" in json.dumps(b)]
    lines = events["elements"][0]["text"].splitlines()
    assert [line.split(" · ")[-1] for line in lines] == [
        "created by producer", "claimed by <@UANNA>", "reassigned by <@UANNA>",
    ]
    assert slash(harness, f"show {handoff_id}", "UCARL")["text"] == answer["text"]

    for _ in range(5):  # 13 events in all: the answer keeps the latest 10, oldest first
        act(harness, handoff_id, "UMANAGER", Action.reassign, new_owner="UANNA")
        act(harness, handoff_id, "UMANAGER", Action.reassign, new_owner="UBEN")
    later = slash(harness, f"show H-{handoff_id}", "UCARL")
    [events] = [b for b in later["blocks"] if b["type"] == "context" and "reassigned by" in json.dumps(b)]
    lines = events["elements"][0]["text"].splitlines()
    assert [line.split(" · ")[-1] for line in lines] == ["reassigned by <@UMANAGER>"] * 10
    assert "created by" not in shown(later)
    wait_outbox_idle(harness)
    nothing_here(harness)


def test_show_of_the_largest_handoff_stays_within_slacks_total_block_text(harness: SlackHarness) -> None:
    """The card plus its event lines: Slack refuses a message whose blocks hold more than ~12,000 characters of
    text in all (msg_blocks_too_long), so the card leaves room for the events."""
    long = "lorem ipsum dolor sit amet " * 400
    lists = {name: [long[:1000]] * 20 for name in ("missing_info", "risk_flags", "already_done", "constraints",
                                                     "decisions")}
    handoff_id = seed(harness, summary=long[:5000], draft=long[:10_000], definition_of_done=long[:500],
                      facts={f"fact {i}": long[:2000] for i in range(30)}, next_action=long[:500], **lists)
    automation = Actor.system("Workato recipe " + "w" * 65)  # 80 characters, the longest a token name shows
    for owner in ["UANNA", "UBEN"] * 5:
        harness.runtime.service.act(handoff_id, Request(Action.reassign, new_owner=owner), automation)
    answer = slash(harness, f"show H-{handoff_id}", "UCARL")
    assert text_length(answer["blocks"]) <= CARD_TEXT_BUDGET
    assert shown(answer).endswith(f"reassigned by {automation.id}")


# --- claim, assign, close, reopen ---------------------------------------------------------------------


def test_claim_assign_and_close_act_and_answer_privately(harness: SlackHarness) -> None:
    fast_pacing(harness)  # six writes to one channel: at Slack's pace the last card update comes ~7 s later
    handoff_id = seed(harness)
    ref = f"H-{handoff_id}"

    assert slash(harness, f"claim {ref}", "UCARL")["text"] == f"✋ You claimed {ref}."
    assert status(harness, handoff_id)[:2] == ("claimed", "UCARL")

    again = slash(harness, f"claim {ref}", "UBEN")
    assert again["text"] == f"{ref} is already claimed by <@UCARL>"
    assert status(harness, handoff_id)[:2] == ("claimed", "UCARL")

    assert slash(harness, f"assign {ref} <@UBEN|ben>", "UCARL")["text"] == f"🔀 {ref} now belongs to <@UBEN>."
    assert status(harness, handoff_id)[:2] == ("claimed", "UBEN")

    closed = slash(harness, f"close {ref} done Sent the R&amp;D quote,\nsee <https://acme.test/q>", "UBEN")
    assert closed["text"] == f"🏁 {ref} is closed as *done*."
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None
    assert (handoff.status, handoff.outcome, handoff.outcome_note) == (
        Status.closed, "done", "Sent the R&D quote,\nsee https://acme.test/q")  # kept as typed, line breaks too
    assert harness.events(handoff_id) == ["created", "claimed", "refused", "reassigned", "closed"]

    # the card in its own channel follows (updated, thread replies); the command's channel gets nothing
    card = harness.card_of(handoff_id)
    wait_until(lambda: any("done" in json.dumps(c.params.get("blocks")) for c in harness.slack.updates(
        card.response["ts"])), what="the card showing its outcome")
    wait_outbox_idle(harness)
    nothing_here(harness)
    assert harness.slack.ephemerals() == []


def test_close_without_an_outcome_opens_the_close_form(harness: SlackHarness) -> None:
    handoff_id = seed(harness, owner="UANNA")
    before = status(harness, handoff_id)

    answer = slash(harness, f"close H-{handoff_id}", "UANNA", trigger_id="trigger-close")

    assert answer["text"] == f"Opening the close form for H-{handoff_id}…"
    [opened] = harness.slack.wait_for("views.open", timeout=WAIT, trigger_id="trigger-close")
    view = opened.params["view"]
    assert view["callback_id"] == ids.CLOSE_MODAL
    assert str(handoff_id) in view["private_metadata"]
    assert status(harness, handoff_id) == before
    nothing_here(harness)


def test_a_manager_reopens_and_nobody_else_may(harness: SlackHarness) -> None:
    handoff_id = seed(harness, owner="UANNA")
    act(harness, handoff_id, "UANNA", Action.close, outcome="done")
    ref = f"H-{handoff_id}"
    before = state(harness)

    for user in ("UANNA", "ULEAD", "UZED"):  # the owner, an approver of other things, a stranger
        answer = slash(harness, f"reopen {ref}", user)
        assert answer["text"] == f"Only a manager can reopen {ref}."
    assert state(harness) == before
    assert refused(harness, handoff_id) == ["not_allowed"] * 3

    assert slash(harness, f"reopen {ref}", "UMANAGER")["text"] == f"🔁 {ref} is open again."
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None and (handoff.status, handoff.owner, handoff.outcome) == (Status.open, None, None)
    wait_outbox_idle(harness)
    nothing_here(harness)


def test_assign_refuses_an_app_a_deactivated_account_and_an_unknown_user(harness: SlackHarness) -> None:
    harness.slack.users.update({"UPOLLBOT": {"is_bot": True}, "UGONE": {"deleted": True}})
    handoff_id = seed(harness, owner="UANNA")
    before = state(harness)
    answers = [slash(harness, f"assign H-{handoff_id} <@{user}>", "UANNA")["text"]
               for user in ("UPOLLBOT", "UGONE", "USLACKBOT")]
    assert answers == ["<@UPOLLBOT> is an app, not a person; a handoff needs a person to own it.",
                       "<@UGONE> is deactivated; pick someone who can act on it.",
                       "Slackbot cannot own a handoff; pick a person."]
    harness.slack.fail_next("users.info", status=200, error="user_not_found")
    unknown = slash(harness, f"assign H-{handoff_id} <@UNOBODY>", "UANNA")["text"]
    assert unknown == "Slack knows no user UNOBODY in this workspace; pick someone from the list."
    assert state(harness) == before
    assert refused(harness, handoff_id) == ["not_a_person"] * 4
    person = slash(harness, f"assign H-{handoff_id} <@UBEN>", "UANNA")["text"]
    assert person == f"🔀 H-{handoff_id} now belongs to <@UBEN>."


def test_assign_goes_ahead_when_slack_is_too_slow_to_say_who_someone_is(harness: SlackHarness) -> None:
    """users.info is asked for at most a moment: a slash command (and a click) must be answered at once."""
    handoff_id = seed(harness, owner="UANNA")
    harness.slack.set_delay(3.0, "users.info")
    started = time.monotonic()
    answer = slash(harness, f"assign H-{handoff_id} <@UBEN>", "UANNA")["text"]
    assert time.monotonic() - started < 1.5
    assert answer == f"🔀 H-{handoff_id} now belongs to <@UBEN>."
    harness.slack.set_delay(0, "users.info")


def test_only_the_owner_an_approver_or_a_manager_may_close(harness: SlackHarness) -> None:
    by_owner, by_approver, by_manager = (seed(harness, owner="UANNA", approvers=["ULEAD"]) for _ in range(3))
    wait_outbox_idle(harness)
    before = state(harness)
    writes = len(slack_writes(harness))

    for text in (f"close H-{by_owner} done", f"close H-{by_owner} done the stranger's note"):
        answer = slash(harness, text, "UZED")
        assert answer["text"] == f"Only the owner, an approver or a manager can close H-{by_owner}."
    form = slash(harness, f"close H-{by_owner}", "UZED", trigger_id="trigger-stranger")
    assert form["text"] == f"Only the owner, an approver or a manager can close H-{by_owner}."
    taken = slash(harness, f"assign H-{by_owner} <@UZED|zed>", "UZED")  # nor hand it to themselves
    assert taken["text"] == f"Only the owner, an approver or a manager can reassign H-{by_owner}."
    barrier(harness, "UZED")
    wait_outbox_idle(harness)

    assert state(harness) == before
    assert refused(harness, by_owner) == ["not_allowed"] * 4
    assert modals_opened(harness, "trigger-stranger") == []
    assert [c.method for c in slack_writes(harness)[writes:]] == ["views.open"]  # the barrier's form only

    for handoff_id, user in ((by_owner, "UANNA"), (by_approver, "ULEAD"), (by_manager, "UMANAGER")):
        answer = slash(harness, f"close H-{handoff_id} no_action", user)
        assert answer["text"] == f"🏁 H-{handoff_id} is closed as *no_action*."
        assert status(harness, handoff_id)[:3] == ("closed", "UANNA", "no_action")
    wait_outbox_idle(harness)
    nothing_here(harness)


# --- stats --------------------------------------------------------------------------------------------


def test_stats_figures_match_a_seeded_set_for_each_period(harness: SlackHarness, clock: Clock) -> None:
    clock.set_offset(-timedelta(days=60))
    seed(harness)  # only in 90d
    clock.set_offset(-timedelta(days=20))
    seed(harness)  # in 30d and 90d
    clock.set_offset(timedelta(0))
    first, _, _ = seed(harness), seed(harness), seed(harness)
    clock.advance(timedelta(minutes=10))
    act(harness, first, "UANNA", Action.claim)
    clock.advance(timedelta(minutes=50))
    act(harness, first, "UANNA", Action.close, outcome="done")

    for text in ("stats", "stats 7d"):
        answer = slash(harness, text, "UMANAGER")
        assert answer["text"].startswith("Handoffs created in the last 7d: 3;")
        summary = shown(answer)
        assert "*Created* 3 · *claimed* 1 · *approved* 0 · *rejected* 0 · *closed* 1 (done 1)" in summary
        assert "*completion* 33%" in summary
        assert "*Time to claim* 10m (p90 10m)" in summary and "*to close* 1h (p90 1h)" in summary
        assert "<@UANNA>: 1 created, 1 closed, claim 10m (p90 10m)" in summary

    month = shown(slash(harness, "stats 30d", "UMANAGER"))
    assert "Handoffs created in the last 30d: 4;" in month and "*Created* 4 · *claimed* 1" in month
    quarter = shown(slash(harness, "stats 90d", "UMANAGER"))
    assert "Handoffs created in the last 90d: 5;" in quarter and "*Created* 5 · *claimed* 1" in quarter
    wait_outbox_idle(harness)
    nothing_here(harness)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_stats_that_take_longer_than_slack_waits_are_acked_at_once_and_follow_privately(
    harness: SlackHarness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over a busy period the figures took longer than Slack's 3 s (131,072 handoffs in 90 days: 6.9 s), and
    Slack showed a timeout instead of them. Past a moment the ack says they follow, and they do, privately."""
    working_out = commands.collect_stats

    def slowly(*args: Any, **kwargs: Any) -> Any:
        time.sleep(commands.STATS_WAIT_SECONDS + 1)
        return working_out(*args, **kwargs)

    monkeypatch.setattr(commands, "collect_stats", slowly)
    seed(harness)
    started = time.monotonic()
    answer = slash(harness, "stats 7d", "UMANAGER")
    assert time.monotonic() - started < commands.STATS_WAIT_SECONDS + 0.5
    assert answer["text"] == "Working out the figures for the last 7d: they follow here in a moment."
    [later] = harness.slack.wait_for(
        lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == "UMANAGER", timeout=WAIT, ok=True
    )
    assert later.channel == HERE and later.params["text"].startswith("Handoffs created in the last 7d: 1;")
    assert "*Created* 1" in json.dumps(later.params["blocks"])


# --- bad input ----------------------------------------------------------------------------------------


def test_bad_input_says_what_is_wrong_with_the_usage_and_changes_nothing(harness: SlackHarness) -> None:
    task = seed(harness, owner="UANNA")
    hot = seed(harness, body=lead(urgency="high", owner="UANNA"))
    wait_outbox_idle(harness)
    before = state(harness)
    writes = len(slack_writes(harness))

    cases = [
        ("frobnicate H-1", "`frobnicate` is not a /handoff command"),
        ("claim", "`claim` needs a handoff reference such as H-42"),
        ("close", "`close` needs a handoff reference such as H-42"),
        ("assign", "`assign` needs a handoff reference such as H-42"),
        ("show H-999", "H-999 does not exist"),
        ("claim H-999", "H-999 does not exist"),
        ("close H-999 done", "H-999 does not exist"),
        ("close H-999", "H-999 does not exist"),
        ("reopen H-999", "H-999 does not exist"),
        ("assign H-999 <@UBEN>", "H-999 does not exist"),
        ("show H-abc", "`H-abc` is not a handoff reference"),
        ("claim H-abc", "`H-abc` is not a handoff reference"),
        (f"close H-{task} won", "'won' is not an outcome of 'task': use one of done, no_action, duplicate"),
        (f"close H-{hot} done great", "'done' is not an outcome of 'lead': use one of won, lost, nurture"),
        (f"assign H-{task}", "`assign` needs the person"),
        (f"assign H-{task} @bob", "`@bob` is not a user"),
        (f"assign H-{task} bob", "`bob` is not a user"),
        (f"assign H-{task} <#C1>", "`<#C1>` is not a user"),
        (f"assign H-{task} <#CSALES|sales>", "`<#CSALES|sales>` is not a user"),
        ("stalled @bob", "`@bob` is not a user"),
        ("stalled <#C1>", "`<#C1>` is not a channel"),
        ("stalled gadget", "`gadget` is neither a @user, a #channel nor a kind"),
        ("stats 8d", "`8d` is not a period"),
        ("stats week", "`week` is not a period"),
        ("mine all", "unexpected `all`"),
        (f"close H-{task} done " + "y" * 2500, "The note is too long: keep it under 2,000 characters."),
    ]
    for text, problem in cases:
        answer = slash(harness, text, "UANNA", trigger_id=f"bad-{text}")
        assert problem in answer["text"], (text, answer["text"])
        assert USAGE in answer["text"], (text, answer["text"])
        assert not answer.get("blocks"), text

    barrier(harness, "UANNA")
    wait_outbox_idle(harness)
    assert state(harness) == before
    assert refused(harness, task) == ["bad_outcome", "bad_argument"] and refused(harness, hot) == ["bad_outcome"]
    assert [c.method for c in slack_writes(harness)[writes:]] == ["views.open"]  # the barrier's form only
    assert status(harness, task)[:3] == ("claimed", "UANNA", None)


def test_every_answer_is_plain_http_200_even_for_garbage(harness: SlackHarness) -> None:
    for text in ("<!channel>", "show <@UANNA>", "close H-1 " + "x" * 3000, "stats 7d\n30d", "\u200b"):
        answer = slash(harness, text, "UANNA")
        assert USAGE in answer["text"]
    response = httpx.get(f"{harness.server.url}/healthz", timeout=5)
    assert response.status_code == 200
    nothing_here(harness)
