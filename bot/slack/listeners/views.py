"""Modal submissions: edit, reject, close. Problems go back inline on the field, never as a crash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from slack_bolt import Ack, App

from bot import ids
from bot.blocks.modals import ModalContext, ModalError, parse_close, parse_edit, parse_reject
from bot.blocks.new_modal import NewModalSource, created_modal, intake_errors, parse_new_handoff
from bot.runtime import Runtime
from handoffs.effects import publish_home
from handoffs.intake import IntakeRejected, NoRoute
from handoffs.lifecycle import Action, Actor, Refused, Request
from handoffs.model import Handoff, HandoffIn, ref_of
from handoffs.ports import Created, IdempotencyConflict
from handoffs.service import FormAlreadySent, NotFound

# Which input a refusal belongs next to, by the field the domain names (or the action's main input).
_FIELD_BLOCKS = {
    "reason": ids.REJECT_REASON,
    "outcome": ids.CLOSE_OUTCOME,
    "note": ids.CLOSE_NOTE,
    "title": ids.EDIT_TITLE,
    "next_action": ids.EDIT_NEXT_ACTION,
    "summary": ids.EDIT_SUMMARY,
    "draft": ids.EDIT_DRAFT,
    "definition_of_done": ids.EDIT_DEFINITION_OF_DONE,
    "urgency": ids.EDIT_URGENCY,
    "due_at": ids.EDIT_DUE_AT,
}
_MAIN_BLOCK = {Action.edit: ids.EDIT_TITLE, Action.reject: ids.REJECT_REASON, Action.close: ids.CLOSE_OUTCOME}

FORM_KEY_PREFIX = "slack-form:"  # + the form's view id: the external_id of a handoff made with the New form
MAX_VIEW_ID = 100  # Slack's are ~11 characters; external_id holds 200

RequestBuilder = Callable[[dict[str, Any], Handoff, ModalContext, Runtime], Request]


def register(app: App, runtime: Runtime) -> None:
    app.view(ids.EDIT_MODAL)(_submission(runtime, Action.edit, _edit_request))
    app.view(ids.REJECT_MODAL)(_submission(runtime, Action.reject, _reject_request))
    app.view(ids.CLOSE_MODAL)(_submission(runtime, Action.close, _close_request))
    app.view(ids.NEW_MODAL)(_new_handoff_submission(runtime))


def _edit_request(values: dict[str, Any], handoff: Handoff, meta: ModalContext, runtime: Runtime) -> Request:
    return Request(Action.edit, edit=parse_edit(values, handoff, meta.shown, now=runtime.clock()))


def _reject_request(values: dict[str, Any], handoff: Handoff, meta: ModalContext, runtime: Runtime) -> Request:
    return Request(Action.reject, reason=parse_reject(values))


def _close_request(values: dict[str, Any], handoff: Handoff, meta: ModalContext, runtime: Runtime) -> Request:
    outcome, note = parse_close(values)
    return Request(Action.close, outcome=outcome, note=note)


def _errors_from_validation(error: ValidationError, action: Action) -> dict[str, str]:
    errors: dict[str, str] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        errors.setdefault(_FIELD_BLOCKS.get(field, _MAIN_BLOCK[action]), item["msg"].removeprefix("Value error, "))
    return errors


def _submission(runtime: Runtime, action: Action, build: RequestBuilder) -> Callable[..., None]:
    def listener(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        main_block = _MAIN_BLOCK[action]
        try:
            meta = ModalContext.parse(view.get("private_metadata"))
        except ValueError:
            ack(response_action="errors", errors={main_block: "This form has expired; open it again from the card."})
            return
        actor = Actor((body.get("user") or {}).get("id", ""))
        values = view.get("state", {}).get("values", {})
        form = _form_id(view)

        def request_for(handoff: Handoff) -> Request:
            # Made from the handoff each attempt reads, so a change saved meanwhile is seen, never overwritten.
            return replace(build(values, handoff, meta, runtime), form=form)

        try:
            runtime.service.act(meta.handoff_id, request_for, actor)
        except FormAlreadySent:
            ack()  # Save pressed again while Slack was slow: the first press did it
            return
        except ModalError as error:
            ack(response_action="errors", errors=error.errors)
            return
        except ValidationError as error:
            ack(response_action="errors", errors=_errors_from_validation(error, action))
            return
        except Refused as refused:
            block = _FIELD_BLOCKS.get(str(refused.details.get("field", "")), main_block)
            ack(response_action="errors", errors={block: refused.reason})
            return
        except NotFound as missing:
            ack(response_action="errors", errors={main_block: f"{missing}."})
            return
        ack()
        if meta.home:  # the modal was opened from the App Home: show the change there too
            runtime.repo.enqueue([publish_home(actor.id)])
        runtime.notify()

    return listener


def _new_handoff_submission(runtime: Runtime) -> Callable[..., None]:
    """The New handoff modal: submitted through the same pipeline as the API, by the person who sent it."""

    def listener(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            source = NewModalSource.parse(view.get("private_metadata"))
        except ValueError:
            ack(response_action="errors", errors={ids.NEW_TITLE: "This form has expired; open it again."})
            return
        actor = (body.get("user") or {}).get("id", "")
        try:
            payload = parse_new_handoff(view.get("state", {}).get("values", {}), source, now=runtime.clock())
            payload = _keyed_by_form(payload, view)
            if unfit := runtime.why_cannot_own(payload.owner, named="The owner you picked"):
                raise ModalError({ids.NEW_OWNER: unfit})  # as reassigning would refuse them
            result = runtime.service.submit(payload, actor=actor, source_message=source.message)
        except ModalError as error:
            ack(response_action="errors", errors=error.errors)
            return
        except IntakeRejected as rejected:
            ack(response_action="errors", errors=intake_errors(rejected.errors, payload.kind))
            return
        except IdempotencyConflict as conflict:
            ack(response_action="errors", errors={ids.NEW_TITLE: f"This form was already sent as "
                                                                 f"{ref_of(conflict.existing_id)}; open a new one "
                                                                 f"for another handoff."})
            return
        except NoRoute as problem:
            ack(response_action="errors", errors={ids.NEW_TITLE: str(problem)[:300]})
            return
        ack(response_action="update", view=created_modal(result.handoff, duplicate=result.result is Created.duplicate))
        runtime.notify()

    return listener


def _keyed_by_form(payload: HandoffIn, view: dict[str, Any]) -> HandoffIn:
    """The form's view id as the handoff's idempotency key: the same form sent again (Create pressed twice while
    the first answer was slow) is the same handoff, answered as created, not a sighting of a duplicate."""
    form = _form_id(view)
    return payload if form is None else payload.model_copy(update={"external_id": f"{FORM_KEY_PREFIX}{form}"})


def _form_id(view: dict[str, Any]) -> str | None:
    """The form's view id, the same for every press of its submit button; None when missing or unlikely."""
    view_id = str(view.get("id") or "")
    return view_id if view_id and len(view_id) <= MAX_VIEW_ID else None
