"""Reminder messages offer only what can work in the handoff's status."""

from __future__ import annotations

from typing import Any

import pytest

from bot import ids
from bot.blocks.lists import handoff_line
from bot.blocks.nudges import escalation_blocks, nudge_blocks, wrong_owner_text
from handoffs.model import Status
from tests.factories import NOW, make_handoff

PAYLOAD = {"reason": "overdue", "number": 1, "of": 3}


def action_ids(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


@pytest.mark.parametrize(("status", "owner", "expected"), [
    (Status.open, None, [ids.CLAIM, ids.NUDGE_SNOOZE_HOUR, ids.NUDGE_SNOOZE_TOMORROW, ids.STALL_BLOCKED,
                         ids.STALL_NEED_INFO]),
    (Status.claimed, "UANNA", [ids.NUDGE_SNOOZE_HOUR, ids.NUDGE_SNOOZE_TOMORROW, ids.STALL_BLOCKED,
                               ids.STALL_NEED_INFO, ids.STALL_WRONG_OWNER]),
    # approved: snooze is refused (SPEC §3: open, claimed) and so is release ("wrong owner" puts it back in the
    # queue); both buttons used to be offered, and "wrong owner" thanked and did nothing
    (Status.approved, "UANNA", [ids.STALL_BLOCKED, ids.STALL_NEED_INFO]),
    # approved from the review queue, nobody owns it: claim is refused too (SPEC §3: open only), it used to be offered
    (Status.approved, None, [ids.STALL_BLOCKED, ids.STALL_NEED_INFO]),
])
def test_a_reminder_offers_only_the_buttons_its_status_allows(status: Status, owner: str | None,
                                                               expected: list[str]) -> None:
    handoff = make_handoff(status=status, owner=owner, queue="CHANDOFFS" if owner is None else None)
    message = nudge_blocks(handoff, PAYLOAD, NOW, permalink=None)
    assert action_ids(message) == expected
    assert all(b["elements"] for b in message["blocks"] if b["type"] == "actions")  # Slack refuses an empty one


def test_the_open_card_button_comes_with_a_permalink() -> None:
    handoff = make_handoff(status=Status.approved, owner="UANNA")
    message = nudge_blocks(handoff, PAYLOAD, NOW, permalink="https://example.slack.com/archives/C1/p1")
    assert action_ids(message)[0] == ids.OPEN_CARD


MARKED_UP_TITLE = "R&D <ACME> renewal " + "t" * 126 + " R&D"  # 150 characters, the most a title may hold


def test_a_title_that_fits_is_shown_whole_in_reminders_and_lists() -> None:
    """The 150-character cap on a title is measured on the title as written: escaping `&` and `<` used to make
    it longer than 150 and cut its end ("… R…")."""
    handoff = make_handoff(title=MARKED_UP_TITLE, status=Status.claimed, owner="UANNA")
    escaped = "R&amp;D &lt;ACME&gt; renewal " + "t" * 126 + " R&amp;D"
    shown = [
        nudge_blocks(handoff, PAYLOAD, NOW, permalink=None)["blocks"][0]["text"]["text"],
        escalation_blocks(handoff, {}, NOW, permalink=None)["blocks"][0]["text"]["text"],
        wrong_owner_text(handoff, "UBEN"),
        handoff_line(handoff, NOW, team_domain=None).to_dict()["text"]["text"],
    ]
    for text in shown:
        assert f" {escaped}" in text and "…" not in text
