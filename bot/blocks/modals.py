"""The Edit, Reject and Close modals, and the parsers for their `view_submission` values.

Each input's block_id equals its action_id (constants in `bot.ids`), so that a
problem can be shown inline with `ack(response_action="errors", errors={block_id: message})`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DateTimePickerElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot import ids
from bot.text import mrkdwn, plain
from handoffs.model import EARLIEST_DUE, LATEST_DUE, Handoff, HandoffEdit, Urgency

INPUT_LIMIT = 3000  # the most a plain_text_input can hold
REASON_MIN, REASON_MAX = 3, 2000
NOTE_MAX = 2000
TITLE_LIMIT = 24
OPTION_LIMIT = 100
ERROR_LIMIT = 300

Values = Mapping[str, Mapping[str, Mapping[str, Any]]]

URGENCY_LABELS = {
    Urgency.urgent: "🔴 Urgent",
    Urgency.high: "🟠 High",
    Urgency.normal: "🔵 Normal",
    Urgency.low: "⚪ Low",
}

# Text fields of the Edit modal: handoff attribute -> (block/action id, label, max length, multiline, required)
EDIT_TEXT_FIELDS: dict[str, tuple[str, str, int, bool, bool]] = {
    "title": (ids.EDIT_TITLE, "Title", 150, False, True),
    "next_action": (ids.EDIT_NEXT_ACTION, "Next action", 500, False, True),
    "summary": (ids.EDIT_SUMMARY, "Summary", INPUT_LIMIT, True, False),
    "draft": (ids.EDIT_DRAFT, "Draft", INPUT_LIMIT, True, False),
    "definition_of_done": (ids.EDIT_DEFINITION_OF_DONE, "Done when", 500, False, False),
}
# Where a problem with a field is shown, per modal.
EDIT_BLOCKS: dict[str, str] = {
    **{name: spec[0] for name, spec in EDIT_TEXT_FIELDS.items()},
    "urgency": ids.EDIT_URGENCY,
    "due_at": ids.EDIT_DUE_AT,
}
REJECT_BLOCKS: dict[str, str] = {"reason": ids.REJECT_REASON, "note": ids.REJECT_REASON}
CLOSE_BLOCKS: dict[str, str] = {"outcome": ids.CLOSE_OUTCOME, "note": ids.CLOSE_NOTE}


class ModalError(ValueError):
    """A submission that cannot be used; `errors` is ready for `ack(response_action="errors", errors=...)`."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{block}: {message}" for block, message in errors.items()))


