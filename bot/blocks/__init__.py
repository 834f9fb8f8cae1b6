"""Pure Block Kit builders: a handoff in, `to_dict()` output out (no Slack calls, no database)."""

from bot.blocks.card import card_blocks, card_message, card_text, thread_reply_text
from bot.blocks.modals import (
    ModalContext,
    ModalError,
    close_modal,
    edit_modal,
    field_errors,
    parse_close,
    parse_edit,
    parse_reject,
    problem_errors,
    reject_modal,
)

__all__ = [
    "ModalContext",
    "ModalError",
    "card_blocks",
    "card_message",
    "card_text",
    "close_modal",
    "edit_modal",
    "field_errors",
    "parse_close",
    "parse_edit",
    "parse_reject",
    "problem_errors",
    "reject_modal",
    "thread_reply_text",
]
