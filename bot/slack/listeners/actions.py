"""Card buttons: claim and approve act at once; edit, reject and close open a modal.

Each listener does its database work, then acks; Slack writes go through the outbox, so a slow
or rate-limited Slack never delays an acknowledgement. Refusals are logged and told privately.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import ids
from bot.blocks.modals import ModalContext, close_modal, edit_modal, reject_modal
from bot.blocks.nudges import stall_reason_reply, wrong_owner_text
from bot.runtime import Runtime
from bot.slack.payloads import Click, parse_click
from bot.text import mrkdwn, slack_date
from handoffs.effects import direct_message, message_reply, private_notice, publish_home
from handoffs.lifecycle import Action, Actor, Refused, Request, check_allowed, closing_outcomes
from handoffs.model import Handoff
from handoffs.nudges import StallReason, snooze_until_tomorrow
from handoffs.ports import Effect
from handoffs.service import NotFound

log = logging.getLogger("handoff_bot.slack.actions")

ModalBuilder = Callable[[Handoff], dict[str, Any]]


def register(app: App, runtime: Runtime) -> None:
    app.action(ids.CLAIM)(_acting(runtime, lambda click: Request(Action.claim)))
    app.action(ids.APPROVE)(_acting(runtime, lambda click: Request(Action.approve)))
    app.action(ids.MORE)(_acting(runtime, lambda click: _overflow_request(click, runtime)))
    app.action(ids.REASSIGN)(_acting(runtime, lambda click: Request(
        Action.reassign, new_owner=click.selected_user, new_owner_unfit=runtime.why_cannot_own(click.selected_user),
    )))
    modals: dict[str, tuple[Action, ModalBuilder]] = {
        ids.EDIT: (Action.edit, edit_modal),
        ids.REJECT: (Action.reject, reject_modal),
        ids.CLOSE: (Action.close, lambda h: close_modal(h, closing_outcomes(h, runtime.config))),
    }
    for action_id, (action, builder) in modals.items():
        app.action(action_id)(ack=_checking(runtime, action), lazy=[_modal_opener(runtime, action, builder)])
    app.action(ids.NUDGE)(_nudging(runtime))
    register_reminder_answers(app, runtime)


def register_reminder_answers(app: App, runtime: Runtime) -> None:
    """The buttons of an SLA reminder: snooze it, or say in one click why the handoff is stuck."""
    snoozes: dict[str, Callable[[Click], Request]] = {
        ids.NUDGE_SNOOZE_HOUR: lambda click: _snooze_for_an_hour(runtime),
        ids.NUDGE_SNOOZE_TOMORROW: lambda click: _snooze_until_tomorrow(runtime, click),
    }
    for action_id, to_request in snoozes.items():
        app.action(action_id)(_on_click(runtime, _snoozing(runtime, to_request)))
    reasons = {ids.STALL_BLOCKED: StallReason.blocked, ids.STALL_NEED_INFO: StallReason.need_info,
               ids.STALL_WRONG_OWNER: StallReason.wrong_owner}
    for action_id, reason in reasons.items():
        app.action(action_id)(_on_click(runtime, _answering(runtime, reason)))
    app.action(ids.OPEN_CARD)(lambda ack: ack())  # a link button: Slack opens the URL, and still tells us


def _answering(runtime: Runtime, reason: StallReason) -> Callable[[Click, int], None]:
    def answer(click: Click, handoff_id: int) -> None:
        runtime.service.answer_nudge(handoff_id, reason, Actor(click.user_id), notify_in=click.channel_id,
                                     told=lambda handoff: _stall_told(runtime, handoff, reason, click.user_id))
        _tell(runtime, click, f"Thanks: noted as *{reason.value}*.")

    return answer


def _snoozing(runtime: Runtime, to_request: Callable[[Click], Request]) -> Callable[[Click, int], None]:
    """A reminder's snooze, confirmed where it was pressed, as an answer is: the card's thread, where it is also
    said, may be a channel the clicker is not looking at."""

    def snooze(click: Click, handoff_id: int) -> None:
        acted = runtime.service.act(handoff_id, to_request(click), Actor(click.user_id), notify_in=click.channel_id)
        if acted.handoff.snoozed_until is not None:
            _tell(runtime, click, f"💤 Snoozed *{acted.handoff.ref}* until {slack_date(acted.handoff.snoozed_until)}.")

    return snooze


def _stall_told(runtime: Runtime, handoff: Handoff, reason: StallReason, user: str) -> list[Effect]:
    """A line in the card's thread; for "wrong owner", the route's approvers (else the managers) by DM."""
    effects = [message_reply(handoff.channel, handoff.card_ts, stall_reason_reply(reason.value, user))] \
        if handoff.channel and handoff.card_ts else []
    if reason is StallReason.wrong_owner:
        route = runtime.config.route_named(handoff.route)
        people = (route.approvers if route else []) or handoff.approvers or runtime.config.managers
        text = wrong_owner_text(handoff, user)
        effects += [direct_message(person, text) for person in people]
    return effects


def nudge_message(handoff: Handoff, manager: str) -> list[Effect]:
    """The owner by DM, or the queue in the card's thread while nobody owns it."""
    title, next_action = mrkdwn(handoff.title, 150), mrkdwn(handoff.next_action, 300)
    text = f"⏰ <@{manager}> nudged about *{handoff.ref}* {title}: {next_action}"
    if handoff.owner:
        return [direct_message(handoff.owner, text)]
    if handoff.channel and handoff.card_ts:
        return [message_reply(handoff.channel, handoff.card_ts, text)]
    return []


