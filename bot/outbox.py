"""The outbox sender: delivers Slack writes written by the domain, paced, retried, never twice.

One dispatcher thread leases due rows and hands them to a small worker pool; each channel has
at most one write in flight (so its messages keep their order) and a token bucket (about one
message a second, short bursts). 429 pauses the channel for Retry-After; 5xx and timeouts back
off exponentially for about a day; permanent errors end the row as failed, in the log.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.blocks.card import card_message, thread_reply_text
from bot.blocks.home import home_view
from bot.blocks.nudges import escalation_blocks, nudge_blocks
from bot.blocks.replies import outcome_reply_text, source_reply_text
from bot.dispatcher import Dispatcher
from bot.posted_messages import card_metadata, find_posted, message_metadata, valid_ts
from bot.retry_after import retry_after_seconds
from bot.usergroups import UsergroupMembers
from handoffs.config import HandoffConfig
from handoffs.effects import (
    DIRECT_MESSAGE,
    EPHEMERAL,
    ESCALATION,
    MESSAGE_REPLY,
    NUDGE,
    OUTCOME_REPLY,
    POST_CARD,
    POST_MESSAGE,
    PUBLISH_HOME,
    REACTION,
    SOURCE_REPLY,
    THREAD_REPLY,
    UPDATE_CARD,
)
from handoffs.model import USER_ID_PATTERN, Handoff, ref_of
from handoffs.nudges import lateness, nudge_recipients
from handoffs.webhooks import WEBHOOK
from storage.board_queries import build_board, configured_usergroups
from storage.outbox import COALESCED, FAILED, PENDING, SENT, OutboxStore
from storage.repository import Repository
from storage.tables import OutboxRow

log = logging.getLogger("handoff_bot.outbox")

# > the Slack client's timeout: a call begun with the lease held ends before another sender may take the row. A row's
# handling can make several calls (a retry looks through the channel's history first), so the lease is renewed,
# and checked to be still this sender's, before each page of that look and before the post (_keep_lease).
LEASE_SECONDS = 30.0
LEASE_MARGIN_SECONDS = 1.0  # a call is left to run on the lease it holds only if it ends this long before the lease
GIVE_UP_AFTER = timedelta(days=1)
MAX_BACKOFF_SECONDS = 300.0
MAX_RETRY_AFTER_SECONDS = 900.0  # the longest a `Retry-After` holds a row (and a rate limit its channel) back
WAKE_COALESCE_SECONDS = 0.02
MIN_FULL_SCAN_GAP = 0.1  # under a stream of writes, full scans at most ten times a second
# Slack's answers that the same request gets again on every retry, until a person changes something: the row
# fails at once, visibly, instead of backing off for a day.
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed", "account_inactive",
    "token_revoked", "token_expired", "no_permission", "missing_scope", "invalid_blocks", "msg_too_long",
    "msg_blocks_too_long",
    "user_not_found", "user_not_in_channel", "cant_update_message", "message_not_found", "restricted_action",
    "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel", "restricted_action_thread_locked",
    "team_access_not_granted", "ekm_access_denied", "org_login_required", "posting_to_general_channel_denied",
    "invalid_arguments", "invalid_arg_name", "invalid_charset", "invalid_form_data", "invalid_json",
    "json_not_object", "no_text", "too_many_attachments", "metadata_too_large", "invalid_metadata_format",
    "invalid_metadata_schema", "invalid_blocks_format", "attachment_payload_limit_exceeded", "too_many_contact_cards",
    "metadata_must_be_sent_from_app", "cannot_reply_to_message", "edit_window_closed", "messages_tab_disabled",
    "cannot_dm_bot", "user_disabled", "is_inactive", "not_allowed_token_type", "access_denied", "invalid_post_type",
})
# A card update or App Home sent while another process sends a newer one is rendered again at most this often
# (then the changes' own rows follow).
MAX_RENDERS = 3
_AFTER_IT = timedelta(milliseconds=50)  # a reply held behind an earlier one is due just after it
# A private notice or a source-thread reply that Slack refuses with one of these goes to the app's DM instead.
NOT_IN_CONVERSATION = frozenset({"channel_not_found", "not_in_channel", "user_not_in_channel"})
# A rate limit can also come as `{"ok": false, "error": "ratelimited"}` with status 200: waited out like a 429.
RATE_LIMITED_ERRORS = frozenset({"ratelimited", "rate_limited"})


class Defer(Exception):
    """Not yet: try again at `at` without counting an attempt (e.g. the card is not posted yet)."""

    def __init__(self, at: datetime) -> None:
        self.at = at


class LeaseLost(Exception):
    """The row's lease ran out while it was being handled, and another sender took it (or finished it)."""


