"""The App Home builder: a pure function of a Board, checked on its `to_dict()` output."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot import ids
from bot.blocks.home import HOME_BLOCK_LIMIT, home_view
from handoffs.config import HandoffConfig, parse_config
from handoffs.model import Handoff, Status, Urgency
from storage.board_queries import COUNT_CAP, Board, BoardList, Figures

NOW = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)
HOSTILE = "<!channel> @here <@U123> <!subteam^S1> <https://evil.test|bank.com>"
FORBIDDEN = ("<!channel>", "<@U123>", "<!subteam", "<https://evil.test|")
BARE_BROADCAST = re.compile(r"@(here|channel|everyone)", re.IGNORECASE)


@pytest.fixture
def config() -> HandoffConfig:
    return parse_config({
        "managers": ["UBOSS"],
        "routes": [{"name": "default", "channel": "CHANDOFFS", "approvers": ["ULEAD"]}],
    })


def handoff(id: int = 1, **overrides: Any) -> Handoff:
    values: dict[str, Any] = {
        "id": id, "title": f"Call ACME back #{id}", "next_action": "Phone Jane", "kind": "task",
        "status": Status.claimed, "urgency": Urgency.normal, "version": 1,
        "created_at": NOW - timedelta(hours=1), "updated_at": NOW - timedelta(hours=1),
        "owner": "UANNA", "route": "default", "channel": "CHANDOFFS", "card_ts": "1.1",
        "claim_by": NOW + timedelta(hours=3), "due_at": NOW + timedelta(days=3),
    }
    values.update(overrides)
    return Handoff(**values)


def board(user: str = "UANNA", *, manager: bool = False, assigned: list[Handoff] | None = None,
          awaiting: list[Handoff] | None = None, unclaimed: list[Handoff] | None = None,
          stalled: list[Handoff] | None = None, totals: dict[str, int] | None = None,
          queues: tuple[str, ...] = ("CHANDOFFS",), figures: Figures | None = None) -> Board:
    totals = totals or {}

    def rows(name: str, items: list[Handoff] | None) -> BoardList:
        items = items or []
        return BoardList(items, totals.get(name, len(items)))

    lists = {"assigned": rows("assigned", assigned), "awaiting": rows("awaiting", awaiting)}
    return Board(
        user=user, is_manager=manager, queues=queues, assigned=lists["assigned"], awaiting=lists["awaiting"],
        unclaimed=rows("unclaimed", unclaimed), stalled=rows("stalled", stalled) if manager else None,
        figures=figures or Figures(lists["assigned"].total, lists["awaiting"].total, 0, 0),
    )


def texts(view: dict[str, Any]) -> str:
    return json.dumps(view, ensure_ascii=False)


def section_texts(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "section" and "text" in b]


def buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_a_home_view_with_the_figures_first(config: HandoffConfig) -> None:
    view = home_view(board(figures=Figures(3, 2, 1, 7)), config, now=NOW, is_manager=False)
    assert view["type"] == "home"
    assert view["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Your handoffs",
                                                             "emoji": True}}
    fields = [field["text"] for field in view["blocks"][1]["fields"]]
    assert fields == ["*Open, assigned to you*\n3", "*Awaiting your approval*\n2", "*Yours, stalled*\n1",
                      "*Closed by you, last 7 days*\n7"]


def test_an_owner_sees_their_handoffs_with_a_close_button(config: HandoffConfig) -> None:
    mine = [handoff(5), handoff(4, status=Status.approved, due_at=NOW - timedelta(hours=2))]
    view = home_view(board(assigned=mine), config, now=NOW, is_manager=False)
    lines = section_texts(view)
    assert "📥 *Assigned to you* (2)" in lines
    assert any(line.startswith("🔵 *H-5* · Call ACME back #5\n<#CHANDOFFS> · claimed · due <!date^") for line in lines)
    assert any("*H-4*" in line and "⏰ *2h late*" in line for line in lines)
    assert buttons(view) == [(ids.CLOSE, "5"), (ids.CLOSE, "4")]
    assert "⏰ *Stalled*" not in texts(view)  # not a manager


def test_an_approver_sees_what_waits_for_them_with_approve_and_reject(config: HandoffConfig) -> None:
    waiting = handoff(7, requires_approval=True, approvers=["ULEAD"])
    view = home_view(board("ULEAD", awaiting=[waiting]), config, now=NOW, is_manager=False)
    assert "✅ *Awaiting your approval* (1)" in section_texts(view)
    assert any("*H-7*" in line and "<@UANNA>" in line and "needs approval" in line for line in section_texts(view))
    assert buttons(view) == [(ids.APPROVE, "7"), (ids.REJECT, "7")]
    [actions] = [b for b in view["blocks"] if b["type"] == "actions"]
    assert [e.get("style") for e in actions["elements"]] == ["primary", "danger"]


def test_unclaimed_work_in_my_queues_has_a_claim_button(config: HandoffConfig) -> None:
    open_one = handoff(9, status=Status.open, owner=None, queue="CHANDOFFS", claim_by=NOW - timedelta(minutes=30))
    view = home_view(board("UCARL", unclaimed=[open_one]), config, now=NOW, is_manager=False)
    assert any("*H-9*" in line and "_unclaimed_ · <#CHANDOFFS>" in line and "30m late" in line
               for line in section_texts(view))
    assert buttons(view) == [(ids.CLAIM, "9")]


def test_a_manager_sees_the_stalled_list_most_overdue_first(config: HandoffConfig) -> None:
    late = [handoff(3, due_at=NOW - timedelta(days=2)), handoff(8, due_at=NOW - timedelta(hours=1))]
    view = home_view(board("UBOSS", manager=True, stalled=late), config, now=NOW, is_manager=True)
    text = texts(view)
    assert "⏰ *Stalled* (2)" in section_texts(view)
    assert text.index("*H-3*") < text.index("*H-8*")
    assert (ids.CLOSE, "3") in buttons(view)  # managers may close


def test_an_empty_home_is_friendly(config: HandoffConfig) -> None:
    view = home_view(board("UNEW", queues=()), config, now=NOW, is_manager=False)
    text = texts(view)
    assert "Nothing assigned to you. 🎉" in text
    assert "Nothing waits for your approval." in text
    assert "You are in no queue yet" in text
    assert buttons(view) == []
    with_queue = texts(home_view(board("UNEW"), config, now=NOW, is_manager=False))
    assert "Nothing waits in your queues right now." in with_queue
    manager = texts(home_view(board("UBOSS", manager=True), config, now=NOW, is_manager=True))
    assert "Nothing is stalled. 👏" in manager


def test_only_the_buttons_the_viewer_may_use(config: HandoffConfig) -> None:
    someone_elses = handoff(11, owner="UBEN")  # UANNA may not close UBEN's handoff
    restricted = parse_config({"routes": [{"name": "default", "channel": "CHANDOFFS", "claimers": ["UBEN"]}]})
    open_one = handoff(12, status=Status.open, owner=None, queue="CHANDOFFS")
    assert buttons(home_view(board(awaiting=[someone_elses]), config, now=NOW, is_manager=False)) == []
    assert buttons(home_view(board(unclaimed=[open_one]), restricted, now=NOW, is_manager=False)) == []


def test_producer_text_never_pings_from_the_home(config: HandoffConfig) -> None:
    evil = handoff(13, title=HOSTILE, status=Status.open, owner=None, queue="S0GROUP")
    view = home_view(board(assigned=[handoff(14, title=HOSTILE)], unclaimed=[evil], stalled=[evil], manager=True),
                     config, now=NOW, is_manager=True)
    text = texts(view)
    for forbidden in FORBIDDEN:
        assert forbidden not in text
    assert not BARE_BROADCAST.search(text)
    assert "&lt;!channel&gt;" in text
    assert "queue S0GROUP" in text and "<!subteam^S0GROUP" not in text


def test_a_title_full_of_ampersands_is_shown_whole(config: HandoffConfig) -> None:
    title = "R&D " * 37 + "Go"  # 150 characters, 300 once escaped
    view = home_view(board(assigned=[handoff(1, title=title)]), config, now=NOW, is_manager=False)
    assert any(f"· {'R&amp;D ' * 37}Go\n" in text for text in section_texts(view))


def test_five_hundred_assigned_stay_within_a_hundred_blocks(config: HandoffConfig) -> None:
    many = [handoff(n, requires_approval=True, approvers=["UANNA"], status=Status.open, owner=None,
                    queue="CHANDOFFS") for n in range(500, 0, -1)]
    view = home_view(board(assigned=many, awaiting=many, unclaimed=many, stalled=many, manager=True),
                     config, now=NOW, is_manager=True)
    assert len(view["blocks"]) <= HOME_BLOCK_LIMIT
    more = [e["text"] for b in view["blocks"] if b["type"] == "context" for e in b["elements"]
            if "more_" in e["text"]]
    assert len(more) == 4
    assert more[0].startswith("_…and 49") and "more_" in more[0]
    assert "/handoff mine" in more[0]


def test_capped_counts_read_as_a_floor(config: HandoffConfig) -> None:
    ten = [handoff(n) for n in range(1, 11)]
    view = home_view(board(assigned=ten, totals={"assigned": COUNT_CAP + 1},
                           figures=Figures(COUNT_CAP + 1, 0, 0, 0)), config, now=NOW, is_manager=False)
    text = texts(view)
    assert f"*Open, assigned to you*\\n{COUNT_CAP}+" in text
    assert f"📥 *Assigned to you* ({COUNT_CAP}+)" in section_texts(view)
    assert f"_…and {COUNT_CAP + 1 - 10}+ more_" in text