def _nudging(runtime: Runtime) -> Callable[..., None]:
    def listener(ack: Ack, body: dict[str, Any]) -> None:
        click = parse_click(body)
        try:
            if click.handoff_id is None:
                return
            runtime.service.nudge(click.handoff_id, Actor(click.user_id), notify_in=click.channel_id,
                                  message=lambda handoff: nudge_message(handoff, click.user_id))
            _tell(runtime, click, "⏰ Nudge sent.")
        except (Refused, NotFound):
            pass  # refusals are logged and told privately by the service
        finally:
            ack()
            runtime.notify()

    return listener


def _resolve(runtime: Runtime, click: Click) -> int | None:
    """The handoff a click is about: from the element's value, else from the card it sits on."""
    if click.handoff_id is not None:
        return click.handoff_id
    if click.channel_id and click.message_ts:
        return runtime.repo.id_by_card(click.channel_id, click.message_ts)
    return None


def _tell(runtime: Runtime, click: Click, text: str) -> None:
    if click.channel_id:
        runtime.repo.enqueue([private_notice(click.channel_id, click.user_id, text)])
        runtime.notify()
    elif click.user_id:  # a click on the App Home has no channel to be private in: say it in the app's DM
        runtime.repo.enqueue([direct_message(click.user_id, text)])
        runtime.notify()


def _refresh_home(runtime: Runtime, click: Click) -> None:
    """A click on the App Home republishes it (built at send time), so the viewer sees what it did."""
    if click.from_home and click.user_id:
        runtime.repo.enqueue([publish_home(click.user_id)])


def _on_click(runtime: Runtime, work: Callable[[Click, int], None]) -> Callable[..., None]:
    """A card click: do `work` on the handoff it points at, then ack; refusals and misses told privately."""

    def listener(ack: Ack, body: dict[str, Any]) -> None:
        click = parse_click(body)
        try:
            handoff_id = _resolve(runtime, click)
            if handoff_id is None:
                _tell(runtime, click, "That button no longer points at a handoff.")
                return
            work(click, handoff_id)
        except Refused as refused:  # logged, and a click in a channel was told privately, by the service
            if click.channel_id is None:
                _tell(runtime, click, refused.reason)
        except NotFound as missing:
            _tell(runtime, click, f"{missing}.")
        finally:
            ack()
            _refresh_home(runtime, click)
            runtime.notify()

    return listener


def _acting(runtime: Runtime, to_request: Callable[[Click], Request | None]) -> Callable[..., None]:
    def act(click: Click, handoff_id: int) -> None:
        request = to_request(click)
        if request is None:
            _tell(runtime, click, "That button no longer points at a handoff.")
            return
        runtime.service.act(handoff_id, request, Actor(click.user_id), notify_in=click.channel_id)

    return _on_click(runtime, act)


def _overflow_request(click: Click, runtime: Runtime) -> Request | None:
    if click.verb == ids.MORE_RELEASE:
        return Request(Action.release)
    if click.verb == ids.MORE_SNOOZE_HOUR:
        return _snooze_for_an_hour(runtime)
    if click.verb == ids.MORE_SNOOZE_TOMORROW:
        return _snooze_until_tomorrow(runtime, click)
    return None


def _snooze_for_an_hour(runtime: Runtime) -> Request:
    return Request(Action.snooze, until=runtime.clock() + timedelta(hours=1))


def _snooze_until_tomorrow(runtime: Runtime, click: Click) -> Request:
    """Until the next opening time (business hours' start, else 09:00) in the clicker's own time zone."""
    until = snooze_until_tomorrow(runtime.clock(), runtime.config, runtime.own_zone(click.user_id))
    return Request(Action.snooze, until=until)


def _checking(runtime: Runtime, action: Action) -> Callable[..., None]:
    """Ack a modal button, refusing privately (and logging) when the clicker may not do it."""

    def check(click: Click, handoff_id: int) -> None:
        runtime.service.check(handoff_id, action, Actor(click.user_id), notify_in=click.channel_id)

    return _on_click(runtime, check)


def _modal_opener(runtime: Runtime, action: Action, builder: ModalBuilder) -> Callable[..., None]:
    """After the ack: open the modal with the trigger (it lives 3 seconds), if the check passed."""

    def open_modal(body: dict[str, Any], client: WebClient) -> None:
        click = parse_click(body)
        handoff_id = _resolve(runtime, click)
        handoff = runtime.repo.get(handoff_id) if handoff_id is not None else None
        if handoff is None or not click.trigger_id:
            return
        try:
            check_allowed(handoff, action, Actor(click.user_id), runtime.config)
        except Refused:
            return
        view = builder(handoff)
        if click.from_home:  # its submission republishes the home (bot/slack/listeners/views.py)
            context = ModalContext.parse(view.get("private_metadata")).model_copy(update={"home": True})
            view["private_metadata"] = context.dump()
        try:
            client.views_open(trigger_id=click.trigger_id, view=view)
        except (SlackApiError, SlackClientError, OSError) as error:
            log.warning("could not open the %s modal for %s: %s", action.value, handoff.ref, error)
            _tell(runtime, click, f"Slack did not open the {action.value} form in time; please press the button again.")

    return open_modal
