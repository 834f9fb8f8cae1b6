"""`/handoff`: every answer is private and goes back in the ack itself (no Web API call, no waiting).

Subcommands that need a form (`new`, `close` without an outcome) ack first and open the modal in a
lazy listener while the trigger is fresh. `stats` over a busy period can take longer than Slack waits for
the ack: past STATS_WAIT_SECONDS the ack says the figures follow, and they come as a private notice.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillWorking
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import ids
from bot.blocks.card import CARD_TEXT_BUDGET, card_blocks
from bot.blocks.lists import PAGE_SIZE, list_blocks
from bot.blocks.modals import close_modal
from bot.blocks.new_modal import new_handoff_modal
from bot.blocks.stats import stats_message
from bot.runtime import Runtime
from bot.slack.command_parser import (
    USAGE,
    Assign,
    Claim,
    Close,
    Command,
    CommandError,
    Help,
    Mine,
    New,
    Reopen,
    Show,
    Stalled,
    Stats,
    parse_command,
)
from bot.slack.listeners.shortcuts import message_plain_text, tell_the_form_did_not_open
from bot.text import ELLIPSIS, mention, mrkdwn_safe
from handoffs.effects import direct_message, private_notice
from handoffs.lifecycle import Action, Actor, Refused, Request, check_allowed, closing_outcomes, is_manager
from handoffs.metrics import collect_stats, parse_period
from handoffs.model import Event, Handoff
from handoffs.service import NotFound
from storage.board_queries import COUNT_CAP, BoardList, mine_page
from storage.metrics_queries import MetricsQueries

log = logging.getLogger("handoff_bot.slack.commands")

HELP = (
    "*handoff-bot* turns AI output and picked messages into owned, tracked handoffs.\n"
    "• `/handoff new [title]` — open the form for a new handoff\n"
    "• `/handoff mine` — what you own and what waits for your approval\n"
    "• `/handoff stalled [@user] [#channel] [kind]` — what is late, most overdue first\n"
    "• `/handoff show H-42` — one handoff with its latest events\n"
    "• `/handoff claim H-42`, `assign H-42 @user`, `close H-42 <outcome> [note]`, `reopen H-42`\n"
    "• `/handoff stats [7d|30d|90d]` — the funnel: created, claimed, decided, closed, and how fast"
)
SHOWN_EVENTS = 10
FORM_TOO_SLOW = "Slack did not open the form in time; please run the command again."
MAX_PAGE_OFFSET = 1_000_000  # far past any list a person pages through; keeps the query's OFFSET in range
EVENTS_TEXT_LIMIT = 3000  # a context element's text
STATS_WAIT_SECONDS = 1.5  # then the ack goes without the figures: Slack gives up on it after 3 s
STATS_THREADS = 2  # figures worked out at once; more wait their turn rather than load the database further


@dataclass
class Answer:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def send(self, ack: Ack) -> None:
        ack(response_type="ephemeral", text=self.text, blocks=self.blocks or None)


@dataclass(frozen=True)
class Caller:
    user: str
    channel: str | None
    team_domain: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Caller:
        return cls(str(body.get("user_id", "")), body.get("channel_id"), body.get("team_domain"))


def register(app: App, runtime: Runtime) -> None:
    known_kinds = frozenset(runtime.config.kinds)

    figures = ThreadPoolExecutor(STATS_THREADS, thread_name_prefix="handoff-stats")

    def answer(ack: Ack, body: dict[str, Any]) -> None:
        caller = Caller.of(body)
        try:
            command = parse_command(str(body.get("text", "")), known_kinds=known_kinds)
            if isinstance(command, Stats):
                _answer_stats(ack, runtime, command, caller, figures)
                return
            reply = respond(runtime, command, caller)
        except CommandError as error:
            reply = Answer(f"{error.problem}\n{USAGE}")
        reply.send(ack)
        runtime.notify()

    def open_form(body: dict[str, Any], client: WebClient) -> None:
        try:
            command = parse_command(str(body.get("text", "")), known_kinds=known_kinds)
        except CommandError:
            return
        open_modal_for(runtime, client, command, Caller.of(body), str(body.get("trigger_id", "")))

    app.command(ids.SLASH_COMMAND)(ack=answer, lazy=[open_form])

    def more(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        action = (body.get("actions") or [{}])[0]
        try:
            request = json.loads(action.get("value") or "{}")
            command = parse_command(str(request.get("q", "")), known_kinds=known_kinds)
            offset = min(max(0, int(request.get("offset") or 0)), MAX_PAGE_OFFSET)
        except (ValueError, TypeError, AttributeError, CommandError):
            return  # not a value this bot wrote
        if not isinstance(command, Stalled | Mine):
            return  # only the lists page: a forged value never runs another command
        caller = Caller(str((body.get("user") or {}).get("id", "")), (body.get("channel") or {}).get("id"),
                        (body.get("team") or {}).get("domain"))
        reply = respond(runtime, command, caller, offset=offset)
        if caller.channel:
            runtime.repo.enqueue([private_notice(caller.channel, caller.user, reply.text, reply.blocks)])
            runtime.notify()

    app.action(ids.LIST_PAGE)(more)


# --- answers ---------------------------------------------------------------------------------------


def respond(runtime: Runtime, command: Command, caller: Caller, *, offset: int = 0) -> Answer:
    """The private answer to one parsed command."""
    if isinstance(command, Help):
        return Answer(f"{HELP}\n{USAGE}")
    if isinstance(command, New):
        return Answer("Opening the new handoff form…")
    if isinstance(command, Mine):
        return _mine(runtime, caller, offset)
    if isinstance(command, Stalled):
        return _stalled(runtime, command, caller, offset)
    if isinstance(command, Show):
        return _show(runtime, command.handoff_id, caller)
    if isinstance(command, Stats):
        return _stats(runtime, command.period)
    return _act(runtime, command, caller)


def _mine(runtime: Runtime, caller: Caller, offset: int) -> Answer:
    """What the caller owns and what waits for their approval, newest first, 15 of each a page with the totals;
    "More" shows the next 15 of each."""
    now = runtime.clock()
    owned, awaiting = mine_page(runtime.repo, caller.user, offset=offset, limit=PAGE_SIZE + 1)
    paged = owned if len(owned.items) > PAGE_SIZE else awaiting  # the one "More" goes under a list that has more
    blocks: list[dict[str, Any]] = []
    for heading, rows, empty in (("Yours", owned, "You own nothing open."),
                                 ("Waiting for your approval", awaiting, "Nothing waits for your approval.")):
        blocks += list_blocks(heading + (f" (from #{offset + 1})" if offset else ""), rows.items, now,
                              team_domain=caller.team_domain, empty=empty, offset=offset,
                              more_query="mine" if rows is paged else None)
    return Answer(f"You own {_total(owned)} open handoff(s); {_total(awaiting)} wait for your approval.", blocks)


def _total(rows: BoardList) -> str:
    return f"{COUNT_CAP}+" if rows.capped else str(rows.total)


def _stalled(runtime: Runtime, command: Stalled, caller: Caller, offset: int) -> Answer:
    now = runtime.clock()
    found = runtime.repo.stalled(now=now, limit=PAGE_SIZE + 1, offset=offset, owner=command.user,
                                 channel=command.channel, kind=command.kind)
    manager = is_manager(Actor(caller.user), runtime.config)
    filters = [f"<@{command.user}>" if command.user else "", f"<#{command.channel}>" if command.channel else "",
               command.kind or ""]
    query = " ".join(["stalled", *filter(None, filters)])
    heading = "Stalled handoffs, most overdue first" + (f" (from #{offset + 1})" if offset else "")
    blocks = list_blocks(heading, found, now, team_domain=caller.team_domain, nudge=manager, more_query=query,
                         offset=offset, empty="Nothing is stalled. 🎉")
    return Answer(f"{min(len(found), PAGE_SIZE)} stalled handoff(s) shown.", blocks)


def _show(runtime: Runtime, handoff_id: int, caller: Caller) -> Answer:
    try:
        handoff = runtime.service.get(handoff_id)
    except NotFound as missing:
        return Answer(f"{missing}.\n{USAGE}")
    events = runtime.repo.events(handoff_id, limit=SHOWN_EVENTS)
    blocks = card_blocks(handoff, runtime.config, now=runtime.clock(), text_budget=CARD_TEXT_BUDGET - EVENTS_TEXT_LIMIT)
    lines = whole_lines([_event_line(event) for event in events], EVENTS_TEXT_LIMIT)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": lines or "No events."}]})
    return Answer(f"{handoff.ref}: {mrkdwn_safe(handoff.title)}", blocks[:50])


def whole_lines(lines: list[str], limit: int) -> str:
    """As many of `lines` as fit in `limit` characters, whole (a cut could split a `<!date^…>` token), and "…"
    on a line of its own when some were left out."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0  # the kept lines, each with its newline
    for line in lines:
        if used + len(line) + 1 + len(ELLIPSIS) > limit:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join([*kept, ELLIPSIS])


