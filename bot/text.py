"""Text safety for everything the bot writes into Slack.

Untrusted text (anything a producer or a message supplied) goes through
`mrkdwn_safe`/`mrkdwn` for mrkdwn fields and `plain` for plain_text fields:
it can then never ping (`<!channel>`, `<!here>`, `<!everyone>`, `@here`,
`<@U…>`, `<!subteam^…>`) nor show a link whose label hides its target.
Only validated ids become mentions (`mention`, `channel_link`) and only a
validated URL becomes a link (`safe_link`).

Every cut is measured on the final string and ends with a visible "…".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

ELLIPSIS = "…"
WORD_JOINER = "\u2060"  # invisible, and splits "@here" so no client turns it into a mention

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,20}$")
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone))", re.IGNORECASE)
# `<!here>`, `<@U…>`, `<#C…>`, `<https://…|…>` (closed or cut): what Slack would read as markup in a parsed field
_MARKUP = re.compile(r"<((?:[!@#]|[a-z][a-z0-9+.\-]*:)[^<>]*)(>?)", re.IGNORECASE)
FULLWIDTH_AT = "\uff20"
# Bidirectional controls can make "moc.evil" read as "live.com"; they carry no meaning on a card.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_PARTIAL_ENTITY = re.compile(r"&[a-zA-Z#0-9]{0,7}$")
_MAX_LINK = 2500
# A browser reads `\` in an http(s) URL as `/` where urllib does not: `https://evil.test\@bank.test` would be
# labelled bank.test and open evil.test.
_URL_FORBIDDEN = re.compile(r"[<>|\\\s\x00-\x1f\x7f]")


def _defuse(text: str) -> str:
    """Remove bidi controls and split bare broadcasts (`@here` -> `@\u2060here`)."""
    return _BROADCAST.sub("@" + WORD_JOINER, _BIDI_CONTROLS.sub("", text))


def mrkdwn_safe(text: str | None) -> str:
    """Escape untrusted text for a mrkdwn field: `& < >` become entities, broadcasts are split."""
    if not text:
        return ""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _defuse(escaped)


def _cut(text: str, limit: int, *, entities: bool) -> str:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) <= limit:
        return text
    head = text[: limit - len(ELLIPSIS)]
    if entities:
        head = _PARTIAL_ENTITY.sub("", head)
    return head.rstrip() + ELLIPSIS


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, ending in "…", never inside an `&amp;`-style entity."""
    return _cut(text, limit, entities=True)


def mrkdwn(text: str | None, limit: int) -> str:
    """`mrkdwn_safe` then `truncate`: the usual way to put untrusted text in a mrkdwn field."""
    return truncate(mrkdwn_safe(text), limit)


def mrkdwn_cut(text: str | None, chars: int) -> str:
    """At most `chars` characters of untrusted text as written, then made safe for mrkdwn: a cap on what a
    line shows (a title), measured like the field's own limit; escaping may make it up to 5 times as long,
    so it is not for a Block Kit limit (`mrkdwn` is)."""
    return mrkdwn_safe(_cut(text, chars, entities=False)) if text else ""


def plain(text: str | None, limit: int) -> str:
    """Untrusted text for a plain_text field: no escaping, but no broadcasts or mention syntax either.

    plain_text is never parsed, but "<!channel>" should not even look like markup: the brackets of markup
    and the `@` of a broadcast are shown in their fullwidth forms ("＜!channel＞", "＠here"). That keeps the
    length, so the text is cut as written and a text that fits its limit is shown whole; other angle
    brackets ("<ACME>", "a < b") and "&" ("R&D": no entities here) are left as written.
    """
    if not text:
        return ""
    shown = _MARKUP.sub(_fullwidth_brackets, _cut(_BIDI_CONTROLS.sub("", text), limit, entities=False))
    return _BROADCAST.sub(FULLWIDTH_AT, shown)


def _fullwidth_brackets(markup: re.Match[str]) -> str:
    return "\uff1c" + markup[1] + ("\uff1e" if markup[2] else "")


def is_user_id(value: str | None) -> bool:
    return bool(value) and _USER_ID.match(value or "") is not None


def is_channel_id(value: str | None) -> bool:
    return bool(value) and _CHANNEL_ID.match(value or "") is not None


def mention(user_id: str | None, *, fallback: str = "nobody") -> str:
    """`<@U…>` for a valid user id; anything else is shown as escaped text."""
    if not user_id:
        return fallback
    return f"<@{user_id}>" if is_user_id(user_id) else mrkdwn(user_id, 80)


def channel_link(channel_id: str | None, *, fallback: str = "no channel") -> str:
    """`<#C…>` for a valid channel id; anything else is shown as escaped text."""
    if not channel_id:
        return fallback
    return f"<#{channel_id}>" if is_channel_id(channel_id) else mrkdwn(channel_id, 80)


def _ascii_host(host: str) -> str | None:
    """The host as browsers show a non-ASCII one (punycode), so "b\u0430nk.com" (Cyrillic \u0430) cannot read as
    "bank.com"; None when it has no such form (a browser would not open it either)."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _valid_link(url: str | None) -> str | None:
    """The URL's host in ASCII when `url` may become a link, else None."""
    if not url or len(url) > 2000 or _URL_FORBIDDEN.search(url):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return _ascii_host(parts.hostname)


def safe_link(url: str | None, label: str | None, *, limit: int = 200) -> str:
    """`<url|label>` for a valid http(s) URL, else the escaped label alone.

    The label can hold no `|`, `<` or `>`, and when it is not the URL's own host
    the real host is shown next to it (in ASCII), so "bank.com" cannot hide another site.
    """
    host = _valid_link(url)
    text = _BIDI_CONTROLS.sub("", label or "").strip() or host or url or ""
    shown = mrkdwn(text.replace("|", "¦"), limit)
    if host is None or url is None:
        return shown
    target = url.replace("&", "&amp;")
    if len(target) > _MAX_LINK:
        return shown
    if text.lower() != host.lower():
        shown = f"{shown} ({mrkdwn_safe(host)})"
    return f"<{target}|{shown}>"


def slack_date(moment: datetime, *, token: str = "{date_short_pretty} {time}") -> str:
    """A Slack date token: each viewer sees the time in their own zone; the fallback is UTC ISO."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    fallback = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(aware.timestamp())}^{token}|{fallback}>"
