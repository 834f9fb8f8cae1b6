from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot import ids
from bot.blocks.card import CARD_TEXT_BUDGET, card_blocks, card_message, card_text, thread_reply_text
from bot.text import ELLIPSIS, WORD_JOINER
from handoffs.config import HandoffConfig, parse_config
from handoffs.model import Handoff, Status, Urgency

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<!channel> <!here> @here <@U123> <!subteam^S1> <https://evil.test|bank.com>"
FORBIDDEN = ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<!subteam", "<https://evil.test|")
CARD_BUTTONS = {ids.CLAIM, ids.APPROVE, ids.EDIT, ids.REJECT, ids.CLOSE}


@pytest.fixture
def config() -> HandoffConfig:
    return parse_config({"routes": [{"name": "default", "channel": "C0HANDOFFS"}]})


def make_handoff(**overrides: Any) -> Handoff:
    values: dict[str, Any] = {
        "id": 42,
        "title": "Call ACME back",
        "next_action": "Phone Jane about the renewal",
        "kind": "lead",
        "status": Status.open,
        "urgency": Urgency.normal,
        "version": 1,
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW - timedelta(hours=1),
        "queue": "C0HANDOFFS",
        "channel": "C0HANDOFFS",
        "card_ts": "1714560000.000100",
        "claim_by": NOW + timedelta(hours=3),
        "due_at": NOW + timedelta(days=3),
    }
    values.update(overrides)
    return Handoff(**values)


def hostile_handoff(**overrides: Any) -> Handoff:
    lists = [HOSTILE, "second " + HOSTILE]
    values: dict[str, Any] = {
        "title": HOSTILE,
        "next_action": HOSTILE,
        "summary": HOSTILE,
        "facts": {HOSTILE: HOSTILE, "company": HOSTILE},
        "draft": HOSTILE + "\n" + HOSTILE,
        "intent": HOSTILE,
        "missing_info": lists,
        "risk_flags": lists,
        "already_done": lists,
        "constraints": lists,
        "decisions": lists,
        "definition_of_done": HOSTILE,
        "created_by": HOSTILE,
        "source_system": HOSTILE,
        "source_label": HOSTILE,
        "source_url": "https://crm.example.com/deal/1",
        "review_reasons": [HOSTILE],
        "requires_approval": True,
        "outcome": HOSTILE,
        "outcome_note": HOSTILE,
        "queue": HOSTILE,
        "owner": HOSTILE,
        "approvers": [HOSTILE],
    }
    values.update(overrides)
    return make_handoff(**values)


