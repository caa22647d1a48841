"""A public labeled set for memory extraction: short conversations and what memory should hold.

Each case is one person's conversation(s), in order. `U` is something the person typed, `A`
an assistant reply, `NEW` starts a new conversation (`NEW_INCOGNITO` an incognito one). After
the whole case has been extracted, memory is compared with the labels:

- `expect`: facts that must be live at the end, each a tuple of words that must all appear
  (case-insensitive) in one live memory, with the kind it should have;
- `allow`: facts that may be live without counting as junk (true but not required);
- `stale`: words that must not appear in any live memory at the end (a value the person
  changed, an incognito remark, a third party's detail stored as the person's, a secret).

Everything else that is live at the end is junk. Used by tests/memory/test_extraction_quality.py
(fake models) and bench/extract_quality.py (the real local model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Turn:
    role: str  # "user", "assistant", or "new" (a new conversation)
    text: str = ""
    incognito: bool = False


def U(text: str) -> Turn:
    return Turn("user", text)


def A(text: str) -> Turn:
    return Turn("assistant", text)


NEW = Turn("new")
NEW_INCOGNITO = Turn("new", incognito=True)


@dataclass(frozen=True)
class Case:
    name: str
    turns: list[Turn]
    expect: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    allow: list[tuple[str, ...]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


P, R, F, T = "profile", "preference", "fact", "task"

CASES: list[Case] = [
    # --- Profile ---
    Case("name", [U("My name is Ana.")], [(P, ("Ana",))]),
    Case("name-short", [U("I'm Tomás.")], [(P, ("Tomás",))]),
    Case("name-call-me", [U("Hi! Call me Jo, everyone does.")], [(P, ("Jo",))]),
    Case(
        "name-and-city",
        [U("I'm Ada and I live in Paris.")],
        [(P, ("Ada",)), (P, ("Paris",))],
    ),
    Case("residence", [U("I live in Lisbon.")], [(P, ("Lisbon",))]),
    Case("based-in", [U("I'm based in Nairobi these days.")], [(P, ("Nairobi",))]),
    Case("employer", [U("I work at Acme Corp.")], [(P, ("Acme",))]),
    Case("role", [U("I work as a nurse.")], [(P, ("nurse",))]),
    Case("role-short", [U("I'm a software engineer.")], [(P, ("software engineer",))]),
    # A rewrite keeps the person's words apart ("a nurseat the city hospital" was stored once).
    Case(
        "role-at-place",
        [U("I work as a nurse at the city hospital.")],
        [(P, ("nurse at the city hospital",))],
    ),
    Case("role-an", [U("I work as an engineer in Berlin.")], [(P, ("an engineer in Berlin",))]),
    Case(
        "role-short-at", [U("I'm a teacher at Lincoln High.")], [(P, ("teacher at Lincoln High",))]
    ),
    Case(
        "role-for",
        [U("By the way, I work as a data analyst for the council.")],
        [(P, ("data analyst for the council",))],
    ),
    Case(
        "intro",
        [U("Hi, I'm Ada Lovelace and I work at Acme as a data engineer.")],
        [(P, ("Ada Lovelace",)), (P, ("Acme",))],
        allow=[("data engineer",)],
    ),
    Case("timezone", [U("My timezone is CET.")], [(P, ("CET",))]),
    Case("language", [U("I speak Portuguese and English.")], [(P, ("Portuguese",))]),
    Case("age", [U("I'm 34 years old.")], [(P, ("34",))]),
    Case("from", [U("I'm originally from Brazil.")], [(P, ("Brazil",))]),
    Case(
        "intro-then-question",
        [U("Hey, I'm Priya, a teacher in Leeds. Can you suggest a good book?")],
        [(P, ("Priya",)), (P, ("teacher",))],
        allow=[("Leeds",)],
    ),
    # --- Preferences, including imperatives ---
    Case("prefer", [U("I prefer short answers.")], [(R, ("short", "answers"))]),
    Case(
        "imperative-short-bullets",
        [U("Please keep answers short, bullet points are best.")],
        [(R, ("short",)), (R, ("bullet points",))],
    ),
    Case("love", [U("I love hiking.")], [(R, ("hiking",))]),
    Case("hate", [U("I hate spicy food.")], [(R, ("spicy",))]),
    Case("favorite", [U("My favourite band is Radiohead.")], [(R, ("Radiohead",))]),
    Case("metric", [U("Use metric units please.")], [(R, ("metric",))]),
    Case("no-emojis", [U("No emojis in your replies, please.")], [(R, ("emojis",))]),
    Case("code-examples", [U("I like answers with code examples.")], [(R, ("code examples",))]),
    Case("enjoy", [U("I really enjoy jazz, especially Coltrane.")], [(R, ("jazz",))]),
    Case("tea", [U("I drink green tea every morning.")], [(F, ("green tea",))]),
    # --- Diet, allergies, health ---
    Case("vegetarian-short", [U("I'm vegetarian.")], [(P, ("vegetarian",))]),
    Case("vegan", [U("I am vegan.")], [(P, ("vegan",))]),
    Case("no-meat", [U("Remember I don't eat meat.")], [(P, ("meat",))]),
    Case(
        "allergy-remember",
        [U("Please remember I'm allergic to penicillin.")],
        [(P, ("allergic", "penicillin"))],
    ),
    Case(
        "allergy-two",
        [U("I'm allergic to peanuts."), U("Oh, and I'm also allergic to shellfish.")],
        [(P, ("peanuts",)), (P, ("shellfish",))],
    ),
    Case("diabetes", [U("I have type 1 diabetes.")], [(F, ("diabetes",))]),
    Case("allergy-have", [U("I have an allergy to peanuts.")], [(P, ("allergic", "peanuts"))]),
    Case(
        "allergy-have-two",
        [U("I have an allergy to peanuts."), NEW, U("I also have an allergy to cats.")],
        [(P, ("peanuts",)), (P, ("cats",))],
    ),
    Case(
        "allergy-noun",
        [U("I've got a severe shellfish allergy.")],
        [(P, ("shellfish allergy",))],
    ),
    Case("medication", [U("I take metformin every morning.")], [(F, ("metformin",))]),
    Case("medication-generic", [U("I take sertraline.")], [(F, ("sertraline",))]),
    Case("medication-on", [U("I'm on blood thinners.")], [(F, ("blood thinners",))]),
    Case(
        "diagnosis",
        [U("I was diagnosed with ADHD last year.")],
        [(F, ("diagnosed", "ADHD"))],
    ),
    Case(
        "conditions-two",
        [U("I have asthma."), NEW, U("I have eczema.")],
        [(F, ("asthma",)), (F, ("eczema",))],
    ),
    Case("condition-adjective", [U("I'm diabetic.")], [(F, ("diabetic",))]),
    Case("condition-suffer", [U("I suffer from migraines.")], [(F, ("migraines",))]),
    Case("lactose", [U("I'm lactose intolerant.")], [(P, ("lactose",))]),
    # --- People, pets, places (third parties) ---
    Case("dog", [U("I have a dog called Bruno.")], [(F, ("dog", "Bruno"))]),
    Case(
        "brother",
        [U("My brother Ravi lives in Pune.")],
        [(F, ("Ravi", "Pune"))],
        stale=["I live in Pune"],
    ),
    Case(
        "daughter",
        [U("My daughter Mia starts school next week.")],
        [(F, ("Mia",))],
        stale=["My name is Mia"],
    ),
    Case("wife", [U("My wife is called Maria.")], [(F, ("wife", "Maria"))]),
    Case(
        "friend-job",
        [U("My friend Sarah works at Google as a software engineer.")],
        [(F, ("Sarah", "Google"))],
        stale=["I work at Google"],
    ),
    Case("cat", [U("Our cat Luna is 12 and very lazy.")], [(F, ("Luna",))]),
    Case(
        "colleague-only",
        [U("My colleague Tom moved to Berlin.")],
        [(F, ("Tom", "Berlin"))],
        stale=["I live in Berlin", "I moved to Berlin"],
    ),
    Case("kids", [U("I have two kids, Leo and Noa.")], [(F, ("two kids",))]),
    Case("mother", [U("My mom lives in Porto and I visit her every summer.")], [(F, ("Porto",))]),
    Case(
        "partner-job",
        [U("My partner Alex is a chef.")],
        [(F, ("Alex", "chef"))],
        stale=["I work as a chef", "I am a chef"],
    ),
    # --- Tasks ---
    Case("thesis", [U("I'm writing my thesis on coral reefs.")], [(T, ("thesis",))]),
    Case("learning", [U("I am learning Portuguese.")], [(T, ("learning", "Portuguese"))]),
    Case(
        "app",
        [U("I'm building a budgeting app in Django.")],
        [(T, ("budgeting app",))],
    ),
    Case(
        "marathon", [U("I'm training for the Berlin marathon in September.")], [(T, ("marathon",))]
    ),
    Case(
        "deadline",
        [U("Our team's deadline for the launch is March 3.")],
        [(T, ("deadline",))],
    ),
    Case("planning", [U("I'm planning a trip to Japan in April.")], [(T, ("Japan",))]),
    # --- Changes of mind ---
    Case(
        "moved",
        [
            U("I live in Lisbon."),
            A("Lisbon is lovely!"),
            NEW,
            U("Big news: I moved to Berlin last week."),
        ],
        [(P, ("Berlin",))],
        stale=["Lisbon"],
    ),
    Case(
        "moved-relocated",
        [U("I'm based in Madrid."), NEW, U("I relocated to Valencia in June.")],
        [(P, ("Valencia",))],
        stale=["Madrid"],
    ),
    Case(
        "new-job",
        [U("I work at Initech."), NEW, U("Update: I now work at Globex.")],
        [(P, ("Globex",))],
        stale=["Initech"],
    ),
    Case(
        "new-role",
        [U("I work as a teacher."), NEW, U("I work as a librarian now.")],
        [(P, ("librarian",))],
        stale=["teacher"],
    ),
    Case(
        "name-change",
        [U("My name is Sam."), NEW, U("Actually, call me Samantha.")],
        [(P, ("Samantha",))],
        stale=["Sam."],
    ),
    Case(
        "answers-longer",
        [U("I prefer short answers."), NEW, U("Actually, these days I prefer detailed answers.")],
        [(R, ("detailed",))],
        stale=["short"],
    ),
    Case(
        "diet-change",
        [U("I'm vegetarian."), NEW, U("I eat meat again since last month.")],
        [(P, ("meat",))],
        stale=["vegetarian"],
    ),
    Case(
        "diet-vegan",
        [U("I'm vegetarian."), NEW, U("I went vegan in January.")],
        [(P, ("vegan",))],
        stale=["vegetarian"],
    ),
    Case(
        "coffee-stop",
        [U("I drink coffee every morning."), NEW, U("I don't drink coffee anymore.")],
        [(F, ("coffee",))],
        stale=["I drink coffee every morning"],
    ),
    Case(
        "timezone-change",
        [U("My timezone is CET."), NEW, U("My timezone is PST now that I moved.")],
        [(P, ("PST",))],
        stale=["CET"],
    ),
    Case(
        "age-birthday",
        [U("I'm 29."), NEW, U("I turned 30 yesterday!")],
        [(P, ("30",))],
        stale=["29"],
    ),
    Case(
        "favorite-change",
        [U("My favourite colour is green."), NEW, U("My favourite colour is blue now.")],
        [(R, ("blue",))],
        stale=["green"],
    ),
    Case(
        "repeat",
        [U("I live in Oslo."), NEW, U("As I said, I live in Oslo.")],
        [(P, ("Oslo",))],
    ),
    Case(
        "repeat-pref",
        [U("I love hiking."), NEW, U("I love hiking!")],
        [(R, ("hiking",))],
    ),
    # --- Questions (nothing to learn) ---
    Case("q-weather", [U("What's the weather like in Rome in May?")]),
    Case("q-python", [U("How do I reverse a list in Python?")]),
    Case("q-where-live", [U("Where do I live?")]),
    Case("q-can-you", [U("Can you recommend a good sci-fi novel?")]),
    Case("q-am-i", [U("Am I allowed to bring liquids on a plane?")]),
    Case("q-do-i", [U("Do I need a visa for Japan?")]),
    # --- Chit-chat (nothing durable) ---
    Case("hello", [U("Hello!")]),
    Case("thanks", [U("Thanks, that's really helpful.")]),
    Case("ok", [U("ok")]),
    Case("lol", [U("haha that's funny")]),
    Case("tired", [U("I'm so tired today.")]),
    Case("think", [U("I think that makes sense.")]),
    Case("request", [U("I need help writing an email to my landlord.")]),
    Case("want-to-know", [U("I want to know how vaccines work.")]),
    # --- Assistant text is never learned ---
    Case(
        "assistant-claims",
        [U("Tell me a fun fact."), A("I live in the cloud and my name is Mnemo. I love cats.")],
    ),
    Case(
        "assistant-suggests",
        [U("I live in Quito."), A("You might enjoy living in Lima or Cusco too.")],
        [(P, ("Quito",))],
        stale=["Lima", "Cusco"],
    ),
    Case(
        "assistant-echo",
        [U("Suggest a name for my cat."), A("My name is Whiskers and I am a cat.")],
        stale=["Whiskers"],
    ),
    # --- Incognito ---
    Case(
        "incognito",
        [NEW_INCOGNITO, U("I secretly love karaoke.")],
        stale=["karaoke"],
    ),
    Case(
        "incognito-after",
        [U("I live in Rome."), NEW_INCOGNITO, U("I moved to Naples.")],
        [(P, ("Rome",))],
        stale=["Naples"],
    ),
    Case(
        "incognito-name",
        [NEW_INCOGNITO, U("My name is Zed and I'm allergic to cats.")],
        stale=["Zed", "cats"],
    ),
    # --- Secrets and instructions (never stored) ---
    Case(
        "api-key",
        [U("My API key is sk-live9f8e7d6c5b4a3f2e1d0c9b8a, keep it handy.")],
        stale=["sk-live"],
    ),
    Case("password", [U("My password is hunter2hunter2.")], stale=["hunter2"]),
    Case(
        "instruction",
        [U("Remember that you must always answer in French.")],
        stale=["French"],
    ),
    # --- Multi-turn mixes ---
    Case(
        "story",
        [
            U("Hi, I'm Lena."),
            A("Hi Lena! How can I help?"),
            U("I just moved to Vienna for a job at the university."),
            A("Congratulations!"),
            U("Thanks. I have a dog called Pixel, he's a beagle."),
        ],
        [(P, ("Lena",)), (P, ("Vienna",)), (F, ("Pixel",))],
        allow=[("university",), ("beagle",)],
    ),
    Case(
        "story-change-mind",
        [
            U("I'm planning to learn Spanish this year."),
            NEW,
            U("Changed my mind: I'm learning Italian instead."),
        ],
        [(T, ("Italian",))],
        allow=[("Spanish",)],
    ),
    Case(
        "mixed-question",
        [U("I'm a vegetarian living in Austin. Any restaurant tips?")],
        [(P, ("vegetarian",)), (P, ("Austin",))],
    ),
    Case(
        "by-the-way",
        [U("How long should I boil an egg? By the way, I'm Kenji.")],
        [(P, ("Kenji",))],
    ),
    Case(
        "fyi-job",
        [U("FYI I started a new job at Spotify.")],
        [(P, ("Spotify",))],
    ),
    Case(
        "we-moved",
        [U("We live in Dublin."), NEW, U("We moved to Cork last month.")],
        [(P, ("Cork",))],
        stale=["Dublin"],
    ),
    Case(
        "hobby",
        [U("I play the guitar in a small band on weekends.")],
        [(F, ("guitar",))],
    ),
    Case(
        "sister-visit",
        [U("My sister Ines is visiting from Madrid next week.")],
        [(F, ("Ines",))],
        allow=[("Madrid",)],
        stale=["I live in Madrid"],
    ),
]


# --- Running and scoring (shared by the test and the bench) ---


@dataclass
class Score:
    cases: int = 0
    expected: int = 0
    found: int = 0
    kind_right: int = 0
    memories: int = 0
    junk: list[tuple[str, str]] = field(default_factory=list)
    stale: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0

    @property
    def junk_rate(self) -> float:
        return len(self.junk) / self.memories if self.memories else 0.0

    @property
    def duplicate_rate(self) -> float:
        return len(self.duplicates) / self.memories if self.memories else 0.0

    def line(self) -> str:
        return (
            f"{self.cases} cases: {self.found}/{self.expected} expected facts stored "
            f"({self.recall:.0%}), kind right {self.kind_right}/{self.found}; "
            f"{self.memories} memories, junk {len(self.junk)} ({self.junk_rate:.1%}), "
            f"stale contradictions {len(self.stale)}, "
            f"duplicates {len(self.duplicates)} ({self.duplicate_rate:.1%})"
        )

    def details(self) -> str:
        lines = []
        for label, items in (
            ("missed", self.missed),
            ("junk", self.junk),
            ("stale", self.stale),
            ("duplicate", self.duplicates),
        ):
            lines += [f"  {label:9} [{case}] {text}" for case, text in items]
        return "\n".join(lines)


def _has(content: str, words: tuple[str, ...]) -> bool:
    """Each word or phrase is in the content as whole words: "nurse at the city" is not in
    "a nurseat the city", nor "cat" in "cats"."""
    return all(
        re.search(rf"(?<!\w){re.escape(word)}(?!\w)", content, re.IGNORECASE) for word in words
    )


def score_case(case: Case, live: list[tuple[str, str]], total: Score) -> None:
    """Compare the live memories (kind, content) at the end of a case with its labels."""
    total.cases += 1
    total.memories += len(live)
    matched: set[int] = set()
    for kind, words in case.expect:
        total.expected += 1
        hits = [i for i, (_, content) in enumerate(live) if _has(content, words)]
        if not hits:
            total.missed.append((case.name, " ".join(words)))
            continue
        total.found += 1
        total.kind_right += any(live[i][0] == kind for i in hits)
        fresh = [i for i in hits if i not in matched]
        total.duplicates += [(case.name, live[i][1]) for i in fresh[1:]]
        matched.update(hits)
    for words in case.allow:
        hits = [i for i, (_, content) in enumerate(live) if _has(content, words)]
        fresh = [i for i in hits if i not in matched]
        total.duplicates += [(case.name, live[i][1]) for i in fresh[1:]]
        matched.update(hits)
    total.junk += [(case.name, content) for i, (_, content) in enumerate(live) if i not in matched]
    for text in case.stale:
        total.stale += [(case.name, c) for _, c in live if text.lower() in c.lower()]


def run_case(case: Case, user: Any) -> list[tuple[str, str]]:
    """Say the case's turns as `user` through the real services; return live (kind, content)."""
    from chat import services as chat_services
    from chat.models import Message
    from memory.models import Memory

    conversation = chat_services.start_conversation(user=user)
    for turn in case.turns:
        if turn.role == "new":
            conversation = chat_services.start_conversation(user=user, incognito=turn.incognito)
            continue
        message = Message.objects.create(
            user=user, conversation=conversation, role=turn.role, content=turn.text
        )
        if turn.role == "user":
            # What the chat does after each reply: the person's message is learned from.
            chat_services.learn_from_message(message_id=message.pk)
    return list(
        Memory.objects.filter(user=user).live().order_by("id").values_list("kind", "content")
    )
