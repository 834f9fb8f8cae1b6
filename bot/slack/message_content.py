"""What a Slack message says, in Slack's markup, wherever its sender put it: `text`, `blocks` or `attachments`.

People's messages carry their words in `text` (and the same again as `rich_text` blocks). Apps and AI tools often
post an empty or short notification `text` and put the content in blocks or legacy attachments; the "Create
handoff" form is prefilled from whichever holds more, plus the attachments.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_INLINE = {"user": "<@{user_id}>", "channel": "<#{channel_id}>", "usergroup": "<!subteam^{usergroup_id}>",
           "broadcast": "<!{range}>", "emoji": ":{name}:"}


def message_content(message: dict[str, Any]) -> str:
    """The message's content as mrkdwn: the fuller of its text and its blocks, then its attachments."""
    text = _text(message.get("text"))
    from_blocks = "\n".join(_blocks_text(message.get("blocks")))
    parts = [from_blocks if len(from_blocks) > len(text) else text]
    parts += [_attachment_text(attachment) for attachment in _dicts(message.get("attachments"))]
    return "\n\n".join(part for part in parts if part.strip())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _object_text(value: Any) -> str:
    """A text object's text (`{"type": "mrkdwn", "text": …}`)."""
    return _text(value.get("text")) if isinstance(value, dict) else ""


def _blocks_text(blocks: Any) -> Iterator[str]:
    for block in _dicts(blocks):
        kind = block.get("type")
        if kind in ("section", "header"):
            yield _object_text(block.get("text"))
            yield from (_object_text(field) for field in _dicts(block.get("fields")))
        elif kind == "context":
            yield " ".join(_object_text(element) for element in _dicts(block.get("elements")))
        elif kind == "rich_text":
            yield "\n".join(_rich_text(element) for element in _dicts(block.get("elements")))


def _rich_text(element: dict[str, Any]) -> str:
    """A rich_text section, list, quote or preformatted block, as text (a list one item a line)."""
    items = _dicts(element.get("elements"))
    if element.get("type") == "rich_text_list":
        return "\n".join(f"• {_rich_text(item)}" for item in items)
    return "".join(_inline(item) for item in items)


def _inline(item: dict[str, Any]) -> str:
    kind = item.get("type")
    if kind == "text":
        return _text(item.get("text"))
    if kind == "link":
        url, label = _text(item.get("url")), _text(item.get("text"))
        return f"<{url}|{label}>" if label else f"<{url}>"
    template = _INLINE.get(str(kind))
    if template is None:
        return ""
    try:
        return template.format(**{key: _text(value) for key, value in item.items()})
    except KeyError:
        return ""


def _attachment_text(attachment: dict[str, Any]) -> str:
    fields = [f"{_text(field.get('title'))}: {_text(field.get('value'))}" for field in _dicts(attachment.get("fields"))]
    lines = [_text(attachment.get(key)) for key in ("pretext", "title", "text")] + fields
    lines += _blocks_text(attachment.get("blocks"))
    content = "\n".join(line for line in lines if line.strip())
    return content or _text(attachment.get("fallback"))