def _event_line(event: Event) -> str:
    actor = mention(event.actor)  # a Slack user id is mentioned; an API client's token name is inert text
    when = f"<!date^{int(event.at.timestamp())}^{{date_short_pretty}} {{time}}|{event.at:%Y-%m-%d %H:%M} UTC>"
    return f"{when} · {event.action} by {actor}"


def _answer_stats(ack: Ack, runtime: Runtime, command: Stats, caller: Caller, figures: ThreadPoolExecutor) -> None:
    """The figures in the ack when they are ready within STATS_WAIT_SECONDS; else an ack saying they follow, and
    the figures as a private notice once worked out."""
    working = figures.submit(_stats, runtime, command.period)
    try:
        reply = working.result(timeout=STATS_WAIT_SECONDS)
    except StillWorking:
        Answer(f"Working out the figures for the last {command.period}: they follow here in a moment.").send(ack)
        working.add_done_callback(lambda done: _send_figures_later(runtime, caller, done))
        return
    reply.send(ack)


def _send_figures_later(runtime: Runtime, caller: Caller, done: Future[Answer]) -> None:
    error = done.exception()
    if error is not None:
        log.error("/handoff stats failed for %s", caller.user, exc_info=error)
        reply = Answer("The figures could not be worked out; please try again in a minute.")
    else:
        reply = done.result()
    notice = (private_notice(caller.channel, caller.user, reply.text, reply.blocks or None) if caller.channel
              else direct_message(caller.user, reply.text))
    runtime.repo.enqueue([notice])
    runtime.notify()