def assert_inert(dumped: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in dumped, needle
    for word in ("@here", "@channel", "@everyone"):
        assert word not in dumped.lower(), word


def actions_block(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = [block for block in blocks if str(block.get("block_id")).partition(":")[0] == ids.CARD_ACTIONS_BLOCK]
    assert len(found) <= 1
    return found[0] if found else None


def button_ids(blocks: list[dict[str, Any]]) -> list[str]:
    actions = actions_block(blocks)
    if actions is None:
        return []
    return [element["action_id"] for element in actions["elements"] if element["type"] == "button"]


def overflow_values(blocks: list[dict[str, Any]]) -> list[str]:
    actions = actions_block(blocks)
    assert actions is not None
    menus = [element for element in actions["elements"] if element["type"] == "overflow"]
    return [option["value"] for option in menus[0]["options"]] if menus else []


def all_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# ---------------------------------------------------------------- untrusted text


@pytest.mark.parametrize("status", list(Status))
def test_hostile_text_in_every_field_is_inert(status: Status, config: HandoffConfig) -> None:
    handoff = hostile_handoff(status=status)
    message = card_message(handoff, config, now=NOW)
    assert set(message) == {"text", "blocks"}
    for dumped in (json.dumps(message), json.dumps(message, ensure_ascii=False)):
        assert_inert(dumped)
    assert_inert(message["text"])
    assert "H-42 · &lt;!channel&gt;" in message["text"]


def test_hostile_text_still_visible_escaped(config: HandoffConfig) -> None:
    dumped = all_text(card_blocks(hostile_handoff(), config, now=NOW))
    assert "&lt;!channel&gt;" in dumped
    assert f"@{WORD_JOINER}here" in dumped
    assert "&lt;https://evil.test|bank.com&gt;" in dumped


def test_all_mrkdwn_is_verbatim(config: HandoffConfig) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                assert node.get("verbatim") is True, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card_blocks(hostile_handoff(), config, now=NOW))


def test_message_has_no_link_names(config: HandoffConfig) -> None:
    message = card_message(make_handoff(), config, now=NOW)
    assert "link_names" not in message
    assert "parse" not in message


def test_user_group_queue_is_never_pinged(config: HandoffConfig) -> None:
    dumped = all_text(card_blocks(make_handoff(queue="S0SALES"), config, now=NOW))
    assert "<!subteam" not in dumped
    assert "queue S0SALES" in dumped


def test_channel_queue_is_linked(config: HandoffConfig) -> None:
    dumped = all_text(card_blocks(make_handoff(), config, now=NOW))
    assert "<#C0HANDOFFS>" in dumped


def test_trusted_owner_is_a_mention(config: HandoffConfig) -> None:
    blocks = card_blocks(make_handoff(status=Status.claimed, owner="U0ANNA"), config, now=NOW)
    assert "<@U0ANNA>" in all_text(blocks)


def test_source_link_is_safe(config: HandoffConfig) -> None:
    handoff = make_handoff(source_url="https://evil.test/x", source_label="bank.com")
    dumped = all_text(card_blocks(handoff, config, now=NOW))
    assert "<https://evil.test/x|bank.com (evil.test)>" in dumped


# ---------------------------------------------------------------- layout and limits


def test_order_follows_the_spec(config: HandoffConfig) -> None:
    handoff = make_handoff(
        urgency=Urgency.urgent, summary="SUMMARY", facts={"company": "FACTVALUE"}, requires_approval=True,
        review_reasons=["confidence 0.42 is below 0.70", "2 risk flag(s)"], missing_info=["MISSING"],
        risk_flags=["RISK"], already_done=["DONE"], constraints=["CONSTRAINT"], draft="DRAFT",
        source_url="https://crm.example.com/1", source_label="CRM", created_by="lead-bot", confidence=0.42,
    )
    blocks = card_blocks(handoff, config, now=NOW)
    assert blocks[0]["type"] == "context"
    assert "🔴" in blocks[0]["elements"][0]["text"] and "URGENT" in blocks[0]["elements"][0]["text"]
    assert "Lead" in blocks[0]["elements"][0]["text"]
    assert blocks[1] == {"type": "header", "text": {"type": "plain_text", "text": "Call ACME back", "emoji": True}}
    context = " ".join(element["text"] for element in blocks[2]["elements"])
    for part in ("*H-42*", "<https://crm.example.com/1|CRM (crm.example.com)>", "lead-bot", "42%", "<!date^"):
        assert part in context
    dumped = [json.dumps(block, ensure_ascii=False) for block in blocks]
    markers = ["SUMMARY", "FACTVALUE", "Next action", "Needs approval*:", "MISSING", "RISK", "DONE", "CONSTRAINT",
               "DRAFT", ids.CARD_ACTIONS_BLOCK]
    positions = [next(i for i, text in enumerate(dumped) if marker in text) for marker in markers]
    assert positions == sorted(positions)


def test_review_banner_names_the_reasons(config: HandoffConfig) -> None:
    handoff = make_handoff(requires_approval=True, review_reasons=["confidence 0.42 is below 0.70", "2 risk flags"])
    dumped = all_text(card_blocks(handoff, config, now=NOW))
    assert "⚠️ *Needs approval*: confidence 0.42 is below 0.70; 2 risk flags" in dumped
    assert "⚠️" in card_text(handoff)


def test_no_review_banner_once_approved(config: HandoffConfig) -> None:
    handoff = make_handoff(status=Status.approved, owner="U0ANNA", requires_approval=True,
                           review_reasons=["x"], approved_at=NOW)
    assert "Needs approval" not in all_text(card_blocks(handoff, config, now=NOW))


def test_due_uses_slack_date_tokens(config: HandoffConfig) -> None:
    due = NOW + timedelta(days=1)
    dumped = all_text(card_blocks(make_handoff(due_at=due), config, now=NOW))
    assert f"<!date^{int(due.timestamp())}^{{date_short_pretty}} {{time}}|" in dumped


def test_overdue_is_flagged(config: HandoffConfig) -> None:
    handoff = make_handoff(status=Status.claimed, owner="U0ANNA", due_at=NOW - timedelta(hours=1))
    assert "overdue" in all_text(card_blocks(handoff, config, now=NOW))


def test_long_texts_are_cut_and_valid(config: HandoffConfig) -> None:
    handoff = make_handoff(
        title="&<" * 75,
        summary="s&" * 2500,
        draft="d" * 10_000,
        next_action="n<" * 250,
        definition_of_done="&" * 500,
        facts={f"key{i}": "v&" * 1000 for i in range(30)},
        missing_info=["m&" * 500] * 20,
        risk_flags=["r<" * 500] * 20,
        already_done=["a" * 1000] * 20,
        constraints=["c>" * 500] * 20,
        decisions=["d" * 1000] * 20,
        requires_approval=True,
        review_reasons=["x&" * 1000],
        source_url="https://crm.example.com/" + "a&" * 900,
        source_label="l&" * 75,
        created_by="c&" * 40,
        approvers=[f"U0APPROVER{i}" for i in range(20)],
    )
    for status in Status:
        handoff.status = status
        handoff.owner = None if status is Status.open else "U0ANNA"
        handoff.outcome_note = "o&" * 1000
        blocks = card_blocks(handoff, config, now=NOW)  # to_dict() validated every limit
        assert len(blocks) <= 50
        for block in blocks:
            if block["type"] == "section":
                assert len(block.get("text", {}).get("text", "")) <= 3000
                assert len(block.get("fields", [])) <= 10
                assert all(len(field["text"]) <= 2000 for field in block.get("fields", []))
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= 150
            if block["type"] == "context":
                assert len(block["elements"]) <= 10
            if block["type"] == "actions":
                assert len(block["elements"]) <= 25
    dumped = all_text(card_blocks(handoff, config, now=NOW))
    assert ELLIPSIS in dumped
    assert "more_" in dumped  # lists over the section limit say how many were left out
    assert len(card_text(handoff)) <= 300


@pytest.mark.parametrize("title", ["Renewal: " + "x" * 129 + " <ACME> deal", "Tell @here " + "y" * 139])
def test_a_title_that_fits_the_header_is_shown_whole(title: str, config: HandoffConfig) -> None:
    [header] = [block for block in card_blocks(make_handoff(title=title), config, now=NOW)
                if block["type"] == "header"]
    assert len(header["text"]["text"]) == 150
    assert header["text"]["text"].endswith(title[-10:])


INVISIBLE = "\u202e\u200f"  # bidi controls only: the card drops them, which leaves nothing


def assert_no_empty_text(blocks: list[dict[str, Any]]) -> None:
    """Slack refuses a section with no text (and no fields) or an empty context element: `invalid_blocks`."""
    for block in blocks:
        if block["type"] == "section":
            texts = [block.get("text", {}).get("text", ""), *(field["text"] for field in block.get("fields", []))]
            assert any(text.strip() for text in texts), block
        if block["type"] == "context":
            assert all(element.get("text", "").strip() for element in block["elements"]), block


@pytest.mark.parametrize("status", [Status.open, Status.closed])
def test_text_that_cleans_to_nothing_is_left_out(status: Status, config: HandoffConfig) -> None:
    handoff = make_handoff(
        status=status, owner="U0ANNA", outcome="done", outcome_note=INVISIBLE, summary=INVISIBLE, draft=INVISIBLE,
        definition_of_done=INVISIBLE, created_by=INVISIBLE, intent=INVISIBLE, source_system=INVISIBLE,
    )
    blocks = card_blocks(handoff, config, now=NOW)
    assert_no_empty_text(blocks)
    shown = all_text(blocks)
    for absent in ("*Draft*", "*Done when*", "by ", "intent:", "🔗", "*Note:*"):
        assert absent not in shown, absent
    assert [block["type"] for block in blocks][:4] == ["context", "header", "context", "section"]
    assert "fields" in blocks[3]  # the summary section is left out: owner, status and next action come next


def text_length(node: Any) -> int:
    """The characters of text in blocks, as Slack counts them against a message's total."""
    if isinstance(node, dict):
        return sum(len(v) if k == "text" and isinstance(v, str) else text_length(v) for k, v in node.items())
    if isinstance(node, list):
        return sum(text_length(item) for item in node)
    return 0


def words(length: int) -> str:
    return ("lorem ipsum dolor sit amet " * (length // 27 + 1))[:length]


def largest_handoff(**overrides: Any) -> Handoff:
    """Every field at the most the intake API accepts (SPEC §2)."""
    values: dict[str, Any] = {
        "title": words(150), "next_action": words(500), "summary": words(5000), "draft": words(10_000),
        "definition_of_done": words(500), "facts": {f"fact {i}": words(2000) for i in range(30)},
        **{name: [words(1000)] * 20 for name in ("missing_info", "risk_flags", "already_done", "constraints",
                                                  "decisions")},
        "requires_approval": True, "review_reasons": ["20 missing item(s)", "20 risk flag(s)"],
        "created_by": words(80), "source_url": "https://crm.example.com/deal/1", "source_label": words(150),
        "approvers": [f"U0APPROVER{i}" for i in range(20)],
    }
    values.update(overrides)
    return make_handoff(**values)


@pytest.mark.parametrize("status", list(Status))
def test_the_whole_card_stays_within_slacks_total_block_text(status: Status, config: HandoffConfig) -> None:
    """Slack refuses a message whose blocks hold more than ~12,000 characters of text in all
    (msg_blocks_too_long), whatever each block holds: the biggest parts are cut first, each with "…"."""
    handoff = largest_handoff(status=status, owner=None if status is Status.open else "U0ANNA",
                              outcome="done", outcome_note=words(2000))
    blocks = card_blocks(handoff, config, now=NOW)
    assert text_length(blocks) <= CARD_TEXT_BUDGET
    texts = [block["text"]["text"] for block in blocks if block["type"] == "section" and "text" in block]
    draft = next(text for text in texts if "*Draft*" in text)
    summary = next(text for text in texts if text.startswith("lorem"))
    assert draft.endswith(ELLIPSIS) and summary.endswith(ELLIPSIS)
    for heading in ("*Key facts*", "*Missing info*", "*Risks*", "*Already done*", "*Constraints*", "*Decided*"):
        [listed] = [text for text in texts if heading in text]
        assert "\n• " in listed and listed.endswith("more_"), heading  # still shows items, then how many
    assert len(blocks) == len(card_blocks(make_handoff(**{**handoff.__dict__, "draft": "d"}), config, now=NOW))


def test_a_card_that_fits_is_not_cut(config: HandoffConfig) -> None:
    handoff = largest_handoff(draft=words(2500), summary=words(2000), facts={}, missing_info=[], risk_flags=[],
                              already_done=[], constraints=[], decisions=[])
    blocks = card_blocks(handoff, config, now=NOW)
    assert ELLIPSIS not in all_text(blocks).replace("Reassign…", "")
    assert text_length(blocks) <= CARD_TEXT_BUDGET


def test_a_smaller_budget_leaves_room_for_what_is_added(config: HandoffConfig) -> None:
    blocks = card_blocks(largest_handoff(), config, now=NOW, text_budget=8000)
    assert text_length(blocks) <= 8000


def test_long_draft_is_cut_with_ellipsis(config: HandoffConfig) -> None:
    blocks = card_blocks(make_handoff(draft="d" * 10_000, summary="s" * 5_000), config, now=NOW)
    draft = next(block for block in blocks if "*Draft*" in block.get("text", {}).get("text", ""))
    assert draft["text"]["text"].endswith(ELLIPSIS)
    assert len(draft["text"]["text"]) <= 3000
    summary = next(block for block in blocks if block.get("text", {}).get("text", "").startswith("sss"))
    assert summary["text"]["text"].endswith(ELLIPSIS)


def test_card_text_is_short_and_safe() -> None:
    assert card_text(make_handoff()) == "H-42 · Call ACME back"
    assert card_text(make_handoff(title="A & B <x>")) == "H-42 · A &amp; B &lt;x&gt;"
    assert card_text(make_handoff(urgency=Urgency.urgent)).startswith("🔴 ")


# ---------------------------------------------------------------- buttons per status


def test_open_card_offers_claim_and_edit(config: HandoffConfig) -> None:
    blocks = card_blocks(make_handoff(), config, now=NOW)
    assert button_ids(blocks) == [ids.CLAIM, ids.EDIT]
    assert overflow_values(blocks) == [f"{ids.MORE_SNOOZE_HOUR}:42", f"{ids.MORE_SNOOZE_TOMORROW}:42"]


def test_open_review_card_offers_approve_and_reject(config: HandoffConfig) -> None:
    blocks = card_blocks(make_handoff(requires_approval=True, review_reasons=["x"]), config, now=NOW)
    assert button_ids(blocks) == [ids.CLAIM, ids.APPROVE, ids.EDIT, ids.REJECT]


def test_claimed_card(config: HandoffConfig) -> None:
    blocks = card_blocks(make_handoff(status=Status.claimed, owner="U0ANNA"), config, now=NOW)
    assert button_ids(blocks) == [ids.EDIT, ids.REJECT, ids.CLOSE]
    assert overflow_values(blocks) == [
        f"{ids.MORE_RELEASE}:42", f"{ids.MORE_SNOOZE_HOUR}:42", f"{ids.MORE_SNOOZE_TOMORROW}:42"
    ]


@pytest.mark.parametrize("extra", [{"requires_approval": True}, {"approvers": ["U0LEAD"]}])
def test_claimed_card_needing_approval(extra: dict[str, Any], config: HandoffConfig) -> None:
    """A task may still be closed as no_action or duplicate before its approval: Close stays."""
    blocks = card_blocks(make_handoff(kind="task", status=Status.claimed, owner="U0ANNA", **extra), config, now=NOW)
    assert button_ids(blocks) == [ids.APPROVE, ids.EDIT, ids.REJECT, ids.CLOSE]


def test_no_close_button_while_no_outcome_may_close_it() -> None:
    """A kind whose every outcome completes it, awaiting a required approval: Close appears once approved."""
    leads = parse_config({"kinds": {"lead": {"outcomes": ["won", "lost"]}},
                          "routes": [{"name": "default", "channel": "C0HANDOFFS"}]})
    awaiting = make_handoff(kind="lead", status=Status.claimed, owner="U0ANNA", requires_approval=True)
    assert button_ids(card_blocks(awaiting, leads, now=NOW)) == [ids.APPROVE, ids.EDIT, ids.REJECT]
    approved = make_handoff(kind="lead", status=Status.approved, owner="U0ANNA", requires_approval=True,
                            approved_at=NOW)
    assert button_ids(card_blocks(approved, leads, now=NOW)) == [ids.CLOSE]


def test_approved_card_offers_close_only(config: HandoffConfig) -> None:
    handoff = make_handoff(status=Status.approved, owner="U0ANNA", requires_approval=True, approved_at=NOW)
    blocks = card_blocks(handoff, config, now=NOW)
    assert button_ids(blocks) == [ids.CLOSE]
    actions = actions_block(blocks)
    assert actions is not None
    assert [element["type"] for element in actions["elements"]] == ["button", "users_select"]


@pytest.mark.parametrize("status", [Status.open, Status.claimed, Status.approved])
def test_every_button_carries_the_numeric_id(status: Status, config: HandoffConfig) -> None:
    blocks = card_blocks(make_handoff(status=status, owner="U0ANNA", requires_approval=True), config, now=NOW)
    actions = actions_block(blocks)
    assert actions is not None
    buttons = [element for element in actions["elements"] if element["type"] == "button"]
    assert buttons and all(button["value"] == "42" for button in buttons)
    assert {button["action_id"] for button in buttons} <= CARD_BUTTONS
    picker = actions["elements"][-1]
    assert picker["type"] == "users_select"
    assert picker["action_id"] == ids.REASSIGN
    assert picker["placeholder"]["text"] == "Reassign…"


def test_closed_card_shows_outcome_and_no_actions(config: HandoffConfig) -> None:
    handoff = make_handoff(
        status=Status.closed, owner="U0ANNA", outcome="won", outcome_note="Signed <b>", closed_at=NOW
    )
    blocks = card_blocks(handoff, config, now=NOW)
    assert actions_block(blocks) is None
    assert all(block["type"] != "actions" for block in blocks)
    dumped = all_text(blocks)
    assert "🏁 *Closed* as *won*" in dumped
    assert "Signed &lt;b&gt;" in dumped
    assert "<@U0ANNA>" in dumped
    assert f"<!date^{int(NOW.timestamp())}^" in dumped
    assert "handoff_" not in dumped


def test_rejected_card_shows_reason_and_no_actions(config: HandoffConfig) -> None:
    handoff = make_handoff(status=Status.rejected, outcome="rejected", outcome_note="Wrong customer", decided_at=NOW)
    blocks = card_blocks(handoff, config, now=NOW)
    assert actions_block(blocks) is None
    dumped = all_text(blocks)
    assert "⛔ *Rejected*" in dumped
    assert "Wrong customer" in dumped


# ---------------------------------------------------------------- thread replies


def test_thread_replies() -> None:
    handoff = make_handoff()
    assert thread_reply_text("claimed", "U1AAA", {}, handoff) == "✋ Claimed by <@U1AAA>"
    assert thread_reply_text("approved", "U1AAA", {}, handoff) == "✅ Approved by <@U1AAA>"
    edited = thread_reply_text("edited", "U1AAA", {"changes": {"title": {}, "draft": {}}}, handoff)
    assert edited == "✏️ Edited by <@U1AAA>: title, draft"
    rejected = thread_reply_text("rejected", "U1AAA", {"reason": "<!channel> no"}, handoff)
    assert rejected == "⛔ Rejected by <@U1AAA>: &lt;!channel&gt; no"
    closed = thread_reply_text("closed", "U1AAA", {"outcome": "won", "note": "a & b"}, handoff)
    assert closed == "🏁 Closed by <@U1AAA> as *won*: a &amp; b"
    assert thread_reply_text("released", "U1AAA", {}, handoff) == "↩️ Released by <@U1AAA>"
    reassigned = thread_reply_text("reassigned", "U3CCC", {"from": "U1AAA", "to": "U2BBB"}, handoff)
    assert reassigned == "🔀 Reassigned from <@U1AAA> to <@U2BBB> by <@U3CCC>"
    assert thread_reply_text("reopened", "U1AAA", {}, handoff) == "🔁 Reopened by <@U1AAA>"
    until = NOW + timedelta(hours=1)
    snoozed = thread_reply_text("snoozed", "U1AAA", {"until": until.isoformat()}, handoff)
    assert snoozed.startswith(f"💤 Snoozed by <@U1AAA> until <!date^{int(until.timestamp())}^")


def test_thread_reply_for_system_actor_is_plain_text() -> None:
    handoff = make_handoff()
    text = thread_reply_text("closed", "zapier <!here>", {"outcome": "done"}, handoff, actor_is_system=True)
    assert text == "🏁 Closed by zapier &lt;!here&gt; as *done*"
    assert thread_reply_text("claimed", "U1AAA", {}, handoff, actor_is_system=True) == "✋ Claimed by U1AAA"


def test_thread_reply_hostile_data_is_inert() -> None:
    handoff = make_handoff()
    data = {"reason": HOSTILE, "note": HOSTILE, "outcome": HOSTILE, "from": HOSTILE, "to": HOSTILE,
            "until": HOSTILE, "changes": {HOSTILE: {}}}
    for event in ("claimed", "approved", "edited", "rejected", "closed", "released", "reassigned", "snoozed",
                  "reopened", "nudged", "escalated", HOSTILE):
        assert_inert(thread_reply_text(event, HOSTILE, data, handoff))
        assert_inert(thread_reply_text(event, HOSTILE, data, handoff, actor_is_system=True))
