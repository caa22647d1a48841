"""Markdown for replies: markdown-it-py renders, nh3 sanitizes (models write untrusted HTML)."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
    ["table", "strikethrough"]
)

# No images: a reply must not make the browser fetch anything (privacy, offline use).
_TAGS = (nh3.ALLOWED_TAGS - {"img", "map", "area"}) | {"pre", "code", "table", "thead", "tbody"}
_ATTRIBUTES = {
    **{tag: attrs for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items() if tag != "img"},
    "code": {"class"},
    "a": {"href", "title"},
}


def render_markdown(text: str) -> str:
    html = _renderer.render(text or "")
    return nh3.clean(
        html, tags=_TAGS, attributes=_ATTRIBUTES, link_rel="noopener noreferrer nofollow"
    )