class GiveUp(Exception):
    """This row can never succeed."""


@dataclass
class ChannelPacer:
    """A token bucket per lane (channel): `rate` writes a second, up to `burst` at once."""

    rate: float = 0.95  # "about one a second", with room for the jitter between our clock and Slack's
    burst: float = 1.0  # Slack allows "short bursts" without saying how long: sending evenly never hits a 429
    _tokens: dict[str, float] = field(default_factory=dict)
    _stamp: dict[str, float] = field(default_factory=dict)
    _paused_until: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _refill(self, lane: str, now: float) -> float:
        tokens = min(self.burst, self._tokens.get(lane, self.burst) + (now - self._stamp.get(lane, now)) * self.rate)
        self._tokens[lane], self._stamp[lane] = tokens, now
        return tokens

    def ready(self, lane: str, now: float) -> bool:
        with self._lock:
            return self._paused_until.get(lane, 0.0) <= now and self._refill(lane, now) >= 1.0

    def take(self, lane: str, now: float) -> None:
        with self._lock:
            self._tokens[lane] = self._refill(lane, now) - 1.0

    def give_back(self, lane: str) -> None:
        """A write taken for a row that sent nothing (it waits for its card): the lane may use it now."""
        with self._lock:
            self._tokens[lane] = min(self.burst, self._tokens.get(lane, self.burst) + 1.0)

    def pause(self, lane: str, seconds: float, now: float) -> None:
        """Nothing on `lane` for `seconds` (Retry-After), then one write at once and the usual pace after it."""
        with self._lock:
            until = max(self._paused_until.get(lane, 0.0), now + seconds)
            self._paused_until[lane] = until
            self._tokens[lane] = 1.0  # counted from `until`: the refill before then is negative, the pause rules
            self._stamp[lane] = until

    def blocked(self, now: float) -> dict[str, float]:
        """Lanes that may not write right now (paused, or out of tokens), with the seconds until they may."""
        with self._lock:
            waits = {lane: self._wait(lane, now) for lane in list(self._tokens)}
        return {lane: wait for lane, wait in waits.items() if wait > 0}

    def _wait(self, lane: str, now: float) -> float:
        paused = self._paused_until.get(lane, 0.0) - now
        missing = (1.0 - self._refill(lane, now)) / self.rate
        return max(paused, missing, 0.0)

    def wait_hint(self, lane: str, now: float) -> float:
        with self._lock:
            return self._wait(lane, now)


UNPACED_KINDS = frozenset({EPHEMERAL, PUBLISH_HOME})  # views.publish writes to no channel


def is_paced(row: OutboxRow) -> bool:
    return row.kind not in UNPACED_KINDS


