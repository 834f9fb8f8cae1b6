"""Intake channels: a trusted producer's message carrying a handoff becomes one, through the API's pipeline.

A handoff travels as Slack message metadata of event type `handoff` (its payload is the JSON of SPEC §2)
or as a JSON code block. Every message that looks like a handoff gets an answer: ✅ and a thread reply
linking the card, or one thread reply naming each problem, or, from someone who is not a trusted producer,
a reply saying so. The replies go through the outbox; the listener only touches the database.

Retries and repeats (Slack's X-Slack-Retry-Num, a repeated event id) change nothing: a new handoff is
idempotent on (source.system, external_id), which defaults to "<channel>:<ts>", and its card, reply and
reaction are written in the transaction that creates it; every other answer is written in one transaction
with the row of `slack_events` that marks the event (and its message) handled.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from slack_bolt import App

from bot.blocks.replies import no_handoff_text, problems_text, untrusted_text
from bot.runtime import Runtime
from bot.slack.payloads import ChannelMessage, parse_message_event
from handoffs.effects import message_reply, reaction, source_reply
from handoffs.intake import IntakeRejected, NoRoute
from handoffs.model import HandoffIn
from handoffs.ports import Effect, IdempotencyConflict

log = logging.getLogger("handoff_bot.slack.events")

METADATA_EVENT_TYPE = "handoff"
SOURCE_SYSTEM = "slack"
ACCEPTED_REACTION = "white_check_mark"
# Messages someone wrote into the channel: plain, an app's, with a file attached, or sent with /me.
# Edits, deletions, joins, topic changes and the like are not handoffs. A thread broadcast is a thread
# reply, and thread replies are not intake (answers and talk about a handoff live in its thread).
HANDLED_SUBTYPES = frozenset({None, "bot_message", "file_share", "me_message"})

_FENCE = re.compile(r"```[ \t]*(json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
# In an event's text a literal `<` is `&lt;`: a raw `<…>` is markup Slack added, e.g. a link around a URL
# or an e-mail address typed in the JSON. Its label is what was typed (`<mailto:a@b.c|a@b.c>`).
_AUTO_LINK = re.compile(r"<((?:https?|mailto):[^<>|\s]*)(?:\|([^<>]*))?>")

Problems = list[tuple[str, str]]


class Invalid(Exception):
    """A message that carries a handoff which cannot be used; `problems` are (field path, message) pairs."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


@dataclass(frozen=True)
class Candidate:
    """What a message carries that looks like a handoff: from its metadata, or from a code block."""

    origin: str  # "metadata" or "code block"
    data: Any = None
    error: str | None = None  # the code block is not JSON


# ---------------------------------------------------------------- parsing (pure)


def _as_typed(text: str) -> str:
    """The text of a message as its sender typed it: Slack's links unwrapped, then `&lt; &gt; &amp;` decoded."""
    unlinked = _AUTO_LINK.sub(lambda link: link.group(2) or link.group(1), text)
    return unlinked.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _json_block(text: str) -> Candidate | None:
    """The first fenced code block that is meant as JSON (```json, or ``` starting with `{`)."""
    for match in _FENCE.finditer(text):
        body = match.group(2).strip()
        if not match.group(1) and not body.startswith("{"):
            continue
        try:
            return Candidate("code block", json.loads(_as_typed(body)))
        except ValueError as error:
            return Candidate("code block", error=f"not valid JSON: {error}")
        except RecursionError:
            return Candidate("code block", error="not valid JSON: nested too deeply")
    return None


def find_candidate(message: ChannelMessage) -> Candidate | None:
    """The handoff a message carries, if it looks like it carries one (metadata wins over a code block)."""
    if message.metadata_type == METADATA_EVENT_TYPE:
        return Candidate("metadata", message.metadata_payload)
    return _json_block(message.text)


def _path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "handoff"


