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