class OutboxSender(Dispatcher):
    def __init__(
        self,
        store: OutboxStore,
        repo: Repository,
        client: WebClient,
        config: HandoffConfig,
        clock: Callable[[], datetime],
        *,
        workers: int = 4,
        poll_seconds: float = 0.5,
        pacer: ChannelPacer | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds  # how long a row stays taken when its sender dies mid-send
        self.repo = repo
        self.client = client
        self.config = config
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.pacer = pacer or ChannelPacer()
        super().__init__(workers=workers, name="outbox")
        self._workers = workers
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        self._leased_until: dict[int, datetime] = {}  # row id -> the end of this sender's lease of it
        self._newest_seen = 0  # the newest outbox id any dispatch has looked at
        self.usergroups = UsergroupMembers(client)

    def _run(self) -> None:
        """Full scans on a timer (retries, paced channels coming free) and after a wake-up (a write, or a finished
        send that frees its channel for its next row), at most ten a second; within that gap, a wake-up looks
        at once only at the private notices and home tabs written since: writes wake the dispatcher many times
        a second, and those rows should not wait.
        """
        next_full = last_full = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_full:
                last_full = time.monotonic()
                next_full = last_full + self._safely(self.dispatch_due)
            if self._wait_for_work(max(0.0, next_full - time.monotonic()), coalesce=WAKE_COALESCE_SECONDS):
                if time.monotonic() - last_full >= MIN_FULL_SCAN_GAP:
                    next_full = 0.0  # a full scan now
                else:
                    self._safely(lambda: self.dispatch_due(only_new=True))
                    # and a full one once the gap is over: a finished send frees its channel for its next row
                    next_full = min(next_full, last_full + MIN_FULL_SCAN_GAP)

    def _safely(self, dispatch: Callable[[], float]) -> float:
        try:
            return dispatch()
        except Exception:  # the dispatcher must outlive a database hiccup
            log.exception("outbox dispatch failed; retrying shortly")
            return self.poll_seconds

    # --- dispatch -------------------------------------------------------------------------------

    def _in_flight_lanes(self) -> set[str]:
        with self._in_flight_lock:
            return set(self._in_flight)

    def dispatch_due(self, *, only_new: bool = False) -> float:
        """Lease and hand out what is due now; return how long the dispatcher may sleep.

        `only_new` (a wake-up) looks only at the private notices and home tabs written since the last look: a
        channel's rows go in order, so they wait for the full scans. Each look loads no more unpaced rows than
        there are free sending slots: under a stream of refusals, hundreds of notices can be due at once.
        """
        room = self._workers * 2 - len(self._in_flight)
        if room <= 0:
            return 0.05  # every sending thread has work: look again soon
        now = self.clock()
        now_mono = time.monotonic()
        # Rows of lanes that cannot write now stay in the database, so one channel's backlog never hides
        # other channels' rows from the query; the dispatcher wakes when the first of those lanes may write.
        blocked = self.pacer.blocked(now_mono)
        busy = self._in_flight_lanes() | set(blocked)
        newest = self.store.newest_id()
        if only_new and newest <= self._newest_seen:
            return self.poll_seconds
        after = self._newest_seen if only_new else None
        self._newest_seen = newest
        # private notices and home tabs first: they never wait behind a long backlog of one channel
        rows = self.store.due(now, limit=room, after_id=after, kinds=UNPACED_KINDS)
        if not only_new:
            rows += self.store.first_due_per_target(  # bot/webhooks.py sends the webhooks
                now, limit=200, skip_targets=frozenset(busy), exclude_kinds=UNPACED_KINDS | {WEBHOOK})
        sleep = min([self.poll_seconds, *blocked.values()])
        chosen: list[tuple[OutboxRow, str]] = []
        for row in rows:
            lane = self._lane(row)
            if lane in busy:
                continue
            if is_paced(row) and not self.pacer.ready(lane, now_mono):
                busy.add(lane)
                sleep = min(sleep, max(0.01, self.pacer.wait_hint(lane, now_mono)))
                continue
            if len(chosen) >= room:
                sleep = 0.05
                break
            busy.add(lane)
            chosen.append((row, lane))
        self._hand_out(chosen, now, now_mono)
        return sleep

    def _hand_out(self, chosen: list[tuple[OutboxRow, str]], now: datetime, now_mono: float) -> None:
        """Lease the chosen rows in one write, and send those this sender got (another may have taken some)."""
        until = now + timedelta(seconds=self.lease_seconds)
        leased = self.store.lease_many([row for row, _ in chosen], now=now, until=until)
        for row, lane in chosen:
            if row.id not in leased:
                continue
            self._leased_until[row.id] = until
            if is_paced(row):
                self.pacer.take(lane, now_mono)
            with self._in_flight_lock:
                self._in_flight.add(lane)
            self._pool.submit(self._deliver, row, lane)

    @staticmethod
    def _lane(row: OutboxRow) -> str:
        target = row.target or ""
        if row.kind == PUBLISH_HOME:  # one publish per person at a time, never paced as a channel
            return f"{PUBLISH_HOME}:{target}"
        return target if is_paced(row) else f"{row.kind}:{row.id}"

    def _deliver(self, row: OutboxRow, lane: str) -> None:
        try:
            self._deliver_or_raise(row, lane)
        except Exception:  # in the handling of an answer: logged, not lost in the pool; the lease brings it back
            log.exception("outbox row %s (%s): its answer could not be handled; retried after its lease", row.id,
                          row.kind)

    def _deliver_or_raise(self, row: OutboxRow, lane: str) -> None:
        assert row.id is not None
        try:
            self._send(row)
        except Defer as defer:
            if is_paced(row):  # else a row waiting for its card, first in its channel, takes all of its sends
                self.pacer.give_back(lane)
            self.store.retry(row.id, at=defer.at, error=None, refund_attempt=True)
        except GiveUp as reason:
            self._fail(row, str(reason))
        except LeaseLost:
            log.warning("outbox row %s (%s): its handling outlived its lease and another sender took it; left to "
                        "that sender", row.id, row.kind)
        except SlackApiError as error:
            self._api_error(row, lane, error)
        except (SlackClientError, OSError, TimeoutError) as error:
            self._back_off(row, f"{type(error).__name__}: {error}")
        except Exception as error:  # a bug must not wedge the outbox: keep the row, back off, log loudly
            log.exception("outbox row %s (%s) raised", row.id, row.kind)
            self._back_off(row, f"{type(error).__name__}: {error}")
        finally:
            self._leased_until.pop(row.id, None)
            with self._in_flight_lock:
                self._in_flight.discard(lane)
            self._wake.set()

    def _api_error(self, row: OutboxRow, lane: str, error: SlackApiError) -> None:
        assert row.id is not None
        status = error.response.status_code
        code = str(error.response.get("error") or f"http_{status}")
        retry_after = _retry_after(error.response.headers, self.clock())
        if status == 429 or code in RATE_LIMITED_ERRORS:
            wait = max(1.0, retry_after or 0.0)
            self.pacer.pause(lane, wait, time.monotonic())
            self.store.retry(row.id, at=self.clock() + timedelta(seconds=wait), error="ratelimited",
                             refund_attempt=True)
        elif code in PERMANENT_ERRORS:
            self._fail(row, code)
        else:  # a 503 may say when to come back, too
            self._back_off(row, code, at_least=retry_after or 0.0)

    def _back_off(self, row: OutboxRow, error: str, *, at_least: float = 0.0) -> None:
        assert row.id is not None
        now = self.clock()
        if now - row.created_at > GIVE_UP_AFTER:
            self._fail(row, f"gave up after {row.attempts + 1} attempts: {error}")
            return
        delay = max(at_least, min(MAX_BACKOFF_SECONDS, 2 ** min(row.attempts, 12)) * random.uniform(0.8, 1.2))
        log.warning("outbox row %s (%s) failed: %s; retrying in %.0fs", row.id, row.kind, error, delay)
        self.store.retry(row.id, at=now + timedelta(seconds=delay), error=error)

    def _fail(self, row: OutboxRow, error: str) -> None:
        assert row.id is not None
        log.error("outbox row %s (%s to %s) failed for good: %s", row.id, row.kind, row.target, error)
        self.store.finish(row.id, state=FAILED, now=self.clock(), error=error)

    # --- one write each -------------------------------------------------------------------------

    def _send(self, row: OutboxRow) -> None:
        senders = {
            POST_CARD: self._post_card,
            UPDATE_CARD: self._update_card,
            THREAD_REPLY: self._thread_reply,
            EPHEMERAL: self._ephemeral,
            SOURCE_REPLY: self._source_reply,
            MESSAGE_REPLY: self._message_reply,
            OUTCOME_REPLY: self._outcome_reply,
            REACTION: self._reaction,
            PUBLISH_HOME: self._publish_home,
            DIRECT_MESSAGE: self._post_message,  # to a user id: the app's DM
            POST_MESSAGE: self._post_message,
            NUDGE: self._nudge,
            ESCALATION: self._escalation,
        }
        sender = senders.get(row.kind)
        if sender is None:
            raise GiveUp(f"unknown outbox kind {row.kind!r}")
        sender(row)

    def _handoff(self, row: OutboxRow) -> Handoff:
        handoff = self.repo.get(row.handoff_id) if row.handoff_id is not None else None
        if handoff is None:
            raise GiveUp("the handoff does not exist")
        return handoff

    def _post_card(self, row: OutboxRow) -> None:
        assert row.id is not None
        handoff = self._handoff(row)
        if handoff.card_ts:  # posted already (by an earlier row); never post a card twice
            self.store.finish(row.id, state=COALESCED, now=self.clock())
            return
        if row.attempts > 0 and (ts := self._posted_before(row, handoff)) is not None:
            log.info("card of %s was posted by an earlier try (%s): recorded, not posted again", handoff.ref, ts)
            self.store.record_card(row.id, handoff.id, ts=ts, now=self.clock())
            return
        message = card_message(handoff, self.config, now=self.clock())
        self._keep_lease(row)
        response = self.client.chat_postMessage(
            channel=row.target or "", unfurl_links=False, unfurl_media=False, metadata=card_metadata(handoff.id),
            **message,
        )
        ts = valid_ts(response.get("ts"))
        if ts is None:
            # An answer that names no message: as after a timeout, the next try looks for the card first.
            self._back_off(row, f"chat.postMessage answered ok without a message ts ({response.get('ts')!r})")
            return
        self.store.record_card(row.id, handoff.id, ts=ts, now=self.clock())

    def _posted_before(self, row: OutboxRow, handoff: Handoff) -> str | None:
        """After a try whose outcome is unknown (a timeout, a 5xx, a sender that died): the card it may have
        posted."""
        return find_posted(self.client, row.target or "", card_metadata(handoff.id), since=row.created_at,
                           before_each_page=lambda: self._keep_lease(row))

    def _update_card(self, row: OutboxRow) -> None:
        assert row.id is not None
        # Which pending updates this send stands for is read before the handoff: a change committed after
        # that read is either in the state rendered or left pending for a send of its own. Read the other way
        # round, a change committed between the two reads was marked sent and never shown.
        covered = self._latest_update_id(row)
        handoff = self._handoff(row)
        if not handoff.card_ts:
            self._await_card(row, handoff, coalesce=True)
            return
        for _ in range(MAX_RENDERS):
            message = card_message(handoff, self.config, now=self.clock())
            self.client.chat_update(channel=handoff.channel or row.target or "", ts=handoff.card_ts, **message)
            # Another process may have sent a newer state that landed before this one: then render again.
            if (latest := self._handoff(row)).version == handoff.version:
                break
            handoff = latest
        self.store.coalesce_updates(handoff.id, up_to_id=covered, now=self.clock())
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _latest_update_id(self, row: OutboxRow) -> int:
        assert row.id is not None
        if row.handoff_id is None:
            return row.id
        return max(self.store.latest_pending_id(row.handoff_id, UPDATE_CARD) or row.id, row.id)

    def _thread_reply(self, row: OutboxRow) -> None:
        assert row.id is not None
        handoff = self._handoff(row)
        if not handoff.card_ts:
            self._await_card(row, handoff, coalesce=False)
            return
        if (earlier := self.store.earlier_pending_due_at(row)) is not None:  # a reply before it is backing off
            raise Defer(max(earlier, self.clock()) + _AFTER_IT)
        payload: dict[str, Any] = row.payload or {}
        text = thread_reply_text(
            str(payload.get("event", "")), str(payload.get("actor", "")), dict(payload.get("data") or {}), handoff,
            actor_is_system=bool(payload.get("actor_is_system")),
        )
        self._post_once(row, handoff.channel or row.target or "", thread_ts=handoff.card_ts, text=text)
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _await_card(self, row: OutboxRow, handoff: Handoff, *, coalesce: bool) -> None:
        assert row.id is not None
        state = self.store.card_state(handoff.id)
        if state == PENDING:
            if coalesce:  # the card post renders the state at send time, which includes this change
                self.store.finish(row.id, state=COALESCED, now=self.clock())
                return
            raise Defer(self.clock() + timedelta(seconds=1))
        if state in (SENT, COALESCED):  # posted between our two reads: read the handoff again now
            raise Defer(self.clock())
        raise GiveUp("the card was never posted")

    def _ephemeral(self, row: OutboxRow) -> None:
        """A private notice in the conversation of the click or command; in the app's DM when the bot is not in
        that conversation (a DM between people, a channel it was never invited to), where Slack refuses it."""
        assert row.id is not None
        payload = row.payload or {}
        user, text, blocks = str(payload.get("user", "")), str(payload.get("text", "")), payload.get("blocks") or None
        try:
            self.client.chat_postEphemeral(channel=row.target or "", user=user, text=text, blocks=blocks)
        except SlackApiError as error:
            self._in_dm_instead(row, error, lambda: user, text=text, blocks=blocks)
            return
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _in_dm_instead(
        self, row: OutboxRow, error: SlackApiError, recipient: Callable[[], str], **message: Any
    ) -> None:
        """Where Slack refused the conversation because the bot is not in it: `message` to the person `recipient`
        names, in the app's DM, and the row sent, noting where. Any other refusal is raised as it came."""
        assert row.id is not None
        code = str(error.response.get("error") or "")
        if code not in NOT_IN_CONVERSATION or not re.fullmatch(USER_ID_PATTERN, person := recipient()):
            raise error
        self._post_once(row, person, **message)
        log.info("outbox row %s (%s): %s in %s, sent to %s in the app's DM instead", row.id, row.kind, code,
                 row.target, person)
        self.store.finish(row.id, state=SENT, now=self.clock(), error=f"{code}: sent in the app's DM")

    def _source_reply(self, row: OutboxRow) -> None:
        """In the source message's thread: the handoff's ref and a link to its card, once the card is posted."""
        assert row.id is not None
        if row.handoff_id is not None and self.store.card_state(row.handoff_id) == PENDING:
            raise Defer(self.clock() + timedelta(seconds=1))
        handoff = self._handoff(row)  # read after the card's state: a sent card has its ts stored by now
        permalink = None
        if handoff.card_ts and handoff.channel:
            response = self.client.chat_getPermalink(channel=handoff.channel, message_ts=handoff.card_ts)
            permalink = str(response.get("permalink") or "") or None
        payload: dict[str, Any] = row.payload or {}
        text = source_reply_text(handoff, permalink, note=str(payload.get("note", "created")))
        self._reply_to_source(row, handoff, text)

    def _outcome_reply(self, row: OutboxRow) -> None:
        """In the source message's thread: how the handoff ended and who decided, as the event recorded it.

        After the "created" reply, which waits for the card: the thread then reads in order.
        """
        assert row.id is not None
        if row.handoff_id is None:
            raise GiveUp("an outcome reply needs its handoff")
        created_reply = self.store.latest_pending_id(row.handoff_id, SOURCE_REPLY)
        if created_reply is not None and created_reply < row.id:
            raise Defer(self.clock() + timedelta(seconds=1))
        payload: dict[str, Any] = row.payload or {}
        text = outcome_reply_text(
            ref_of(row.handoff_id), str(payload.get("event", "")), str(payload.get("actor", "")),
            dict(payload.get("data") or {}), actor_is_system=bool(payload.get("actor_is_system")),
        )
        self._reply_to_source(row, self._handoff(row), text)

    def _reply_to_source(self, row: OutboxRow, handoff: Handoff, text: str) -> None:
        """In the source message's thread; where the bot may not post (a channel it is not in, where someone used
        the message shortcut), to the person who made the handoff, in the app's DM: it was failed for good."""
        assert row.id is not None
        try:
            self._post_once(row, row.target or "", thread_ts=str((row.payload or {}).get("thread_ts", "")), text=text)
        except SlackApiError as error:
            self._in_dm_instead(row, error, lambda: self._submitter(handoff), text=text)
            return
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _submitter(self, handoff: Handoff) -> str:
        """Who made the handoff: the actor of its `created` event (handoffs.submitted_by, which the domain's
        Handoff does not carry); read only when a source reply has to go by DM."""
        events = self.repo.events(handoff.id)
        return events[0].actor if events else ""

    def _message_reply(self, row: OutboxRow) -> None:
        assert row.id is not None
        payload = row.payload or {}
        self._post_once(row, row.target or "", thread_ts=str(payload.get("thread_ts", "")),
                        text=str(payload.get("text", "")))
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _reaction(self, row: OutboxRow) -> None:
        assert row.id is not None
        payload = row.payload or {}
        try:
            self.client.reactions_add(
                channel=row.target or "", timestamp=str(payload.get("ts", "")), name=str(payload.get("name", ""))
            )
        except SlackApiError as error:
            if error.response.get("error") != "already_reacted":
                raise
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _publish_home(self, row: OutboxRow) -> None:
        """Build the person's App Home now and publish it; earlier pending publishes for them are covered."""
        assert row.id is not None
        user = row.target or ""
        up_to = max(row.id, self.store.latest_pending_for(PUBLISH_HOME, user) or row.id)
        for _ in range(MAX_RENDERS):
            now = self.clock()
            groups = self.usergroups.groups_of(user, configured_usergroups(self.config))
            board = build_board(self.repo, user, now=now, config=self.config, groups=groups)
            self.client.views_publish(user_id=user, view=home_view(board, self.config, now=now,
                                                                    is_manager=board.is_manager))
            # Another process may have published a newer board that landed before this one: publish again.
            if (newer := self.store.newest_done_after(PUBLISH_HOME, user, after_id=up_to)) is None:
                break
            up_to = max(newer, self.store.latest_pending_for(PUBLISH_HOME, user) or newer)
        self.store.coalesce_target(PUBLISH_HOME, user, up_to_id=up_to, now=self.clock())
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _post_message(self, row: OutboxRow) -> None:
        assert row.id is not None
        payload = row.payload or {}
        self._post_once(row, row.target or "", text=str(payload.get("text", "")), blocks=payload.get("blocks") or None)
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _post_once(self, row: OutboxRow, channel: str, *, thread_ts: str | None = None, **message: Any) -> None:
        """Post `row`'s message in `channel` (a user id: the app's DM), its links not unfurled; unless a try of
        the row whose answer was lost posted it already, as far as Slack lets us look."""
        assert row.id is not None
        metadata = message_metadata(row.id)
        if row.attempts > 0 and channel:
            ts = find_posted(self.client, channel, metadata, since=row.created_at, thread_ts=thread_ts,
                             before_each_page=lambda: self._keep_lease(row))
            if ts is not None:
                log.info("outbox row %s (%s) was posted by an earlier try (%s): not posted again", row.id, row.kind,
                         ts)
                return
        self._keep_lease(row)
        self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, metadata=metadata, unfurl_links=False,
                                     unfurl_media=False, **message)

    def _keep_lease(self, row: OutboxRow) -> None:
        """Before each page of a look and before a post: renew this sender's lease of `row` when it could end during
        the Slack call about to be made, or raise LeaseLost when it ran out all the same (a stalled process) and
        another sender may be posting the same message. A row not leased by a dispatch has nothing to keep."""
        assert row.id is not None
        held_until = self._leased_until.get(row.id)
        now = self.clock()
        # A call that ends before the lease does needs no write (the usual first try: the post right after the lease)
        if held_until is None or now + timedelta(seconds=self.client.timeout + LEASE_MARGIN_SECONDS) < held_until:
            return
        until = now + timedelta(seconds=self.lease_seconds)
        if not self.store.hold(row.id, held_until=held_until, until=until):
            raise LeaseLost(row.id)
        self._leased_until[row.id] = until

    def _nudge(self, row: OutboxRow) -> None:
        """A reminder, by DM or in the card's thread; dropped when the handoff was finished since, or no longer
        waits for what or whom it reminds (claimed since a reminder of the queue, handed on since one by DM)."""
        assert row.id is not None
        handoff = self._handoff(row)
        payload: dict[str, Any] = row.payload or {}
        if handoff.is_terminal:
            self.store.finish(row.id, state=COALESCED, now=self.clock(), error="finished before the reminder went")
            return
        if (stale := _stale_reminder(handoff, payload, row.target or "")) is not None:
            self.store.finish(row.id, state=COALESCED, now=self.clock(), error=f"{stale} before the reminder went")
            return
        thread_ts = None
        if payload.get("in_thread"):
            if not handoff.card_ts:
                self._await_card(row, handoff, coalesce=False)
                return
            thread_ts = handoff.card_ts
        message = nudge_blocks(handoff, payload, self.clock(), self._permalink(handoff))
        self._post_once(row, row.target or "", thread_ts=thread_ts, **message)
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _escalation(self, row: OutboxRow) -> None:
        assert row.id is not None
        handoff = self._handoff(row)
        if handoff.is_terminal:
            self.store.finish(row.id, state=COALESCED, now=self.clock(), error="finished before the escalation went")
            return
        if (ended := _lateness_ended(handoff, row.payload or {})) is not None:
            self.store.finish(row.id, state=COALESCED, now=self.clock(), error=f"{ended} before the escalation went")
            return
        message = escalation_blocks(handoff, row.payload or {}, self.clock(), self._permalink(handoff))
        self._post_once(row, row.target or "", **message)
        self.store.finish(row.id, state=SENT, now=self.clock())

    def _permalink(self, handoff: Handoff) -> str | None:
        if not (handoff.card_ts and handoff.channel):
            return None
        try:
            response = self.client.chat_getPermalink(channel=handoff.channel, message_ts=handoff.card_ts)
        except SlackApiError:
            return None  # the message goes without its "Open card" button rather than not at all
        return str(response.get("permalink") or "") or None