class ModalContext(BaseModel):
    """What a modal carries in `private_metadata`: ids only, never content."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    handoff_id: int = Field(gt=0, lt=2**63)  # a database id: larger is not ours
    channel: str | None = None
    ts: str | None = None
    home: bool = False  # opened from the App Home, which the submission republishes
    # The Edit form: a short fingerprint of each value it showed, so that its submission changes only what the
    # person changed, never putting back a value someone else changed meanwhile (`parse_edit`).
    shown: dict[str, str] | None = None

    @classmethod
    def of(cls, handoff: Handoff) -> ModalContext:
        return cls(handoff_id=handoff.id, channel=handoff.channel, ts=handoff.card_ts)

    @classmethod
    def parse(cls, private_metadata: str | None) -> ModalContext:
        """Raises ValueError (a pydantic ValidationError) when the metadata is missing or not ours."""
        return cls.model_validate_json(private_metadata or "")

    def dump(self) -> str:
        unset = {name for name in ("home", "shown") if not getattr(self, name)}
        return self.model_dump_json(exclude=unset or None)


# ---------------------------------------------------------------- building


def _modal_title(verb: str, handoff: Handoff) -> str:
    title = f"{verb} {handoff.ref}"
    return title if len(title) <= TITLE_LIMIT else f"{verb} handoff"


def _view(callback_id: str, verb: str, submit: str, handoff: Handoff, blocks: list[Block],
          context: ModalContext | None) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=callback_id,
        title=PlainTextObject(text=_modal_title(verb, handoff)),
        submit=PlainTextObject(text=submit),
        close=PlainTextObject(text="Cancel"),
        private_metadata=(context or ModalContext.of(handoff)).dump(),
        blocks=blocks,
    )
    return view.to_dict()


def _about(handoff: Handoff) -> Block:
    text = f"*{handoff.ref}* · {mrkdwn(handoff.title, 1000)}"
    return ContextBlock(elements=[MarkdownTextObject(text=text, verbatim=True)])


def _prefill(value: str | None, limit: int) -> str | None:
    """What an input can show of `value`: at most `limit` characters (the rest is kept, see `parse_edit`)."""
    return value[:limit] if value else None


def _text_input(name: str, current: str | None) -> InputBlock:
    block_id, label, limit, multiline, required = EDIT_TEXT_FIELDS[name]
    hint = None
    if current and len(current) > limit:
        hint = (f"Only the first {limit:,} of {len(current):,} characters are shown. Leave this field as it is "
                f"to keep the full text; anything you change here replaces all of it.")
    element = PlainTextInputElement(
        action_id=block_id, initial_value=_prefill(current, limit), multiline=multiline, max_length=limit
    )
    return InputBlock(block_id=block_id, label=label, element=element, hint=hint, optional=not required)


def _urgency_option(urgency: Urgency) -> Option:
    return Option(value=urgency.value, text=PlainTextObject(text=URGENCY_LABELS[urgency], emoji=True))


def _urgency_input(current: Urgency) -> InputBlock:
    element = StaticSelectElement(
        action_id=ids.EDIT_URGENCY,
        options=[_urgency_option(urgency) for urgency in Urgency],
        initial_option=_urgency_option(current),
    )
    return InputBlock(block_id=ids.EDIT_URGENCY, label="Urgency", element=element)


def _due_input(current: datetime | None) -> InputBlock:
    initial = int(_aware(current).timestamp()) if current else None
    element = DateTimePickerElement(action_id=ids.EDIT_DUE_AT, initial_date_time=initial)
    # Required once there is a due time: emptying the picker cannot mean anything a handoff can be.
    return InputBlock(block_id=ids.EDIT_DUE_AT, label="Due", element=element, optional=current is None)


def edit_modal(handoff: Handoff, *, context: ModalContext | None = None) -> dict[str, Any]:
    """The Edit modal, prefilled with the editable fields (SPEC §6); it remembers what it showed."""
    blocks: list[Block] = [_text_input(name, getattr(handoff, name)) for name in EDIT_TEXT_FIELDS]
    blocks.insert(2, _urgency_input(handoff.urgency))
    blocks.append(_due_input(handoff.due_at))
    context = (context or ModalContext.of(handoff)).model_copy(update={"shown": shown_in_edit(handoff)})
    return _view(ids.EDIT_MODAL, "Edit", "Save", handoff, blocks, context)


def shown_in_edit(handoff: Handoff) -> dict[str, str]:
    """A fingerprint of each value the Edit form shows for `handoff` (for long texts, of the part it shows)."""
    shown = {name: _text_print(_prefill(getattr(handoff, name), spec[2])) for name, spec in EDIT_TEXT_FIELDS.items()}
    shown["urgency"] = handoff.urgency.value
    shown["due_at"] = _due_print(handoff.due_at)
    return shown


def reject_modal(handoff: Handoff, *, context: ModalContext | None = None) -> dict[str, Any]:
    """The Reject modal: one required reason."""
    element = PlainTextInputElement(
        action_id=ids.REJECT_REASON, multiline=True, min_length=REASON_MIN, max_length=REASON_MAX,
        placeholder=PlainTextObject(text="Why is this rejected? The producer is told."),
    )
    reason = InputBlock(block_id=ids.REJECT_REASON, label="Reason", element=element)
    return _view(ids.REJECT_MODAL, "Reject", "Reject", handoff, [_about(handoff), reason], context)


def _outcome_option(outcome: str) -> Option:
    label = plain(outcome.replace("_", " "), 75) or outcome[:75]
    return Option(value=outcome, text=PlainTextObject(text=label))


def close_modal(handoff: Handoff, outcomes: list[str], *, context: ModalContext | None = None) -> dict[str, Any]:
    """The Close modal: a required outcome among the kind's outcomes, and an optional note."""
    choices = [outcome for outcome in outcomes if 0 < len(outcome) <= 150][:OPTION_LIMIT]
    select = StaticSelectElement(
        action_id=ids.CLOSE_OUTCOME,
        placeholder=PlainTextObject(text="Choose an outcome"),
        options=[_outcome_option(outcome) for outcome in choices],
        initial_option=_outcome_option(choices[0]) if len(choices) == 1 else None,
    )
    note = PlainTextInputElement(action_id=ids.CLOSE_NOTE, multiline=True, max_length=NOTE_MAX)
    blocks: list[Block] = [
        _about(handoff),
        InputBlock(block_id=ids.CLOSE_OUTCOME, label="Outcome", element=select),
        InputBlock(block_id=ids.CLOSE_NOTE, label="Note", element=note, optional=True),
    ]
    return _view(ids.CLOSE_MODAL, "Close", "Close", handoff, blocks, context)