def to_handoff(candidate: Candidate, message: ChannelMessage) -> HandoffIn:
    """Validate the candidate as SPEC §2 JSON; a missing source system is "slack" and a missing
    external_id "<channel>:<ts>", so that every delivery of one message is one handoff. Raises Invalid."""
    if candidate.error is not None:
        raise Invalid([(candidate.origin, candidate.error)])
    if not isinstance(candidate.data, dict):
        raise Invalid([(candidate.origin, "the handoff must be a JSON object")])
    data = dict(candidate.data)
    if not data.get("external_id"):
        data["external_id"] = f"{message.channel}:{message.ts}"
    source = data.get("source")
    if source is None:
        data["source"] = {"system": SOURCE_SYSTEM}
    elif isinstance(source, dict) and not source.get("system"):
        data["source"] = {**source, "system": SOURCE_SYSTEM}
    try:
        return HandoffIn.model_validate(data)
    except ValidationError as error:
        problems = [(_path(item["loc"]), item["msg"].removeprefix("Value error, ")) for item in error.errors()]
        raise Invalid(problems) from None


def trusted_producer(message: ChannelMessage, producers: frozenset[str]) -> str | None:
    """The producer id the message is trusted as (its bot id or its user id), or None."""
    for sender in (message.bot_id, message.user):
        if sender and sender in producers:
            return sender
    return None


# ---------------------------------------------------------------- the listener


def register(app: App, runtime: Runtime) -> None:
    channels = {intake.channel: frozenset(intake.producers) for intake in runtime.config.intake_channels}

    def on_message(body: dict[str, Any]) -> None:
        message = parse_message_event(body)
        if message is None or message.channel not in channels:
            return
        if message.own or message.subtype not in HANDLED_SUBTYPES or message.is_thread_reply:
            return
        if runtime.repo.slack_event_seen(event_id=message.event_id, channel=message.channel, ts=message.ts):
            return  # a retry or a repeat: answered already
        handle_intake_message(runtime, message, channels[message.channel])
        runtime.notify()

    app.event("message")(on_message)


def handle_intake_message(runtime: Runtime, message: ChannelMessage, producers: frozenset[str]) -> None:
    channel, ts = message.channel, message.ts

    def record(outcome: str, effects: list[Effect], handoff_id: int | None = None) -> None:
        runtime.repo.record_slack_event(event_id=message.event_id, channel=channel, ts=ts, outcome=outcome,
                                        handoff_id=handoff_id, effects=effects, now=runtime.clock())

    candidate = find_candidate(message)
    producer = trusted_producer(message, producers)
    if producer is None:
        if candidate is not None:  # ordinary talk in the channel is left alone
            record("untrusted", [message_reply(channel, ts, untrusted_text(message.sender))])
        return
    if candidate is None:
        record("no_handoff", [message_reply(channel, ts, no_handoff_text())])
        return
    accepted = reaction(channel, ts, ACCEPTED_REACTION)
    try:
        payload = to_handoff(candidate, message)
        result = runtime.service.submit(payload, actor=producer, source_message=(channel, ts),
                                        extra_effects=[accepted])
    except Invalid as invalid:
        record("invalid", [message_reply(channel, ts, problems_text(invalid.problems))])
        return
    except IntakeRejected as rejected:
        problems = [(_path(problem.loc), problem.msg) for problem in rejected.errors]
        record("invalid", [message_reply(channel, ts, problems_text(problems))])
        return
    except IdempotencyConflict as conflict:
        record("invalid", [message_reply(channel, ts, problems_text([("external_id", str(conflict))]))])
        return
    except NoRoute as no_route:
        log.error("intake message %s:%s has no route: %s", channel, ts, no_route)
        record("invalid", [message_reply(channel, ts, problems_text([("route", str(no_route))]))])
        return
    handoff = result.handoff
    if result.is_new:
        record("created", [], handoff.id)  # its card, reply and reaction were written with it
    elif (handoff.source_channel, handoff.source_ts) == (channel, ts):
        record("repeat", [], handoff.id)  # this very message, delivered again
    else:  # the same handoff as one already tracked (same key, or the same content still open)
        record("duplicate", [source_reply(channel, ts, note="duplicate"), accepted], handoff.id)
