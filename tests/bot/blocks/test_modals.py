from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bot import ids
from bot.blocks.modals import (
    CLOSE_BLOCKS,
    EDIT_BLOCKS,
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
from handoffs.model import Handoff, HandoffEdit, Status, Urgency

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DUE = NOW + timedelta(days=3)


def make_handoff(**overrides: Any) -> Handoff:
    values: dict[str, Any] = {
        "id": 42,
        "title": "Call ACME back",
        "next_action": "Phone Jane",
        "kind": "lead",
        "status": Status.claimed,
        "urgency": Urgency.high,
        "version": 3,
        "created_at": NOW,
        "updated_at": NOW,
        "summary": "Jane asked for pricing.",
        "draft": "Hi Jane,\nhere are the prices.",
        "definition_of_done": "Quote sent",
        "owner": "U0ANNA",
        "channel": "C0SALES",
        "card_ts": "1714560000.000100",
        "due_at": DUE,
    }
    values.update(overrides)
    return Handoff(**values)


def input_blocks(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {block["block_id"]: block for block in view["blocks"] if block["type"] == "input"}


def submitted(view: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The state.values Slack would send back for `view`, with `changes` typed in by the user."""
    values: dict[str, Any] = {}
    for block_id, block in input_blocks(view).items():
        element = block["element"]
        if element["type"] == "plain_text_input":
            state: dict[str, Any] = {"type": "plain_text_input", "value": element.get("initial_value")}
            if block_id in changes:
                state["value"] = changes[block_id]
        elif element["type"] == "static_select":
            option = element.get("initial_option")
            if block_id in changes:
                option = {"value": changes[block_id]} if changes[block_id] is not None else None
            state = {"type": "static_select", "selected_option": option}
        else:
            stamp = changes.get(block_id, element.get("initial_date_time"))
            state = {"type": element["type"], "selected_date_time": stamp}
        values[block_id] = {block_id: state}
    return values


# ---------------------------------------------------------------- context


def test_modal_context_round_trip() -> None:
    context = ModalContext(handoff_id=42, channel="C0SALES", ts="1714560000.000100")
    assert json.loads(context.dump()) == {"handoff_id": 42, "channel": "C0SALES", "ts": "1714560000.000100"}
    assert ModalContext.parse(context.dump()) == context


@pytest.mark.parametrize("raw", [None, "", "not json", '{"channel": "C1"}', '{"handoff_id": "x"}'])
def test_modal_context_refuses_garbage(raw: str | None) -> None:
    with pytest.raises(ValueError):
        ModalContext.parse(raw)


# ---------------------------------------------------------------- edit


def test_edit_modal_is_prefilled() -> None:
    view = edit_modal(make_handoff())
    assert view["type"] == "modal"
    assert view["callback_id"] == ids.EDIT_MODAL
    assert view["title"]["text"] == "Edit H-42"
    context = ModalContext.parse(view["private_metadata"])
    assert context.model_copy(update={"shown": None}) == ModalContext(
        handoff_id=42, channel="C0SALES", ts="1714560000.000100"
    )
    assert context.shown is not None and set(context.shown) == {*EDIT_BLOCKS}
    assert len(view["private_metadata"]) < 400  # fingerprints, never the texts (the limit is 3,000)
    inputs = input_blocks(view)
    expected = {
        ids.EDIT_TITLE: "Call ACME back",
        ids.EDIT_NEXT_ACTION: "Phone Jane",
        ids.EDIT_SUMMARY: "Jane asked for pricing.",
        ids.EDIT_DRAFT: "Hi Jane,\nhere are the prices.",
        ids.EDIT_DEFINITION_OF_DONE: "Quote sent",
    }
    for block_id, value in expected.items():
        element = inputs[block_id]["element"]
        assert element["action_id"] == block_id
        assert element["initial_value"] == value
    assert inputs[ids.EDIT_TITLE]["element"]["max_length"] == 150
    assert inputs[ids.EDIT_NEXT_ACTION]["element"]["max_length"] == 500
    assert inputs[ids.EDIT_SUMMARY]["element"]["multiline"] is True
    assert inputs[ids.EDIT_DRAFT]["element"]["multiline"] is True
    assert inputs[ids.EDIT_URGENCY]["element"]["initial_option"]["value"] == "high"
    assert [o["value"] for o in inputs[ids.EDIT_URGENCY]["element"]["options"]] == ["low", "normal", "high", "urgent"]
    assert inputs[ids.EDIT_DUE_AT]["element"]["initial_date_time"] == int(DUE.timestamp())
    assert inputs[ids.EDIT_TITLE].get("optional") is False
    assert inputs[ids.EDIT_SUMMARY]["optional"] is True


def test_edit_modal_uses_given_context() -> None:
    context = ModalContext(handoff_id=42, channel="D0DM", ts="1.2")
    view = edit_modal(make_handoff(), context=context)
    assert ModalContext.parse(view["private_metadata"]).model_copy(update={"shown": None}) == context


def test_edit_modal_title_stays_within_24_characters() -> None:
    view = edit_modal(make_handoff(id=2**63 - 1))  # the largest id a database holds
    assert len(view["title"]["text"]) <= 24


def test_edit_modal_keeps_raw_text_for_editing() -> None:
    view = edit_modal(make_handoff(title="A & B <x>"))
    assert input_blocks(view)[ids.EDIT_TITLE]["element"]["initial_value"] == "A & B <x>"


def test_unchanged_submission_changes_nothing() -> None:
    handoff = make_handoff()
    edit = parse_edit(submitted(edit_modal(handoff)), handoff)
    assert edit.model_fields_set == set()


def test_only_changed_fields_are_returned() -> None:
    handoff = make_handoff()
    values = submitted(edit_modal(handoff), **{ids.EDIT_TITLE: "Call ACME today", ids.EDIT_URGENCY: "urgent"})
    edit = parse_edit(values, handoff)
    assert edit.model_fields_set == {"title", "urgency"}
    assert edit.title == "Call ACME today"
    assert edit.urgency is Urgency.urgent


def test_whitespace_and_line_endings_are_not_a_change() -> None:
    handoff = make_handoff()
    values = submitted(edit_modal(handoff), **{ids.EDIT_DRAFT: "  Hi Jane,\r\nhere are the prices.\n"})
    assert parse_edit(values, handoff).model_fields_set == set()


def test_cleared_optional_field_is_a_change_to_none() -> None:
    handoff = make_handoff()
    edit = parse_edit(submitted(edit_modal(handoff), **{ids.EDIT_SUMMARY: None}), handoff)
    assert edit.model_fields_set == {"summary"}
    assert edit.summary is None


def test_cleared_required_field_is_an_error() -> None:
    handoff = make_handoff()
    with pytest.raises(ModalError) as caught:
        parse_edit(submitted(edit_modal(handoff), **{ids.EDIT_TITLE: "  "}), handoff)
    assert set(caught.value.errors) == {ids.EDIT_TITLE}


def test_new_due_date_is_a_change() -> None:
    handoff = make_handoff()
    later = int((DUE + timedelta(days=1)).timestamp())
    edit = parse_edit(submitted(edit_modal(handoff), **{ids.EDIT_DUE_AT: later}), handoff)
    assert edit.model_fields_set == {"due_at"}
    assert edit.due_at == datetime.fromtimestamp(later, UTC)


def test_long_summary_is_prefilled_in_part_and_kept_when_untouched() -> None:
    summary = "s" * 4000
    draft = "d" * 10_000
    handoff = make_handoff(summary=summary, draft=draft)
    view = edit_modal(handoff)
    inputs = input_blocks(view)
    assert inputs[ids.EDIT_SUMMARY]["element"]["initial_value"] == "s" * 3000
    assert "3,000 of 4,000" in inputs[ids.EDIT_SUMMARY]["hint"]["text"]
    assert inputs[ids.EDIT_DRAFT]["element"]["initial_value"] == "d" * 3000
    assert "hint" not in inputs[ids.EDIT_TITLE]
    values = submitted(view, **{ids.EDIT_TITLE: "New title"})
    edit = parse_edit(values, handoff)
    assert edit.model_fields_set == {"title"}  # the long summary and draft are not cut to 3,000


def test_long_summary_changed_by_the_user_is_applied() -> None:
    handoff = make_handoff(summary="s" * 4000)
    edit = parse_edit(submitted(edit_modal(handoff), **{ids.EDIT_SUMMARY: "short now"}), handoff)
    assert edit.model_fields_set == {"summary"}
    assert edit.summary == "short now"


def test_a_due_time_changed_to_the_past_is_refused_on_its_field() -> None:
    handoff = make_handoff()
    view = edit_modal(handoff)
    earlier = int((NOW - timedelta(hours=1)).timestamp())
    with pytest.raises(ModalError) as caught:
        parse_edit(submitted(view, **{ids.EDIT_DUE_AT: earlier}), handoff, shown(view), now=NOW)
    assert caught.value.errors == {ids.EDIT_DUE_AT: "Pick a time in the future."}
    later = int((NOW + timedelta(hours=1)).timestamp())
    assert parse_edit(submitted(view, **{ids.EDIT_DUE_AT: later}), handoff, shown(view), now=NOW).due_at == \
        datetime.fromtimestamp(later, UTC)
    overdue = make_handoff(due_at=NOW - timedelta(days=1))  # an overdue handoff, its due time left as it was
    assert parse_edit(submitted(edit_modal(overdue)), overdue, now=NOW).model_fields_set == set()


def shown(view: dict[str, Any]) -> dict[str, str] | None:
    return ModalContext.parse(view["private_metadata"]).shown


def test_fields_left_as_shown_never_put_back_what_someone_changed_meanwhile() -> None:
    opened = make_handoff()
    view = edit_modal(opened)
    now = make_handoff(title="Call ACME back today", urgency=Urgency.urgent, due_at=DUE + timedelta(days=1),
                       summary="s" * 4000)  # someone else's edit, saved while the form was open
    edit = parse_edit(submitted(view, **{ids.EDIT_NEXT_ACTION: "Email Jane"}), now, shown(view))
    assert edit.model_fields_set == {"next_action"}
    assert parse_edit(submitted(view), now, shown(view)).model_fields_set == set()


def test_a_field_changed_here_and_by_someone_else_meanwhile_is_refused_on_that_field() -> None:
    view = edit_modal(make_handoff())
    now = make_handoff(title="Call ACME back today", urgency=Urgency.urgent)
    with pytest.raises(ModalError) as caught:
        parse_edit(submitted(view, **{ids.EDIT_TITLE: "Call Jane", ids.EDIT_URGENCY: "low",
                                      ids.EDIT_SUMMARY: "More detail"}), now, shown(view))
    assert set(caught.value.errors) == {ids.EDIT_TITLE, ids.EDIT_URGENCY}
    assert "changed this since you opened the form" in caught.value.errors[ids.EDIT_TITLE]
    same = parse_edit(submitted(view, **{ids.EDIT_TITLE: "Call ACME back today"}), now, shown(view))
    assert same.model_fields_set == set()  # both made the same change: nothing to refuse, nothing to do


def test_a_form_opened_before_forms_remembered_what_they_showed_compares_with_the_handoff_now() -> None:
    view = edit_modal(make_handoff())
    now = make_handoff(title="Call ACME back today")
    assert parse_edit(submitted(view), now).model_fields_set == {"title"}


def test_invalid_edit_maps_to_the_field() -> None:
    handoff = make_handoff()
    with pytest.raises(ModalError) as caught:
        parse_edit(submitted(edit_modal(handoff), **{ids.EDIT_TITLE: "t" * 151}), handoff)
    assert list(caught.value.errors) == [ids.EDIT_TITLE]


# ---------------------------------------------------------------- reject


def test_reject_modal_requires_a_reason() -> None:
    view = reject_modal(make_handoff())
    assert view["callback_id"] == ids.REJECT_MODAL
    assert view["title"]["text"] == "Reject H-42"
    reason = input_blocks(view)[ids.REJECT_REASON]
    assert reason.get("optional") in (None, False)
    element = reason["element"]
    assert element["action_id"] == ids.REJECT_REASON
    assert element["multiline"] is True
    assert element["min_length"] == 3
    assert element["max_length"] == 2000
    assert ModalContext.parse(view["private_metadata"]).handoff_id == 42


def test_reject_modal_shows_the_title_safely() -> None:
    view = reject_modal(make_handoff(title="<!channel> hi"))
    dumped = json.dumps(view)
    assert "<!channel>" not in dumped
    assert "&lt;!channel&gt; hi" in dumped


def test_parse_reject() -> None:
    assert parse_reject(submitted(reject_modal(make_handoff()), **{ids.REJECT_REASON: "  wrong customer "})) == (
        "wrong customer"
    )


@pytest.mark.parametrize("reason", [None, "", "   ", "no"])
def test_parse_reject_needs_a_reason(reason: str | None) -> None:
    with pytest.raises(ModalError) as caught:
        parse_reject(submitted(reject_modal(make_handoff()), **{ids.REJECT_REASON: reason}))
    assert list(caught.value.errors) == [ids.REJECT_REASON]


# ---------------------------------------------------------------- close


def test_close_modal_lists_the_outcomes() -> None:
    view = close_modal(make_handoff(), ["won", "lost", "no_action"])
    assert view["callback_id"] == ids.CLOSE_MODAL
    assert view["title"]["text"] == "Close H-42"
    inputs = input_blocks(view)
    select = inputs[ids.CLOSE_OUTCOME]["element"]
    assert select["type"] == "static_select"
    assert select["action_id"] == ids.CLOSE_OUTCOME
    assert [option["value"] for option in select["options"]] == ["won", "lost", "no_action"]
    assert select["options"][2]["text"]["text"] == "no action"
    assert "initial_option" not in select
    assert inputs[ids.CLOSE_OUTCOME].get("optional") in (None, False)
    note = inputs[ids.CLOSE_NOTE]
    assert note["optional"] is True
    assert note["element"]["multiline"] is True


def test_close_modal_preselects_a_single_outcome() -> None:
    view = close_modal(make_handoff(), ["done"])
    assert input_blocks(view)[ids.CLOSE_OUTCOME]["element"]["initial_option"]["value"] == "done"


def test_parse_close() -> None:
    view = close_modal(make_handoff(), ["won", "lost"])
    assert parse_close(submitted(view, **{ids.CLOSE_OUTCOME: "won", ids.CLOSE_NOTE: " signed "})) == ("won", "signed")
    assert parse_close(submitted(view, **{ids.CLOSE_OUTCOME: "lost"})) == ("lost", None)


def test_parse_close_needs_an_outcome() -> None:
    view = close_modal(make_handoff(), ["won", "lost"])
    with pytest.raises(ModalError) as caught:
        parse_close(submitted(view))
    assert caught.value.errors == {ids.CLOSE_OUTCOME: "Choose an outcome."}


# ---------------------------------------------------------------- error mapping


def test_field_errors_maps_validation_errors_to_blocks() -> None:
    with pytest.raises(ValidationError) as caught:
        HandoffEdit.model_validate({"title": "", "urgency": "panic"})
    errors = field_errors(caught.value, EDIT_BLOCKS, default_block=ids.EDIT_TITLE)
    assert set(errors) == {ids.EDIT_TITLE, ids.EDIT_URGENCY}
    assert all(isinstance(message, str) and message for message in errors.values())


def test_problem_errors_maps_a_domain_problem() -> None:
    assert problem_errors("outcome", "Choose one", CLOSE_BLOCKS, default_block=ids.CLOSE_NOTE) == {
        ids.CLOSE_OUTCOME: "Choose one"
    }
    assert problem_errors(None, "Nope", CLOSE_BLOCKS, default_block=ids.CLOSE_OUTCOME) == {ids.CLOSE_OUTCOME: "Nope"}


def test_modal_context_remembers_a_modal_opened_from_the_app_home() -> None:
    context = ModalContext(handoff_id=42, home=True)
    assert json.loads(context.dump())["home"] is True
    assert ModalContext.parse(context.dump()).home
    assert not ModalContext.parse('{"handoff_id": 42}').home