# ---------------------------------------------------------------- parsing


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def field_state(values: Values, block_id: str) -> Mapping[str, Any]:
    return values.get(block_id, {}).get(block_id, {})


def submitted_text(values: Values, block_id: str) -> str | None:
    """A submitted text, stripped, with Windows line ends normalised; None when empty or absent."""
    value = field_state(values, block_id).get("value")
    if not isinstance(value, str):
        return None
    value = value.replace("\r\n", "\n").strip()
    return value or None


def selected_value(values: Values, block_id: str) -> str | None:
    option = field_state(values, block_id).get("selected_option")
    return option.get("value") if isinstance(option, Mapping) else None


def _text_print(text: str | None) -> str:
    """A short fingerprint of a text as an input shows and submits it (line ends and edge spaces aside)."""
    normalised = (text or "").replace("\r\n", "\n").strip()
    return hashlib.blake2s(normalised.encode(), digest_size=6).hexdigest()


def _due_print(due_at: datetime | None) -> str:
    return str(int(_aware(due_at).timestamp())) if due_at else ""


class _EditBaseline:
    """Decides, field by field, whether a submitted value is a change to make.

    With what the form showed (`shown`): a value left as shown is no change, whatever the field holds now (a
    text the input showed only the start of is kept whole), and a value changed both here and by someone else
    since the form opened is a conflict, told on its field. Without (a form opened before forms remembered
    it): a change is a value that differs from the handoff's now.
    """

    CONFLICT = ("Someone else changed this since you opened the form. Copy what you typed, then cancel and "
                "press Edit again to see the latest.")

    def __init__(self, shown: Mapping[str, str] | None) -> None:
        self.shown = shown
        self.conflicts: dict[str, str] = {}

    def changed(self, name: str, block_id: str, submitted: str, current: str) -> bool:
        if submitted == current:
            return False
        shown = self.shown.get(name) if self.shown is not None else None
        if shown is None:
            return True
        if submitted == shown:
            return False
        if current != shown:
            self.conflicts[block_id] = self.CONFLICT
            return False
        return True


def _changed_texts(values: Values, handoff: Handoff, baseline: _EditBaseline) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, (block_id, _label, limit, _multiline, _required) in EDIT_TEXT_FIELDS.items():
        if block_id not in values:
            continue
        submitted = submitted_text(values, block_id)
        current = _text_print(_prefill(getattr(handoff, name), limit))
        if baseline.changed(name, block_id, _text_print(submitted), current):
            changes[name] = submitted
    return changes


def _changed_urgency(values: Values, handoff: Handoff, baseline: _EditBaseline) -> dict[str, Any]:
    urgency = selected_value(values, ids.EDIT_URGENCY)
    if urgency is None or not baseline.changed("urgency", ids.EDIT_URGENCY, urgency, handoff.urgency.value):
        return {}
    return {"urgency": urgency}


def picked_time(values: Values, block_id: str) -> datetime | None:
    """A datetimepicker's choice; None when cleared or absent."""
    stamp = field_state(values, block_id).get("selected_date_time")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return None
    if not EARLIEST_DUE.timestamp() <= stamp <= LATEST_DUE.timestamp():
        raise ModalError({block_id: "Pick a date between the years 2000 and 2999."})
    return datetime.fromtimestamp(int(stamp), UTC)


