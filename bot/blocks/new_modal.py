"""The New handoff modal (global shortcut, message shortcut, `/handoff new`) and the parser of its submission.

Each input's block_id equals its action_id (`bot.ids.NEW_*`), so a problem is shown inline on its field.
`private_metadata` carries only where the handoff comes from: the message's permalink, channel and ts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
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
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot import ids
from bot.blocks.modals import (
    ERROR_LIMIT,
    INPUT_LIMIT,
    OPTION_LIMIT,
    URGENCY_LABELS,
    ModalError,
    Values,
    check_in_future,
    field_errors,
    field_state,
    picked_time,
    selected_value,
    submitted_text,
)
from bot.text import channel_link, mrkdwn, plain, safe_link, truncate
from handoffs.config import HandoffConfig
from handoffs.intake import FieldError
from handoffs.model import Handoff, HandoffIn, Urgency

TITLE_MAX = 150
NEXT_ACTION_MAX = 500
DEFAULT_KIND = "task"
SOURCE_SYSTEM = "slack"
SOURCE_LABEL = "Slack message"

# Where a problem with a field of HandoffIn is shown; anything the form cannot set sits by the kind.
NEW_BLOCKS: dict[str, str] = {
    "title": ids.NEW_TITLE,
    "next_action": ids.NEW_NEXT_ACTION,
    "kind": ids.NEW_KIND,
    "facts": ids.NEW_KIND,
    "intent": ids.NEW_KIND,
    "urgency": ids.NEW_URGENCY,
    "summary": ids.NEW_SUMMARY,
    "owner": ids.NEW_OWNER,
    "due_at": ids.NEW_DUE_AT,
    "source": ids.NEW_TITLE,
}


class NewModalSource(BaseModel):
    """What the New handoff modal carries in `private_metadata`: the source message, if any."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str | None = None
    channel: str | None = None
    ts: str | None = None

    @classmethod
    def parse(cls, private_metadata: str | None) -> NewModalSource:
        """Empty metadata is a modal opened without a message; raises ValueError when it is not ours."""
        return cls.model_validate_json(private_metadata) if private_metadata else cls()

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @property
    def message(self) -> tuple[str, str] | None:
        """(channel, ts) of the source message, when there is one."""
        return (self.channel, self.ts) if self.channel and self.ts else None


# ---------------------------------------------------------------- building


def _text_input(block_id: str, label: str, limit: int, *, initial: str | None = None, multiline: bool = False,
                optional: bool = False, placeholder: str | None = None) -> InputBlock:
    element = PlainTextInputElement(
        action_id=block_id, initial_value=truncate(initial, limit) if initial else None, multiline=multiline,
        max_length=limit, placeholder=PlainTextObject(text=placeholder) if placeholder else None,
    )
    return InputBlock(block_id=block_id, label=label, element=element, optional=optional)


def _kind_option(name: str, config: HandoffConfig) -> Option:
    kind = config.kinds[name]
    label = plain(kind.label or name.replace("_", " ").capitalize(), 75) or name[:75]
    return Option(value=name, text=PlainTextObject(text=label))


def _kind_input(config: HandoffConfig) -> InputBlock:
    names = [name for name in config.kinds if 0 < len(name) <= 150][:OPTION_LIMIT]
    initial = DEFAULT_KIND if DEFAULT_KIND in names else names[0]
    element = StaticSelectElement(
        action_id=ids.NEW_KIND,
        options=[_kind_option(name, config) for name in names],
        initial_option=_kind_option(initial, config),
    )
    return InputBlock(block_id=ids.NEW_KIND, label="Kind", element=element)


def _urgency_option(urgency: Urgency) -> Option:
    return Option(value=urgency.value, text=PlainTextObject(text=URGENCY_LABELS[urgency], emoji=True))


def _urgency_input() -> InputBlock:
    element = StaticSelectElement(
        action_id=ids.NEW_URGENCY,
        options=[_urgency_option(urgency) for urgency in Urgency],
        initial_option=_urgency_option(Urgency.normal),
    )
    return InputBlock(block_id=ids.NEW_URGENCY, label="Urgency", element=element)