def _lateness_ended(handoff: Handoff, payload: dict[str, Any]) -> str | None:
    """How the lateness a reminder or an escalation was written for has ended since, if it has (claimed since
    "nobody has claimed it", approved since "waiting for approval"); None while the handoff is late for it."""
    reason = payload.get("reason")
    now_late = lateness(handoff)
    if reason is None or (now_late is not None and now_late.value == reason):
        return None
    return f"no longer {reason} ({handoff.status.value})"


def _stale_reminder(handoff: Handoff, payload: dict[str, Any], target: str) -> str | None:
    """Why a reminder the sweep wrote no longer fits the handoff, if it does not: its lateness has ended, or the
    handoff no longer waits for whom it reminds (the queue, now someone owns it; a person it was taken from)."""
    if (ended := _lateness_ended(handoff, payload)) is not None:
        return ended
    waits_for = nudge_recipients(handoff)
    if payload.get("in_thread"):
        return f"owned by {handoff.owner}" if waits_for else None
    return None if target in waits_for else f"no longer waiting for {target}"


def _retry_after(headers: Any, now: datetime) -> float | None:
    """The answer's `Retry-After` in seconds, at most MAX_RETRY_AFTER_SECONDS (a day-long or absurd value would
    hold its channel back that long); None when there is none or it is not a number of seconds nor a date."""
    raw = None
    if headers:
        for key, value in dict(headers).items():
            if key.lower() == "retry-after":
                raw = value[0] if isinstance(value, list) else value
    return retry_after_seconds(str(raw) if raw is not None else None, now, cap=MAX_RETRY_AFTER_SECONDS)