def check_in_future(moment: datetime, now: datetime | None, block_id: str) -> None:
    """A due time a person picks must lie ahead: one in the past would make the handoff overdue at once."""
    if now is not None and moment <= now:
        raise ModalError({block_id: "Pick a time in the future."})


def _changed_due(values: Values, handoff: Handoff, baseline: _EditBaseline, now: datetime | None) -> dict[str, Any]:
    due_at = picked_time(values, ids.EDIT_DUE_AT)
    if due_at is None:
        if ids.EDIT_DUE_AT in values and handoff.due_at is not None:  # emptied (a form from before it was required)
            raise ModalError({ids.EDIT_DUE_AT: "Pick a due time: a handoff with one cannot go without."})
        return {}
    if not baseline.changed("due_at", ids.EDIT_DUE_AT, _due_print(due_at), _due_print(handoff.due_at)):
        return {}
    check_in_future(due_at, now, ids.EDIT_DUE_AT)
    return {"due_at": due_at}


def parse_edit(
    values: Values, handoff: Handoff, shown: Mapping[str, str] | None = None, *, now: datetime | None = None
) -> HandoffEdit:
    """The fields the person changed (`shown`: what the form showed, `ModalContext.shown`); raises ModalError
    when a value is invalid, a changed due time is not after `now`, or a value was changed meanwhile by someone
    else."""
    baseline = _EditBaseline(shown)
    changes = _changed_texts(values, handoff, baseline)
    changes.update(_changed_urgency(values, handoff, baseline))
    changes.update(_changed_due(values, handoff, baseline, now))
    if baseline.conflicts:
        raise ModalError(baseline.conflicts)
    emptied = [name for name, spec in EDIT_TEXT_FIELDS.items() if spec[4] and name in changes and not changes[name]]
    if emptied:
        raise ModalError({EDIT_TEXT_FIELDS[name][0]: "This field is required." for name in emptied})
    try:
        return HandoffEdit.model_validate(changes)
    except ValidationError as error:
        raise ModalError(field_errors(error, EDIT_BLOCKS, default_block=ids.EDIT_TITLE)) from None


def parse_reject(values: Values) -> str:
    """The rejection reason; raises ModalError when it is missing or too short."""
    reason = submitted_text(values, ids.REJECT_REASON)
    if reason is None or len(reason) < REASON_MIN:
        raise ModalError({ids.REJECT_REASON: f"Give a reason of at least {REASON_MIN} characters."})
    if len(reason) > REASON_MAX:
        raise ModalError({ids.REJECT_REASON: f"Keep it under {REASON_MAX:,} characters."})
    return reason


def parse_close(values: Values) -> tuple[str, str | None]:
    """(outcome, note); raises ModalError when no outcome was chosen or the note is too long."""
    outcome = selected_value(values, ids.CLOSE_OUTCOME)
    if not outcome:
        raise ModalError({ids.CLOSE_OUTCOME: "Choose an outcome."})
    note = submitted_text(values, ids.CLOSE_NOTE)
    if note is not None and len(note) > NOTE_MAX:
        raise ModalError({ids.CLOSE_NOTE: f"Keep it under {NOTE_MAX:,} characters."})
    return outcome, note


# ---------------------------------------------------------------- errors


def _message(text: str) -> str:
    return plain(text.removeprefix("Value error, "), ERROR_LIMIT) or "Check this field."


def field_errors(error: ValidationError, blocks: Mapping[str, str], *, default_block: str) -> dict[str, str]:
    """Map a pydantic ValidationError to {block_id: message}; the first problem per block wins."""
    errors: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        block = blocks.get(field, default_block)
        errors.setdefault(block, _message(problem["msg"]))
    return errors


def problem_errors(field: str | None, message: str, blocks: Mapping[str, str], *, default_block: str) -> dict[str, str]:
    """Map one domain problem (e.g. `Refused.details["field"]` and its reason) to {block_id: message}."""
    return {blocks.get(field or "", default_block): _message(message)}
