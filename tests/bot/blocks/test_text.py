from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.text import (
    ELLIPSIS,
    WORD_JOINER,
    channel_link,
    mention,
    mrkdwn,
    mrkdwn_safe,
    plain,
    safe_link,
    slack_date,
    truncate,
)

HOSTILE = "<!channel> <!here> @here <@U123> <!subteam^S1> <https://evil.test|bank.com>"
FORBIDDEN = ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<!subteam", "<https://evil.test|")


def assert_inert(text: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in text, needle
    for word in ("@here", "@channel", "@everyone"):
        assert word not in text.lower(), word


def test_mrkdwn_safe_escapes_markup_and_splits_broadcasts() -> None:
    safe = mrkdwn_safe(HOSTILE + " @Channel @EVERYONE a&b")
    assert_inert(safe)
    assert "&lt;!channel&gt;" in safe
    assert "&lt;https://evil.test|bank.com&gt;" in safe
    assert f"@{WORD_JOINER}here" in safe
    assert f"@{WORD_JOINER}Channel" in safe
    assert "a&amp;b" in safe


def test_mrkdwn_safe_double_escapes_entities_so_they_stay_text() -> None:
    assert mrkdwn_safe("&lt;!channel&gt;") == "&amp;lt;!channel&amp;gt;"


def test_mrkdwn_safe_drops_bidi_controls() -> None:
    assert mrkdwn_safe("paypal\u202e.com") == "paypal.com"


def test_mrkdwn_safe_of_nothing_is_empty() -> None:
    assert mrkdwn_safe(None) == ""
    assert mrkdwn_safe("") == ""


def test_truncate_leaves_short_text_alone() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("x" * 10, 10) == "x" * 10


def test_truncate_cuts_with_ellipsis_within_limit() -> None:
    cut = truncate("y" * 50, 10)
    assert cut.endswith(ELLIPSIS)
    assert len(cut) <= 10


@pytest.mark.parametrize("limit", range(2, 30))
def test_truncate_never_splits_an_entity(limit: int) -> None:
    cut = mrkdwn("a<b>&c" * 10, limit)
    assert len(cut) <= limit
    body = cut.removesuffix(ELLIPSIS)
    # every "&" still opens a whole entity
    for index, char in enumerate(body):
        if char == "&":
            assert body[index:].startswith(("&amp;", "&lt;", "&gt;")), body


def test_mrkdwn_measures_after_escaping() -> None:
    text = mrkdwn("<" * 100, 50)
    assert len(text) <= 50
    assert text.endswith(ELLIPSIS)
    assert "<" not in text


def test_plain_defuses_without_escaping() -> None:
    text = plain(HOSTILE + " Tom & Jerry", 500)
    assert_inert(text)
    assert "Tom & Jerry" in text
    assert "&lt;" not in text
    assert len(plain("z" * 300, 150)) <= 150


@pytest.mark.parametrize(
    "title",
    [
        "Renewal: " + "x" * 129 + " <ACME> deal",
        "Tell @here about the outage in region eu-west-1 " + "y" * 102,
        "Ping <!channel> and <@U123> about it " + "z" * 113,
    ],
)
def test_plain_keeps_a_text_that_fits_whole(title: str) -> None:
    """The limit is measured on the text as written: defusing never makes a text that fits grow past it."""
    assert len(title) == 150
    shown = plain(title, 150)
    assert len(shown) == 150 and not shown.endswith(ELLIPSIS)
    assert shown.endswith(title[-10:])
    assert_inert(shown)


def test_plain_leaves_angle_brackets_that_are_no_markup_as_written() -> None:
    assert plain("a < b, <ACME> -> c", 100) == "a < b, <ACME> -> c"


def test_plain_cut_keeps_an_ampersand_word_whole() -> None:
    """plain_text has no entities: "R&D" at a cut is a word, not a half `&amp;`."""
    assert plain("a" * 145 + " R&D tail", 150) == "a" * 145 + " R&D" + ELLIPSIS


def test_plain_of_much_markup_stays_within_its_limit() -> None:
    shown = plain("<!here> @here <@U1> " * 20, 150)
    assert len(shown) <= 150 and shown.endswith(ELLIPSIS)
    assert_inert(shown)


def test_mention_only_for_valid_user_ids() -> None:
    assert mention("U0123ABC") == "<@U0123ABC>"
    assert mention("W0123ABC") == "<@W0123ABC>"
    assert mention(None) == "nobody"
    assert mention("<!channel>") == "&lt;!channel&gt;"
    assert mention("U123>|x") == "U123&gt;|x"
    assert mention("u0123abc") == "u0123abc"


def test_channel_link_only_for_valid_channel_ids() -> None:
    assert channel_link("C0HANDOFFS") == "<#C0HANDOFFS>"
    assert channel_link("S0GROUP") == "S0GROUP"
    assert channel_link("<!here>") == "&lt;!here&gt;"
    assert channel_link(None) == "no channel"


def test_safe_link_shows_real_host_next_to_a_different_label() -> None:
    link = safe_link("https://evil.test/login?a=1&b=2", "bank.com")
    assert link == "<https://evil.test/login?a=1&amp;b=2|bank.com (evil.test)>"


def test_safe_link_label_cannot_break_out() -> None:
    link = safe_link("https://crm.example.com/x", "a|b<c>")
    assert link.count("|") == 1
    assert link.startswith("<https://crm.example.com/x|a¦b&lt;c&gt;")
    assert link.endswith("(crm.example.com)>")


def test_safe_link_with_host_as_label_is_plain_link() -> None:
    assert safe_link("https://crm.example.com/x", "crm.example.com") == "<https://crm.example.com/x|crm.example.com>"


LOOK_ALIKE = "https://b\u0430nk.com/login"  # Cyrillic \u0430
MUNICH = "https://m\u00fcnchen.de/"


@pytest.mark.parametrize(
    ("url", "label", "expected"),
    [
        (LOOK_ALIKE, "bank.com", f"<{LOOK_ALIKE}|bank.com (xn--bnk-6cd.com)>"),
        (LOOK_ALIKE, "b\u0430nk.com", f"<{LOOK_ALIKE}|b\u0430nk.com (xn--bnk-6cd.com)>"),
        (LOOK_ALIKE, None, f"<{LOOK_ALIKE}|xn--bnk-6cd.com>"),
        (MUNICH, "m\u00fcnchen.de", f"<{MUNICH}|m\u00fcnchen.de (xn--mnchen-3ya.de)>"),
    ],
)
def test_safe_link_shows_a_non_ascii_host_in_its_ascii_form(url: str, label: str | None, expected: str) -> None:
    """A look-alike host ("b\u0430nk.com", Cyrillic \u0430) would read as the label it imitates: it is shown as
    browsers show mixed scripts, in punycode, while the link itself is left as given."""
    assert safe_link(url, label) == expected


def test_safe_link_with_a_label_that_cleans_to_nothing_shows_the_host() -> None:
    assert safe_link("https://crm.example.com/x", "\u202e") == "<https://crm.example.com/x|crm.example.com>"
    assert safe_link(None, "\u202e\u200f") == ""


def test_safe_link_with_a_host_that_has_no_ascii_form_is_no_link() -> None:
    assert safe_link("https://" + "a" * 70 + "\u00e9.com/", "label") == "label"


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "https://evil.test|bank.com", "https://a.test/<x>", "ftp://a.test/", "not a url", None,
     "https://evil.test\\@label", "https://label\\evil.test"],  # a browser reads a backslash as /
)
def test_safe_link_refuses_bad_urls(url: str | None) -> None:
    text = safe_link(url, "label <!here>")
    assert text == "label &lt;!here&gt;"


def test_safe_link_hostile_label() -> None:
    assert_inert(safe_link("https://ok.example.com", HOSTILE))


def test_slack_date_token_with_utc_fallback() -> None:
    moment = datetime(2024, 5, 1, 16, 30, tzinfo=timezone(timedelta(hours=2)))
    token = slack_date(moment)
    assert token == f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|2024-05-01 14:30 UTC>"


def test_slack_date_treats_naive_as_utc() -> None:
    naive = datetime(2024, 5, 1, 14, 30)
    assert slack_date(naive) == slack_date(naive.replace(tzinfo=UTC))
