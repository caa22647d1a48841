from __future__ import annotations

from datetime import timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from accounts.templatetags.ui_tags import ICONS, ago, noun


@pytest.mark.parametrize(
    ("plural", "count", "expected"),
    [
        ("email addresses", 1, "email address"),
        ("cache keys", 1, "cache key"),
        ("sessions", 1, "session"),
        ("memories", 1, "memory"),
        ("conversation summaries", 1, "conversation summary"),
        ("people, pets and places", 1, "person, pet or place"),
        ("account", 1, "account"),
        ("email addresses", 0, "email addresses"),
        ("cache keys", 3, "cache keys"),
    ],
)
def test_noun_is_singular_only_for_one(plural: str, count: int, expected: str) -> None:
    assert noun(plural, count) == expected


def test_erasure_counts_read_as_english_in_a_template() -> None:
    html = Template(
        "{% load ui_tags %}{% for label, n in counts.items %}{{ n }} {{ label|noun:n }};"
        "{% endfor %}"
    ).render(Context({"counts": {"email addresses": 1, "cache keys": 1, "messages": 2}}))
    assert html == "1 email address;1 cache key;2 messages;"


def test_an_icon_with_a_label_is_announced_and_one_without_is_hidden() -> None:
    html = Template('{% load ui_tags %}{% icon "pin" label="Pinned" %}{% icon "stop" %}').render(
        Context()
    )
    labelled, decorative = html.split("</svg>")[:2]
    assert 'role="img" aria-label="Pinned"' in labelled and "<title>Pinned</title>" in labelled
    assert 'aria-hidden="true"' in decorative and "aria-label" not in decorative
    assert set(ICONS) >= {"incognito", "pin", "stop", "retry", "download", "more", "menu"}


def test_a_moment_ago_reads_just_now_not_zero_minutes() -> None:
    now = timezone.now()
    assert ago(now - timedelta(seconds=20)) == "just now"
    assert ago(now - timedelta(minutes=5, seconds=3)) == "5\xa0minutes ago"
    assert ago(now - timedelta(days=2, hours=1)) == "2\xa0days, 1\xa0hour ago"
    assert ago(None) == ""
