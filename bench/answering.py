"""Fact choice benchmark: does the small layout pick the memory that answers the question?

Run: `.venv/bin/python bench/answering.py` from the repository root (`--set tuned` or
`--set held-out` for one half, `--verbose` to see every question's choice). No language model:
the small layout's fact choice (`chat.services.small_layout_facts`) is deterministic. It starts
an embedded PostgreSQL in `<data dir>/bench/pg` (unless DATABASE_URL is set), stores a few
people's memories with `memory.services.remember` (real embeddings; a changed value is stored
as it was, then changed with `update_memory`), and asks each question through the real
`memory.services.recall`, as the chat does for a new conversation's first message.

Scoring, for the fact choice today and for the one before this benchmark (`before`, a copy
of the old `Recalled.answering` rule: the who-check, then nothing unless the best item's
cosine similarity reaches 0.35, the others needing the 0.3 floor):
- answered: an answerable question whose every expected memory was chosen (a compound
  question expects one per part it can answer; parts memory cannot answer expect nothing);
- parts: the expected memories chosen, over all of them;
- unanswerable given a fact: a question memory cannot answer that got any fact (should be 0);
- wrong party: a chosen memory about someone the question does not ask about (the person's
  own name for "What is my mother's name?", the brother's city for "Where do I live?");
- extra: a chosen memory that is not expected (on any question).
The tuned half (Ada, the tester's scenario, and Priya) is what the choice was tuned on; the
held-out half (Tomás and Grace) was written at the same time and never looked at while
tuning, so a rule that merely fits the tuned questions shows as a gap between the rows.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

DOMAIN = "answering.bench.invalid"
SELF = "self"

# (kind, content, what it said before it changed or None, whom it is about)
Memory = tuple[str, str, str | None, str]


@dataclass(frozen=True)
class Question:
    text: str
    # Memories (exact contents) that answer it; empty: memory cannot answer.
    expect: tuple[str, ...] = ()
    # Whom it asks about ("self", "dog", "sister"…); a chosen memory about anyone else is a
    # wrong-party choice.
    about: tuple[str, ...] = (SELF,)
    style: str = "single"


@dataclass(frozen=True)
class Person:
    name: str
    memories: list[Memory]
    questions: list[Question]


ADA_NAME, ADA_HOME = "My name is Ada Lovelace.", "I live in Paris."
ADA = Person(
    "ada",
    [
        ("profile", ADA_NAME, None, SELF),
        ("profile", ADA_HOME, "I live in London.", SELF),
    ],
    [
        # The tester's exact scenario: the dog part cannot be answered.
        Question(
            "Where do I live, and what is my dog called?", (ADA_HOME,), (SELF, "dog"), "compound"
        ),
        Question("Where do I live?", (ADA_HOME,)),
        Question("Which city am I in these days?", (ADA_HOME,), style="paraphrase"),
        Question("Remind me where I'm based", (ADA_HOME,), style="paraphrase"),
        Question("whats my name again", (ADA_NAME,), style="casual"),
        Question("What's my name and where do I live?", (ADA_NAME, ADA_HOME), style="compound"),
        Question("What is my mother's name?", (), ("mother",), "third party"),
        Question("What is my dog called?", (), ("dog",), "unanswerable"),
        Question("What's my job again?", (), style="unanswerable"),
        Question("How old am I?", (), style="unanswerable"),
    ],
)

P_NAME, P_HOME = "My name is Priya Shah.", "I live in Manchester."
P_ROLE = "I work as a pharmacist."
P_WORK, P_DIET, P_ALLERGY = "I work at Boots.", "I am vegan.", "I am allergic to shellfish."
P_LANG, P_DOG = "I speak Hindi and English.", "I have a dog called Pepper."
P_SISTER, P_SPORT = "My sister Anjali lives in Delhi.", "I love playing badminton."
P_TASK = "I am learning to drive."
PRIYA = Person(
    "priya",
    [
        ("profile", P_NAME, None, SELF),
        ("profile", P_HOME, "I live in Leeds.", SELF),
        ("profile", P_ROLE, None, SELF),
        ("profile", P_WORK, None, SELF),
        ("profile", P_DIET, None, SELF),
        ("profile", P_ALLERGY, None, SELF),
        ("profile", P_LANG, None, SELF),
        ("preference", P_SPORT, None, SELF),
        ("fact", P_DOG, None, "dog"),
        ("fact", P_SISTER, None, "sister"),
        ("task", P_TASK, None, SELF),
    ],
    [
        Question("Where do I live, and what is my dog called?", (P_HOME, P_DOG), (SELF, "dog"),
                 "compound"),
        Question("What's my job and where do I work?", (P_ROLE, P_WORK), style="compound"),
        Question("what city do i live in now", (P_HOME,), style="casual"),
        Question("Where am I living at the moment?", (P_HOME,), style="paraphrase"),
        Question("What do I do for a living?", (P_ROLE,), style="paraphrase"),
        Question("Who do I work for?", (P_WORK,), style="paraphrase"),
        Question("Can I eat cheese?", (P_DIET,), style="paraphrase"),
        Question("Is there any food I'm allergic to?", (P_ALLERGY,), style="paraphrase"),
        Question("Which languages can I speak?", (P_LANG,)),
        Question("wats my dogs name", (P_DOG,), ("dog",), "casual"),
        Question("Where does my sister live?", (P_SISTER,), ("sister",), "third party"),
        Question("What's my sister called?", (P_SISTER,), ("sister",), "third party"),
        Question("What sport do I play?", (P_SPORT,), style="paraphrase"),
        Question("What am I learning at the moment?", (P_TASK,)),
        Question("Am I vegetarian, and do I have any allergies?", (P_DIET, P_ALLERGY),
                 style="compound"),
        Question("Whats my name?", (P_NAME,), style="casual"),
        Question("What is my brother's name?", (), ("brother",), "third party"),
        Question("Where does my mother live?", (), ("mother",), "third party"),
        Question("What is my cat called?", (), ("cat",), "unanswerable"),
        Question("What's my favourite colour?", (), style="unanswerable"),
        Question("When is my birthday?", (), style="unanswerable"),
        Question("What car do I drive?", (), style="unanswerable"),
        Question("Which university did I go to?", (), style="unanswerable"),
    ],
)  # fmt: skip

# Held out: written with the tuned half, never looked at while tuning.
T_NAME, T_HOME = "My name is Tomás.", "I live in Valencia."
T_ROLE = "I work as a software engineer."
T_WORK, T_AGE, T_ORIGIN = "I work at Globex.", "I am 34 years old.", "I am from Bogotá."
T_ALLERGY, T_CAT = "I am allergic to pollen.", "I have a cat called Nube."
T_BROTHER, T_FILM = "My brother Diego is a chef.", "My favourite film is Alien."
T_TASK, T_TZ = "I am renovating my kitchen.", "My timezone is CET."
TOMAS = Person(
    "tomas",
    [
        ("profile", T_NAME, None, SELF),
        ("profile", T_HOME, "I live in Madrid.", SELF),
        ("profile", T_ROLE, None, SELF),
        ("profile", T_WORK, "I work at Initech.", SELF),
        ("profile", T_AGE, None, SELF),
        ("profile", T_ORIGIN, None, SELF),
        ("profile", T_ALLERGY, None, SELF),
        ("profile", T_TZ, None, SELF),
        ("preference", T_FILM, None, SELF),
        ("fact", T_CAT, None, "cat"),
        ("fact", T_BROTHER, None, "brother"),
        ("task", T_TASK, None, SELF),
    ],
    [
        Question("Where do I live and what's my cat's name?", (T_HOME, T_CAT), (SELF, "cat"),
                 "compound"),
        Question("How old am I, and where am I from?", (T_AGE, T_ORIGIN), style="compound"),
        Question("Which town do I call home nowadays?", (T_HOME,), style="paraphrase"),
        Question("Remind me what company I'm at", (T_WORK,), style="paraphrase"),
        Question("what is my proffesion", (T_ROLE,), style="casual"),
        Question("Where was I born?", (T_ORIGIN,), style="paraphrase"),
        Question("What time zone am I in?", (T_TZ,)),
        Question("what am i allergic to", (T_ALLERGY,), style="casual"),
        Question("What's my age?", (T_AGE,), style="paraphrase"),
        Question("What does my brother do?", (T_BROTHER,), ("brother",), "third party"),
        Question("Whats my brothers name", (T_BROTHER,), ("brother",), "third party"),
        Question("What's my favourite movie?", (T_FILM,), style="paraphrase"),
        Question("What home project am I working on?", (T_TASK,), style="paraphrase"),
        Question("Do you know what I'm called?", (T_NAME,), style="paraphrase"),
        Question("What's the name of my cat?", (T_CAT,), ("cat",), "paraphrase"),
        Question("What's my job, and what's my brother's job?", (T_ROLE, T_BROTHER),
                 (SELF, "brother"), "compound"),
        Question("What is my wife's name?", (), ("wife",), "third party"),
        Question("How old is my brother?", (), ("brother",), "third party"),
        Question("What is my dog called?", (), ("dog",), "unanswerable"),
        Question("What's my favourite food?", (), style="unanswerable"),
        Question("What did I eat for lunch?", (), style="unanswerable"),
        Question("Which bank do I use?", (), style="unanswerable"),
    ],
)  # fmt: skip

G_NAME, G_HOME, G_ROLE = "My name is Grace Okafor.", "I live in Lagos.", "I work as a teacher."
G_DIET, G_LANG = "I am vegetarian.", "I speak Yoruba and English."
G_DAUGHTER, G_HOBBY = "My daughter Ife is 9 years old.", "I enjoy gardening."
G_TASK = "I am training for a 10k run."
GRACE = Person(
    "grace",
    [
        ("profile", G_NAME, None, SELF),
        ("profile", G_HOME, "I live in Abuja.", SELF),
        ("profile", G_ROLE, None, SELF),
        ("profile", G_DIET, None, SELF),
        ("profile", G_LANG, None, SELF),
        ("preference", G_HOBBY, None, SELF),
        ("fact", G_DAUGHTER, None, "daughter"),
        ("task", G_TASK, None, SELF),
    ],
    [
        Question("Where do I stay now?", (G_HOME,), style="paraphrase"),
        Question("Whats my name and what do I do?", (G_NAME, G_ROLE), style="compound"),
        Question("what do i teach? i mean what's my work", (G_ROLE,), style="casual"),
        Question("Do I eat meat?", (G_DIET,), style="paraphrase"),
        Question("What languages do I know?", (G_LANG,), style="paraphrase"),
        Question("How old is my daughter?", (G_DAUGHTER,), ("daughter",), "third party"),
        Question("What's my daughter's name and where do I live?", (G_DAUGHTER, G_HOME),
                 ("daughter", SELF), "compound"),
        Question("What do I like doing in my free time?", (G_HOBBY,), style="paraphrase"),
        Question("What race am I getting ready for?", (G_TASK,), style="paraphrase"),
        Question("remind me where im living", (G_HOME,), style="casual"),
        Question("What is my son's name?", (), ("son",), "third party"),
        Question("What is my husband's job?", (), ("husband",), "third party"),
        Question("Which church do I attend?", (), style="unanswerable"),
        Question("What is my phone number?", (), style="unanswerable"),
        Question("How tall am I?", (), style="unanswerable"),
    ],
)  # fmt: skip

SETS = {"tuned": [ADA, PRIYA], "held-out": [TOMAS, GRACE]}


def before(recalled: Any, question: str) -> list[Any]:
    """The fact choice before this benchmark (a copy of the old `Recalled.answering` rule)."""
    from django.conf import settings

    from memory import services

    named = services.parties_in(question)
    about_person = not named or bool(
        re.search(r"\b(?:i|me|myself|i'm|i've|i'd|i'll|am i)\b", question, re.IGNORECASE)
    )
    fitting = []
    for item in recalled.items:
        mentioned = services.parties_in(item.content)
        if (mentioned & named) or (not mentioned and about_person):
            fitting.append(item)
    fitting.sort(key=lambda item: (-item.similarity, item.id))
    if not fitting or fitting[0].similarity < 0.35:
        return []
    return [i for i in fitting if i.similarity >= settings.MEMORY_MIN_SIMILARITY][:2]


def after(recalled: Any, question: str) -> list[Any]:
    from chat import services as chat_services

    return chat_services.small_layout_facts(recalled, question).items


@dataclass
class Tally:
    answerable: int = 0
    answered: int = 0
    parts: int = 0
    parts_chosen: int = 0
    unanswerable: int = 0
    given_fact: int = 0
    wrong_party: int = 0
    extra: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, question: Question, chosen: list[str], about: dict[str, str]) -> None:
        expected = set(question.expect)
        if expected:
            self.answerable += 1
            self.parts += len(expected)
            self.parts_chosen += len(expected & set(chosen))
            self.answered += expected <= set(chosen)
        else:
            self.unanswerable += 1
            self.given_fact += bool(chosen)
        self.wrong_party += sum(about[c] not in question.about for c in chosen)
        self.extra += len(set(chosen) - expected)
        if expected - set(chosen) or set(chosen) - expected:
            self.misses.append(f"{question.text!r}: chose {chosen}")

    def row(self) -> str:
        return (
            f"{self.answered:>3}/{self.answerable:<3} {self.parts_chosen:>3}/{self.parts:<3} "
            f"{self.given_fact:>3}/{self.unanswerable:<3} {self.wrong_party:>5} {self.extra:>5}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", choices=sorted(SETS), help="default: both")
    parser.add_argument("--verbose", action="store_true", help="every question's choice")
    args = parser.parse_args()
    common.bootstrap()
    bench_db = common.BenchDatabase("bench")
    started = time.perf_counter()
    try:
        bench_db.start()
        import django

        django.setup()
        from django.core.management import call_command

        from accounts.models import User
        from memory import services

        call_command("migrate", interactive=False, verbosity=0)
        User.objects.filter(email__endswith="@" + DOMAIN).delete()
        print(common.machine_line())
        print(f"{common.load_line()} at the start")
        print(
            "answered = every expected memory chosen; parts = expected memories chosen; "
            "unans. = unanswerable questions given a fact; wrong = memories about the wrong "
            "party; extra = chosen and not expected"
        )
        print(f"{'set':9} {'rule':7} {'answered':>7} {'parts':>7} {'unans.':>7} {'wrong':>5} "
              f"{'extra':>5}")  # fmt: skip
        for set_name in args.set or list(SETS):
            tallies = {"before": Tally(), "after": Tally()}
            for person in SETS[set_name]:
                user = User.objects.create(email=f"{person.name}-{secrets.token_hex(3)}@{DOMAIN}")
                about = {}
                for kind, content, old, party in person.memories:
                    memory = services.remember(user=user, content=old or content, kind=kind)
                    if old:
                        services.update_memory(user=user, memory_id=memory.pk, content=content)
                    about[content] = party
                for question in person.questions:
                    recalled = services.recall(user=user, query=question.text)
                    for rule, choose in (("before", before), ("after", after)):
                        chosen = [item.content for item in choose(recalled, question.text)]
                        tallies[rule].add(question, chosen, about)
                        if args.verbose:
                            print(f"  {rule:6} {question.text!r} -> {chosen}")
            for rule, tally in tallies.items():
                print(f"{set_name:9} {rule:7} {tally.row()}")
            if args.verbose:
                for miss in tallies["after"].misses:
                    print(f"    after missed: {miss}")
        print(f"{common.load_line()} at the end; {time.perf_counter() - started:.0f} s")
    finally:
        common.close_django_connections()
        bench_db.stop()


if __name__ == "__main__":
    main()
