"""Template helpers shared by every page: inline SVG icons and counted nouns."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

register = template.Library()

# 24 by 24 stroke icons drawn for Mnemo. Inline SVG, not emoji or an icon font: they render
# on machines without an emoji font (where 🕶 and 📌 showed as empty boxes), take the text
# colour, and need no extra request or CSP exception.
ICONS = {
    "incognito": '<path d="M3 11h18"/><path d="M5 11l2.2-6h9.6l2.2 6"/>'
    '<circle cx="7" cy="16" r="3"/><circle cx="17" cy="16" r="3"/><path d="M10 16h4"/>',
    "pin": '<path d="M12 17v5"/><path d="M9 3h6l-1 6 3.5 4.5h-11L10 9z"/>',
    "stop": '<rect x="6" y="6" width="12" height="12" rx="1.5"/>',
    "retry": '<path d="M20 12a8 8 0 1 1-2.34-5.66"/><path d="M20 4v5h-5"/>',
    "download": '<path d="M12 3v12"/><path d="M7 10l5 5 5-5"/><path d="M5 21h14"/>',
    "more": '<circle cx="5" cy="12" r="1.2"/><circle cx="12" cy="12" r="1.2"/>'
    '<circle cx="19" cy="12" r="1.2"/>',
    "check": '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
    "menu": '<path d="M4 6h16"/><path d="M4 12h16"/><path d="M4 18h16"/>',
    "close": '<path d="M6 6l12 12"/><path d="M18 6L6 18"/>',
    "plus": '<path d="M12 5v14"/><path d="M5 12h14"/>',
    "back": '<path d="M19 12H5"/><path d="M11 6l-6 6 6 6"/>',
}


@register.simple_tag
def icon(name: str, label: str = "") -> SafeString:
    """An inline SVG icon; with a label it is announced (role=img), without it is decorative."""
    paths = mark_safe(ICONS[name])  # noqa: S308  (constant markup defined above)
    if label:
        return format_html(
            '<svg class="icon icon-{}" viewBox="0 0 24 24" width="1em" height="1em" fill="none" '
            'stroke="currentColor" stroke-width="2" stroke-linecap="round" '
            'stroke-linejoin="round" role="img" aria-label="{}" focusable="false">'
            "<title>{}</title>{}</svg>",
            name,
            label,
            label,
            paths,
        )
    return format_html(
        '<svg class="icon icon-{}" viewBox="0 0 24 24" width="1em" height="1em" fill="none" '
        'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" '
        'aria-hidden="true" focusable="false">{}</svg>',
        name,
        paths,
    )


# Singular forms of the plural labels that erasure counts are stored under.
SINGULAR = {
    "people, pets and places": "person, pet or place",
    "memory history events": "memory history event",
    "conversation summaries": "conversation summary",
    "memories": "memory",
    "email addresses": "email address",
    "memories waiting for review": "memory waiting for review",
}


@register.filter
def noun(plural: str, count: int) -> str:
    """`"email addresses"|noun:1` → "email address"; any other count keeps the plural."""
    if count != 1:
        return plural
    if plural in SINGULAR:
        return SINGULAR[plural]
    if plural.endswith("sses"):
        return plural[:-2]
    if plural.endswith("ies"):
        return plural[:-3] + "y"
    if plural.endswith("s") and not plural.endswith("ss"):
        return plural[:-1]
    return plural


@register.filter
def ago(when: datetime | None) -> str:
    """`"5 minutes ago"`, or `"just now"` under a minute (`timesince` says "0 minutes")."""
    if not when:
        return ""
    if timezone.now() - when < timedelta(minutes=1):
        return "just now"
    return f"{timesince(when)} ago"
