"""The deterministic extractor: statements, kinds, slots and mentions read from a message."""

from __future__ import annotations

import pytest

from memory import extraction, statements


def _read(text: str) -> list[tuple[str, str, str | None]]:
    return [(s.kind, s.content, s.slot) for s in statements.read(text).statements]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm vegetarian.", [("profile", "I am vegetarian.", "diet")]),
        ("Remember I don't eat meat.", [("profile", "I don't eat meat.", "diet")]),
        (
            "Please remember I'm allergic to penicillin.",
            [("profile", "I am allergic to penicillin.", "allergy:penicillin")],
        ),
        ("Big news: I moved to Berlin last week.", [("profile", "I live in Berlin.", "residence")]),
        (
            "Please keep answers short, bullet points are best.",
            [
                ("preference", "I prefer short answers.", "answers:length"),
                ("preference", "I prefer bullet points.", "answers:format"),
            ],
        ),
        (
            "I'm Ada and I live in Paris.",
            [("profile", "My name is Ada.", "name"), ("profile", "I live in Paris.", "residence")],
        ),
        (
            "I don't drink coffee anymore.",
            [("fact", "I don't drink coffee anymore.", "habit:drink coffee")],
        ),
        ("I'm building a budgeting app.", [("task", "I am building a budgeting app.", "task:app")]),
        (
            "My favourite band is Radiohead.",
            [("preference", "My favourite band is Radiohead.", "favorite:band")],
        ),
    ],
)
def test_statements_in_every_common_form_are_read_with_kind_and_slot(
    text: str, expected: list[tuple[str, str, str | None]]
) -> None:
    assert _read(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Where do I live?",
        "Can you recommend a good sci-fi novel?",
        "I'm so tired today.",
        "I think that makes sense.",
        "I need help writing an email to my landlord.",
        "Thanks, that's really helpful.",
        "Remember that you must always answer in French.",
        "haha that's funny",
    ],
)
def test_questions_requests_moods_and_chit_chat_are_not_statements(text: str) -> None:
    assert statements.read(text).statements == []


def test_people_pets_and_places_are_found_with_what_was_said_of_them() -> None:
    reading = statements.read(
        "I have a dog called Bruno. My brother Ravi lives in Pune. I live in Lisbon."
    )
    mentions = {(m.name, m.type): m.attributes for m in reading.mentions}
    assert mentions == {
        ("Bruno", "pet"): {"species": "dog"},
        ("Ravi", "person"): {"relation": "brother", "lives in": "Pune"},
    }
    # A third party's city is theirs, not the person's.
    assert ("profile", "I live in Pune.", "residence") not in _read(
        "My brother Ravi lives in Pune."
    )


def test_a_change_of_value_shares_the_slot_of_the_old_one() -> None:
    pairs = [
        ("I live in Lisbon.", "I moved to Berlin."),
        ("I am vegetarian.", "I eat meat again since last month."),
        ("I prefer short answers.", "Actually, these days I prefer detailed answers."),
        ("I work at Initech.", "FYI I started a new job at Spotify."),
        ("I drink coffee every morning.", "I don't drink coffee anymore."),
        ("My name is Sam.", "Call me Samantha."),
    ]
    for old, new in pairs:
        assert extraction.slot_of(old) is not None
        assert extraction.slot_of(old) == extraction.slot_of(new), (old, new)
    assert extraction.slot_of("I am allergic to peanuts.") != extraction.slot_of(
        "I am allergic to shellfish."
    )
    assert extraction.slot_of("I drink tea.") != extraction.slot_of("I drink coffee.")


# --- Rewritten statements keep the person's words apart ---

# Words a rewrite may add to what the person typed ("I'm a nurse" → "I work as a nurse.").
_REWRITE_WORDS = frozenset(
    """i am my name is live in from work at as a an have been diagnosed with allergic to
    years old timezone prefer no answers don't eat intolerant""".split()  # noqa: SIM905
)


def _words(text: str) -> set[str]:
    import re

    text = re.sub(r"(?i)\bi'm\b", "i am", text.replace("\u2019", "'"))
    text = re.sub(r"(?i)\bwe're\b", "we are", text)
    return {w.lower() for w in re.findall(r"[\w'-]+", text)}


def _said(cases: list) -> list[str]:
    return [turn.text for case in cases for turn in case.turns if turn.role == "user"]


@pytest.mark.parametrize(
    "text",
    [
        "I work as a nurse at the city hospital.",
        "I'm a teacher at Lincoln High.",
        "I work as an engineer in Berlin.",
        "I'm a nurse in Lisbon now.",
        "I work as a data analyst for the council.",
        "My job is a designer at a small studio.",
        "I'm Ana, a nurse in Porto.",
        "I work at the city hospital as a nurse.",
        "I'm allergic to peanuts and I work as a chef at Nando's.",
        "I have a dog called Biscuit, a beagle.",
    ],
)
def test_a_rewritten_statement_glues_no_words_together(text: str) -> None:
    """Every word of a stored statement was typed by the person or is a rewrite's own word:
    "I work as a nurse at the city hospital" was once stored as "…a nurseat the city…"."""
    said = _words(text)
    for statement in statements.read(text).statements:
        added = _words(statement.content) - said - _REWRITE_WORDS
        assert not added, (statement.content, added)


def test_no_statement_of_the_labeled_set_glues_words_together() -> None:
    from tests.memory.labeled_extraction import CASES

    for text in _said(CASES):
        said = _words(text)
        for statement in statements.read(text).statements:
            added = _words(statement.content) - said - _REWRITE_WORDS
            assert not added, (text, statement.content, added)


def test_the_role_keeps_where_the_person_works_as_they_said_it() -> None:
    assert _read("I work as a nurse at the city hospital.") == [
        ("profile", "I work as a nurse at the city hospital.", "role")
    ]
    assert _read("I'm a teacher in Lyon.") == [("profile", "I work as a teacher in Lyon.", "role")]