def _stats(runtime: Runtime, period: str) -> Answer:
    queries, now, span = MetricsQueries(runtime.db), runtime.clock(), parse_period(period)
    stats = collect_stats(queries, period=span, now=now)
    text, blocks = stats_message(stats, queries.webhook_deliveries(since=now - span, until=now))
    return Answer(text, blocks)


def _request_for(runtime: Runtime, command: Command) -> tuple[int, Request] | None:
    if isinstance(command, Claim):
        return command.handoff_id, Request(Action.claim)
    if isinstance(command, Assign):
        unfit = runtime.why_cannot_own(command.user)
        return command.handoff_id, Request(Action.reassign, new_owner=command.user, new_owner_unfit=unfit)
    if isinstance(command, Reopen):
        return command.handoff_id, Request(Action.reopen)
    if isinstance(command, Close) and command.outcome:
        note = message_plain_text(command.note) if command.note else None  # Slack's escaped text, as typed
        return command.handoff_id, Request(Action.close, outcome=command.outcome, note=note)
    return None


_DONE = {
    Action.claim: "✋ You claimed {ref}.",
    Action.reassign: "🔀 {ref} now belongs to {owner}.",
    Action.reopen: "🔁 {ref} is open again.",
    Action.close: "🏁 {ref} is closed as *{outcome}*.",
}


_BAD_INPUT = frozenset({"bad_outcome", "bad_argument", "missing_argument"})  # refusals answered with the usage


def _act(runtime: Runtime, command: Command, caller: Caller) -> Answer:
    if isinstance(command, Close) and not command.outcome:
        return _check_close(runtime, command.handoff_id, caller)
    found = _request_for(runtime, command)
    if found is None:
        return Answer(USAGE)
    handoff_id, request = found
    try:
        acted = runtime.service.act(handoff_id, request, Actor(caller.user))
    except Refused as refused:
        return Answer(refused.reason + (f"\n{USAGE}" if refused.code in _BAD_INPUT else ""))
    except NotFound as missing:
        return Answer(f"{missing}.\n{USAGE}")
    handoff = acted.handoff
    owner = f"<@{handoff.owner}>" if handoff.owner else "nobody"
    return Answer(_DONE[request.action].format(ref=handoff.ref, owner=owner, outcome=mrkdwn_safe(handoff.outcome)))


def _check_close(runtime: Runtime, handoff_id: int, caller: Caller) -> Answer:
    try:
        handoff = runtime.service.check(handoff_id, Action.close, Actor(caller.user))
    except Refused as refused:
        return Answer(refused.reason)
    except NotFound as missing:
        return Answer(f"{missing}.\n{USAGE}")
    return Answer(f"Opening the close form for {handoff.ref}…")


# --- forms -----------------------------------------------------------------------------------------


def open_modal_for(runtime: Runtime, client: WebClient, command: Command, caller: Caller, trigger_id: str) -> None:
    if not trigger_id:
        return
    view = _modal_view(runtime, command, caller)
    if view is None:
        return
    try:
        client.views_open(trigger_id=trigger_id, view=view)
    except (SlackApiError, SlackClientError, OSError) as error:
        log.warning("could not open a form for /handoff: %s", error)
        tell_the_form_did_not_open(runtime, caller.user, caller.channel, FORM_TOO_SLOW)


def _modal_view(runtime: Runtime, command: Command, caller: Caller) -> dict[str, Any] | None:
    if isinstance(command, New):
        title = message_plain_text(command.title) if command.title else None  # as typed, not Slack's markup
        return new_handoff_modal(runtime.config, title=title or None)
    if isinstance(command, Close) and not command.outcome:
        handoff = runtime.repo.get(command.handoff_id)
        if handoff is None or not _may(runtime, handoff, Action.close, caller):
            return None
        return close_modal(handoff, closing_outcomes(handoff, runtime.config))
    return None


def _may(runtime: Runtime, handoff: Handoff, action: Action, caller: Caller) -> bool:
    try:
        check_allowed(handoff, action, Actor(caller.user), runtime.config)
    except Refused:
        return False
    return True

