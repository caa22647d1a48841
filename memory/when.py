"""The time a message names ("in May 2023", "last week", "yesterday"), as a range to match."""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
SEASONS = {
    "spring": (3, 5),
    "summer": (6, 8),
    "autumn": (9, 11),
    "fall": (9, 11),
    "winter": (12, 2),
}
_MONTH = "(" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_YEAR = r"((?:19|20)\d\d)"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("day_month_year", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b")),
    ("month_day_year", re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b")),
    ("month_year", re.compile(rf"\b{_MONTH},?\s+(?:of\s+)?{_YEAR}\b")),
    ("season_year", re.compile(rf"\b(spring|summer|autumn|fall|winter)\s+(?:of\s+)?{_YEAR}\b")),
    ("last_month_name", re.compile(rf"\blast\s+{_MONTH}(?!\w)")),
    ("year", re.compile(rf"\b(?:in|of|during|since|year)\s+{_YEAR}\b")),
    ("yesterday", re.compile(r"\byesterday\b")),
    ("today", re.compile(r"\b(?:today|tonight|this morning)\b")),
    ("last_unit", re.compile(r"\blast\s+(week|weekend|month|year)\b")),
    (
        "ago",
        re.compile(r"\b(a|an|one|two|three|four|five|six|\d+)\s+(day|week|month|year)s?\s+ago\b"),
    ),
]
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}

# Things are usually told a few days after they happen ("last weekend I..."), so a memory
# learned up to this long after the named time still matches it.
TOLD_WITHIN = timedelta(days=7)


@dataclass(frozen=True)
class Period:
    """[start, end): when the named time begins and the last moment a memory of it is told."""

    start: datetime
    end: datetime


def _day(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _span(first: date, last: date) -> Period:
    return Period(_day(first), _day(last) + timedelta(days=1) + TOLD_WITHIN)


def _month(year: int, month: int) -> Period:
    return _span(date(year, month, 1), date(year, month, monthrange(year, month)[1]))


def period_in(text: str, now: datetime) -> Period | None:
    """The first time `text` names, relative to `now` for "last week" and the like; else None."""
    lowered = text.lower()
    today = now.astimezone(UTC).date()
    for name, pattern in _PATTERNS:
        match = pattern.search(lowered)
        if match is None:
            continue
        groups = match.groups()
        try:
            if name == "day_month_year":
                day = date(int(groups[2]), MONTHS[groups[1]], int(groups[0]))
                return _span(day, day)
            if name == "month_day_year":
                day = date(int(groups[2]), MONTHS[groups[0]], int(groups[1]))
                return _span(day, day)
            if name == "month_year":
                return _month(int(groups[1]), MONTHS[groups[0]])
            if name == "season_year":
                first, last = SEASONS[groups[0]]
                year = int(groups[1])
                end_year = year + 1 if last < first else year
                return _span(
                    date(year, first, 1), date(end_year, last, monthrange(end_year, last)[1])
                )
            if name == "last_month_name":
                month = MONTHS[groups[0]]
                year = today.year if month < today.month else today.year - 1
                return _month(year, month)
            if name == "year":
                year = int(groups[0])
                return _span(date(year, 1, 1), date(year, 12, 31))
        except ValueError:  # "31 February 2023": not a date, look further
            continue
        if name == "yesterday":
            return _span(today - timedelta(days=1), today - timedelta(days=1))
        if name == "today":
            return _span(today, today)
        if name == "last_unit":
            unit = groups[0]
            if unit in ("week", "weekend"):
                return _span(today - timedelta(days=today.weekday() + 7), today)
            if unit == "month":
                month_start = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
                return _span(month_start, today)
            return _span(date(today.year - 1, 1, 1), date(today.year - 1, 12, 31))
        if name == "ago":
            count = _NUMBERS.get(groups[0]) or int(groups[0])
            days = {"day": 1, "week": 7, "month": 30, "year": 365}[groups[1]] * count
            middle = today - timedelta(days=days)
            slack = timedelta(days=max(1, days // 4))
            return _span(middle - slack, min(today, middle + slack))
    return None
