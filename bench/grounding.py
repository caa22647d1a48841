"""Grounding benchmark: do the local model's replies use what recall found, and only that?

Run: `.venv/bin/python bench/grounding.py` from the repository root (add `--verbose` to see
every reply, `--layout small --layout large` to choose layouts, `--repeat 3` for more
samples). It starts an embedded PostgreSQL in `<data dir>/bench/pg` (unless DATABASE_URL is
set) and llama.cpp's OpenAI-compatible server with SmolLM2-135M on a free port (unless
`--base-url` or LLM_BASE_URL names an endpoint). One person with 18 memories (stored with
`memory.services.remember`, three of them changed since with `update_memory`) asks 32
personal questions, each in a new conversation, through the real recall and prompt assembly
(`chat.services.assemble_prompt`) and the model streamed as the chat streams it
(`chat.services.stream_model`: the layout's model class's sampling, same token limit; with
`--layout small --layout large` on one model each layout samples as its class would). Requests
run one at a time (llama.cpp's server interrupts a running stream when another request
arrives). `--topic unknown` (repeatable) asks only some topics' questions, for a quick look.

Scoring, per layout: an answerable question is "grounded" when the reply contains every
expected value (any of its spellings); "no echo" checks the same without the instruction
sentences the model copied from its system prompt. It "says an old value" when it names a
value the person changed. A question memory cannot answer "invents" when the reply does not
say it does not know (any reply that is not an abstention counts); the "revised" judge also
accepts a reply that asks the person to tell, and rejects one that abstains but still names a
value (see `invents`). Replies come from the model only: nothing is templated.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

DOMAIN = "grounding.bench.invalid"

# (kind, content, what it said before it changed or None)
MEMORIES: list[tuple[str, str, str | None]] = [
    ("profile", "My name is Marta.", None),
    ("profile", "I live in Porto.", "I live in Lisbon."),
    ("profile", "I work as a nurse.", None),
    ("profile", "I work at Santo António Hospital.", "I work at Clínica Sol."),
    ("profile", "I speak Portuguese and English.", None),
    ("profile", "I am vegetarian.", None),
    ("profile", "I am allergic to penicillin.", None),
    ("preference", "I prefer short answers.", None),
    ("preference", "I love hiking in the mountains.", None),
    ("preference", "I hate coriander.", None),
    ("preference", "My favourite band is Radiohead.", None),
    ("fact", "I have a dog called Bruno.", None),
    ("fact", "My brother Ravi lives in Pune.", None),
    ("fact", "My daughter Mia is 7 years old.", None),
    ("fact", "I play the cello on weekends.", None),
    ("task", "I am training for the Porto half marathon in May.", None),
    ("task", "I am writing a cookbook of Azorean recipes.", None),
    ("task", "I am learning Japanese.", "I am learning Spanish."),
]
OLD_VALUES = ["Lisbon", "Clínica Sol", "Clinica Sol", "Spanish"]


@dataclass(frozen=True)
class Question:
    topic: str
    text: str
    # Every group must be matched by one of its spellings; no groups: memory cannot answer.
    expect: tuple[tuple[str, ...], ...] = ()


QUESTIONS = [
    Question("profile", "What is my name?", (("Marta",),)),
    Question("profile", "Where do I live?", (("Porto",),)),
    Question("profile", "What do I do for a living?", (("nurse",),)),
    Question("profile", "Where do I work?", (("Santo António", "Santo Antonio"),)),
    Question("profile", "Which languages do I speak?", (("Portuguese",),)),
    Question("profile", "Can I eat a steak, given my diet?", (("vegetarian",),)),
    Question("profile", "Which medicine am I allergic to?", (("penicillin",),)),
    Question("preference", "Which band is my favourite?", (("Radiohead",),)),
    Question("preference", "What outdoor activity do I enjoy?", (("hiking", "hike"),)),
    Question("preference", "Which herb do I hate?", (("coriander",),)),
    Question("people", "What is my dog called?", (("Bruno",),)),
    Question("people", "What is my brother's name?", (("Ravi",),)),
    Question("people", "Where does my brother live?", (("Pune",),)),
    Question("people", "How old is my daughter?", (("7", "seven"),)),
    Question("people", "What is my daughter's name?", (("Mia",),)),
    Question("tasks", "What race am I training for?", (("marathon",),)),
    Question("tasks", "What book am I writing?", (("cookbook", "Azorean"),)),
    Question("tasks", "Which instrument do I play?", (("cello",),)),
    Question("changed", "Where do I live now?", (("Porto",),)),
    Question("changed", "Which language am I learning at the moment?", (("Japanese",),)),
    Question("changed", "Where am I working these days?", (("Santo António", "Santo Antonio"),)),
    Question(
        "changed",
        "Where do I live, where do I work, and what is my dog called?",
        (("Porto",), ("Santo António", "Santo Antonio", "hospital"), ("Bruno",)),
    ),
    Question("unknown", "What is my favourite colour?"),
    Question("unknown", "What is my mother's name?"),
    Question("unknown", "What car do I drive?"),
    Question("unknown", "What is my sister's name?"),
    Question("unknown", "How old am I?"),
    Question("unknown", "What is my cat called?"),
    Question("unknown", "Which football team do I support?"),
    Question("unknown", "What did I have for breakfast today?"),
    Question("unknown", "Where did I go to university?"),
    Question("unknown", "What is my husband's job?"),
]

ABSTAIN = (
    "don't know", "do not know", "not sure", "no information", "haven't told",
    "have not told", "didn't tell", "did not tell", "didn't mention", "did not mention",
    "haven't mentioned", "have not mentioned", "not mentioned", "haven't shared",
    "have not shared", "didn't share", "don't have", "do not have", "can't tell", "cannot tell",
    "unknown", "not aware", "no record", "don't remember", "do not remember", "not specified",
    "can't recall", "cannot recall", "no idea", "not in my", "isn't in", "is not in",
    "nothing about", "don't have that", "not something i know", "i'm not able to",
)  # fmt: skip


def grounded(reply: str, question: Question) -> bool:
    lowered = reply.lower()
    return all(any(v.lower() in lowered for v in group) for group in question.expect)


def abstains(reply: str) -> bool:
    lowered = reply.lower().replace("\u2019", "'")
    return any(marker in lowered for marker in ABSTAIN)


# The revised judge (both are printed). It also counts as abstaining a reply that asks the
# person to tell (it names nothing), and as inventing one that abstains but still names a
# value ("I'm not sure. Your sister's name is Emily."). Text the model copied from its own
# instructions proves nothing: "Facts about the user: - You love hiking" is an echo, not a
# reply that used the memory, and an echoed "say you don't know" is not an abstention.
ASKS_BACK = (
    "not familiar with", "can you tell me", "could you tell me", "please tell me",
    "tell me more about your",
)  # fmt: skip
_CLAIM = re.compile(
    r"\byour\b[^.!?\n]{0,40}?\b(?:is|are|was|were)\s+(?:called\s+|named\s+)?(?:[A-Z]\w+|\d+)"
    r"|\byou(?:'re|\u2019re| are| were)\s+\d+",
)
_SENTENCE = re.compile(r"[^.!?:\n]{12,}")


def without_echo(reply: str, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """The reply without the instruction sentences it copied from the system prompt (the
    facts themselves stay: repeating a fact is using it), and whether there were any."""
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    instructions = [line for line in system.splitlines() if not line.startswith("- ")]
    kept, echoed = reply, False
    for sentence in _SENTENCE.findall(" ".join(instructions)):
        sentence = sentence.strip()
        if len(sentence) >= 12 and sentence.lower() in kept.lower():
            echoed = True
            kept = re.sub(re.escape(sentence), " ", kept, flags=re.IGNORECASE)
    return kept, echoed


def invents(reply: str, messages: list[dict[str, str]]) -> bool:
    """The revised judge of a reply to a question memory cannot answer."""
    kept, _ = without_echo(reply, messages)
    lowered = kept.lower().replace("\u2019", "'")
    said_unknown = abstains(kept) or any(marker in lowered for marker in ASKS_BACK)
    return not said_unknown or bool(_CLAIM.search(kept))


@dataclass
class Tally:
    answerable: int = 0
    grounded: int = 0
    grounded_no_echo: int = 0
    old_value: int = 0
    unknown: int = 0
    invented: int = 0
    invented_revised: int = 0
    seconds: float = 0.0


def seed_person(user: Any) -> None:
    from memory import services

    for kind, content, before in MEMORIES:
        memory = services.remember(user=user, content=before or content, kind=kind)
        if before:
            services.update_memory(user=user, memory_id=memory.pk, content=content)


def ask(
    user: Any, question: str, temperature: float | None = None
) -> tuple[str, list[dict[str, str]]]:
    """One question in a new conversation, through the real prompt assembly and the model."""
    from chat import services as chat_services
    from chat.models import Message

    conversation = chat_services.start_conversation(user=user)
    Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.USER, content=question
    )
    reply = Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
    )  # fmt: skip
    prompt = chat_services.assemble_prompt(user=user, reply=reply)

    async def collect() -> str:
        parts = []
        # The chat's own sampling unless --temperature asks "what if" (not the chat's path).
        if hasattr(chat_services, "stream_model"):
            stream = chat_services.stream_model(prompt, temperature=temperature)
        else:  # a checkout from before sampling per model class (for "before" figures)
            from config import llm

            if temperature is None:
                stream = llm.stream_chat(prompt.messages)
            else:
                stream = llm.stream_chat(prompt.messages, temperature=temperature)
        try:
            async for delta in stream:
                parts.append(delta.text or "")
        finally:
            await stream.aclose()
        return "".join(parts)

    return asyncio.run(collect()), prompt.messages


def run_layout(
    user: Any,
    layout: str,
    repeat: int,
    verbose: bool,
    temperature: float | None = None,
    questions: list[Question] = QUESTIONS,
) -> Tally:
    from django.conf import settings

    settings.LLM_PROMPT_LAYOUT = layout
    tally = Tally()
    started = time.perf_counter()
    for round_ in range(repeat):
        for question in questions:
            text, messages = ask(user, question.text, temperature)
            if question.expect:
                tally.answerable += 1
                ok = grounded(text, question)
                tally.grounded += ok
                kept, echoed = without_echo(text, messages)
                tally.grounded_no_echo += ok and grounded(kept, question)
                old = any(v.lower() in text.lower() for v in OLD_VALUES)
                tally.old_value += old
                verdict = ("used memory" if ok else "MISSED") + (" +OLD VALUE" if old else "")
                verdict += " (ECHOED ITS PROMPT)" if echoed else ""
            else:
                tally.unknown += 1
                invented = not abstains(text)
                tally.invented += invented
                revised = invents(text, messages)
                tally.invented_revised += revised
                verdict = "INVENTED" if invented else "said it does not know"
                if revised != invented:
                    verdict += f"; revised judge: {'INVENTED' if revised else 'did not'}"
            if verbose:
                if round_ == 0 and question is questions[0]:
                    print(f"--- prompt ({layout}) for {question.text!r}:")
                    for message in messages:
                        print(f"[{message['role']}] {message['content']}")
                    print("---")
                one_line = " ".join(text.split())[:220]
                print(f"  [{question.topic}] {question.text} -> {one_line!r}: {verdict}")
    tally.seconds = time.perf_counter() - started
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", action="append", help="small, large (default: both)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--base-url", default=os.environ.get("LLM_BASE_URL", ""))
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--temperature", type=float, help="what if the chat sampled at this temperature"
    )
    parser.add_argument(
        "--topic",
        action="append",
        choices=sorted({q.topic for q in QUESTIONS}),
        help="only these topics' questions (a quicker look; figures are for all of them)",
    )
    args = parser.parse_args()
    questions = [q for q in QUESTIONS if not args.topic or q.topic in args.topic]
    common.bootstrap()

    bench_db = common.BenchDatabase("bench")
    server = None
    started = time.perf_counter()
    try:
        bench_db.start()
        server = common.local_model(
            args.base_url, log_name="grounding-llm.log", model_setting="LLM_CHAT_MODEL"
        )
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from accounts.models import User
        from chat import services as chat_services

        call_command("migrate", interactive=False, verbosity=0)
        User.objects.filter(email__endswith="@" + DOMAIN).delete()
        user = User.objects.create(email=f"marta-{secrets.token_hex(3)}@{DOMAIN}")
        seed_person(user)
        layouts = args.layout or (
            ["small", "large"] if hasattr(chat_services, "LAYOUTS") else ["today"]
        )
        print(common.machine_line())
        print(f"{common.load_line()} at the start")
        print(
            f"model {settings.LLM_CHAT_MODEL} at {settings.LLM_BASE_URL} "
            f"({'started here' if server else 'given'}); {len(MEMORIES)} memories, "
            f"{len(questions)} questions x {args.repeat}; temperature "
            f"{args.temperature if args.temperature is not None else 'as the chat'}; "
            f"setup {time.perf_counter() - started:.0f} s"
        )
        print(
            f"{'layout':8} {'grounded':>14} {'no echo':>14} {'old value':>10} "
            f"{'invented':>14} {'revised':>14} {'s/reply':>8}"
        )

        def share(count: int, total: int) -> str:
            return f"{count:>4}/{total:<3} {count / max(total, 1):5.0%}"

        for layout in layouts:
            tally = run_layout(user, layout, args.repeat, args.verbose, args.temperature, questions)
            replies = tally.answerable + tally.unknown
            print(
                f"{layout:8} {share(tally.grounded, tally.answerable)} "
                f"{share(tally.grounded_no_echo, tally.answerable)} {tally.old_value:>10} "
                f"{share(tally.invented, tally.unknown)} "
                f"{share(tally.invented_revised, tally.unknown)} {tally.seconds / replies:8.1f}",
                flush=True,
            )
        User.objects.filter(pk=user.pk).delete()
        common.close_django_connections()
    finally:
        if server is not None:
            server.stop()
        bench_db.stop()


if __name__ == "__main__":
    main()