def new_handoff_modal(
    config: HandoffConfig,
    *,
    title: str | None = None,
    summary: str | None = None,
    source_url: str | None = None,
    source_channel: str | None = None,
    source_ts: str | None = None,
) -> dict[str, Any]:
    """The New handoff modal, optionally prefilled (title, summary) and tied to a source message."""
    source = NewModalSource(url=source_url, channel=source_channel, ts=source_ts)
    blocks: list[Block] = []
    if source_url or source.message:
        where = safe_link(source_url, SOURCE_LABEL) if source_url else SOURCE_LABEL
        if source_channel:
            where += f" in {channel_link(source_channel)}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"From a {where}", verbatim=True)]))
    blocks += [
        _text_input(ids.NEW_TITLE, "Title", TITLE_MAX, initial=title, placeholder="One sentence: what this is"),
        _text_input(ids.NEW_NEXT_ACTION, "Next action", NEXT_ACTION_MAX,
                    placeholder="The exact next step wanted"),
        _kind_input(config),
        _urgency_input(),
        _text_input(ids.NEW_SUMMARY, "Summary", INPUT_LIMIT, initial=summary, multiline=True, optional=True),
        InputBlock(block_id=ids.NEW_OWNER, label="Owner", optional=True,
                   element=UserSelectElement(action_id=ids.NEW_OWNER),
                   hint="Leave empty to let routing decide."),
        InputBlock(block_id=ids.NEW_DUE_AT, label="Due", optional=True,
                   element=DateTimePickerElement(action_id=ids.NEW_DUE_AT),
                   hint="Leave empty to use the SLA of its urgency."),
    ]
    view = View(
        type="modal",
        callback_id=ids.NEW_MODAL,
        title=PlainTextObject(text="New handoff"),
        submit=PlainTextObject(text="Create"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=source.dump(),
        blocks=blocks,
    )
    return view.to_dict()


def created_modal(handoff: Handoff, *, duplicate: bool = False) -> dict[str, Any]:
    """What the modal turns into after a successful submit: where the card is."""
    where = f" Its card is in {channel_link(handoff.channel)}." if handoff.channel else ""
    if duplicate:
        text = f"This is already tracked as *{handoff.ref}* · {mrkdwn(handoff.title, 1000)}.{where}"
    else:
        text = f"✅ *{handoff.ref}* created · {mrkdwn(handoff.title, 1000)}.{where}"
    view = View(
        type="modal",
        callback_id=f"{ids.NEW_MODAL}_done",
        title=PlainTextObject(text="New handoff"),
        close=PlainTextObject(text="Done"),
        blocks=[ContextBlock(elements=[MarkdownTextObject(text=truncate(text, 3000), verbatim=True)])],
    )
    return view.to_dict()


# ---------------------------------------------------------------- parsing


def parse_new_handoff(values: Values, source: NewModalSource, *, now: datetime | None = None) -> HandoffIn:
    """The submitted handoff; raises ModalError (ready for `ack(response_action="errors")`) when invalid, or
    when its due time is not after `now`."""
    title, next_action = submitted_text(values, ids.NEW_TITLE), submitted_text(values, ids.NEW_NEXT_ACTION)
    missing = {block: "This field is required." for block, value in
               ((ids.NEW_TITLE, title), (ids.NEW_NEXT_ACTION, next_action)) if value is None}
    if missing:
        raise ModalError(missing)
    due_at = picked_time(values, ids.NEW_DUE_AT)
    if due_at is not None:
        check_in_future(due_at, now, ids.NEW_DUE_AT)
    fields: dict[str, Any] = {
        "title": title,
        "next_action": next_action,
        "kind": selected_value(values, ids.NEW_KIND) or DEFAULT_KIND,
        "urgency": selected_value(values, ids.NEW_URGENCY) or Urgency.normal.value,
        "summary": submitted_text(values, ids.NEW_SUMMARY),
        "owner": field_state(values, ids.NEW_OWNER).get("selected_user") or None,
        "due_at": due_at,
    }
    if source.url:
        fields["source"] = {"system": SOURCE_SYSTEM, "url": source.url, "label": SOURCE_LABEL}
    try:
        return HandoffIn.model_validate(fields)
    except ValidationError as error:
        raise ModalError(field_errors(error, NEW_BLOCKS, default_block=ids.NEW_TITLE)) from None


def intake_errors(problems: list[FieldError], kind: str) -> dict[str, str]:
    """Map the intake's kind and routing problems onto the form; what it cannot fill sits by the kind."""
    errors: dict[str, str] = {}
    needs: list[str] = []
    for problem in problems:
        field = str(problem.loc[0]) if problem.loc else ""
        if field == "facts" and len(problem.loc) > 1:
            needs.append(f"the fact {problem.loc[1]!s}")
        elif field == "intent":
            needs.append("an intent")
        else:
            errors.setdefault(NEW_BLOCKS.get(field, ids.NEW_TITLE), plain(problem.msg, ERROR_LIMIT) or "Check this.")
    if needs:
        listed = ", ".join(needs[:-1]) + (" and " if len(needs) > 1 else "") + needs[-1]
        message = (f"A {kind} handoff needs {listed}, which this form cannot fill in: choose another kind, "
                   f"or send it through the API or an intake channel.")
        errors.setdefault(ids.NEW_KIND, plain(message, ERROR_LIMIT))
    return errors
