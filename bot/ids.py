"""Every Slack id in one place: the builders and the listeners share these constants."""

from __future__ import annotations

from typing import Final

# Card buttons (part of the contract: SPEC §6; each button's value is the handoff's numeric id)
CLAIM: Final = "handoff_claim"
APPROVE: Final = "handoff_approve"
EDIT: Final = "handoff_edit"
REJECT: Final = "handoff_reject"
CLOSE: Final = "handoff_close"
# Secondary card actions (overflow menu / user picker)
MORE: Final = "handoff_more"  # overflow: release, snooze 1h, snooze until tomorrow
REASSIGN: Final = "handoff_reassign"  # users_select

# Overflow option values: "<verb>:<handoff id>"
MORE_RELEASE: Final = "release"
MORE_SNOOZE_HOUR: Final = "snooze_1h"
MORE_SNOOZE_TOMORROW: Final = "snooze_tomorrow"

# Modals (callback ids)
EDIT_MODAL: Final = "handoff_edit_modal"
REJECT_MODAL: Final = "handoff_reject_modal"
CLOSE_MODAL: Final = "handoff_close_modal"

# Modal blocks and their inputs: block_id == action_id, so errors can name the block
EDIT_TITLE: Final = "edit_title"
EDIT_NEXT_ACTION: Final = "edit_next_action"
EDIT_SUMMARY: Final = "edit_summary"
EDIT_DRAFT: Final = "edit_draft"
EDIT_DEFINITION_OF_DONE: Final = "edit_definition_of_done"
EDIT_URGENCY: Final = "edit_urgency"
REJECT_REASON: Final = "reject_reason"
CLOSE_OUTCOME: Final = "close_outcome"
CLOSE_NOTE: Final = "close_note"

# Card blocks
CARD_ACTIONS_BLOCK: Final = "handoff_actions"

# Slash command, shortcuts
SLASH_COMMAND: Final = "/handoff"
MESSAGE_SHORTCUT: Final = "handoff_from_message"
GLOBAL_SHORTCUT: Final = "handoff_new"

# Edit modal: the due date picker (block_id == action_id)
EDIT_DUE_AT: Final = "edit_due_at"

# /handoff answers and boards
LIST_PAGE: Final = "handoff_list_page"  # "More" under a long list; value: JSON {query, offset}
NUDGE: Final = "handoff_nudge"  # a manager's per-line nudge in /handoff stalled; value: handoff id
OPEN_CARD: Final = "handoff_open_card"  # a link button to the card (url button; acked and ignored)

# The SLA sweep's nudge message (value: handoff id)
NUDGE_SNOOZE_HOUR: Final = "handoff_nudge_snooze_1h"
NUDGE_SNOOZE_TOMORROW: Final = "handoff_nudge_snooze_tomorrow"
STALL_BLOCKED: Final = "handoff_stall_blocked"
STALL_NEED_INFO: Final = "handoff_stall_need_info"
STALL_WRONG_OWNER: Final = "handoff_stall_wrong_owner"
NUDGE_ACTIONS_BLOCK: Final = "handoff_nudge_actions"
STALL_REASONS_BLOCK: Final = "handoff_stall_reasons"

# New-handoff modal (global shortcut, message shortcut, /handoff new)
NEW_MODAL: Final = "handoff_new_modal"
NEW_TITLE: Final = "new_title"
NEW_NEXT_ACTION: Final = "new_next_action"
NEW_KIND: Final = "new_kind"
NEW_URGENCY: Final = "new_urgency"
NEW_SUMMARY: Final = "new_summary"
NEW_OWNER: Final = "new_owner"
NEW_DUE_AT: Final = "new_due_at"
