"""Grounding benchmark: do the local model's replies use what recall found, and only that?

Run: `.venv/bin/python bench/grounding.py` from the repository root (add `--verbose` to see
every reply, `--layout small --layout large` to choose layouts, `--state cold` for one of the
three prompt-cache states every question is read in (see STATES), `--repeat 2` to read each
state twice and count readings that changed, `--set held-out` for the held-out person only). It
starts an embedded PostgreSQL in `<data dir>/bench/pg` (unless DATABASE_URL is set) and
llama.cpp's OpenAI-compatible server with SmolLM2-135M on a free port (unless `--base-url` or
LLM_BASE_URL names an endpoint). One person with 18 memories (stored with
`memory.services.remember`, three of them changed since with `update_memory`) asks 32 personal
questions, each in a new conversation, through the real recall and prompt assembly
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
value (see `invents`); the table shows the revised one, the old one in brackets. "Strict"
also rejects a reply that names an old value or says the value of the model itself ("I live in
Porto."). Each question is read in every state; "maj." counts questions by the majority of
their readings. Marta's questions are the ones prompts were tuned on; Kenji's ("held-out")
were never looked at while tuning. Replies come from the model only: nothing is templated.
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

# A held-out person: never looked at while tuning the prompt (only read for the report), so
# a change that merely fits Marta's 32 questions shows up as a gap between the two rows.
HELD_OUT_MEMORIES: list[tuple[str, str, str | None]] = [
    ("profile", "My name is Kenji.", None),
    ("profile", "I live in Leeds.", "I live in Osaka."),
    ("profile", "I work as an electrician.", None),
    ("profile", "I am allergic to peanuts.", None),
    ("preference", "My favourite food is ramen.", None),
    ("preference", "I enjoy playing chess.", None),
    ("fact", "I have a cat called Miso.", None),
    ("fact", "My sister Aiko is a teacher.", None),
    ("fact", "My son Leo is 4 years old.", None),
    ("fact", "I drive a Toyota.", "I drive a Honda."),
    ("task", "I am saving for a new van.", None),
]
HELD_OUT_OLD_VALUES = ["Osaka", "Honda"]
HELD_OUT_QUESTIONS = [
    Question("profile", "What's my name?", (("Kenji",),)),
    Question("profile", "What is my job?", (("electrician",),)),
    Question("profile", "What food am I allergic to?", (("peanut",),)),
    Question("preference", "What is my favourite food?", (("ramen",),)),
    Question("preference", "Which game do I like to play?", (("chess",),)),
    Question("people", "What is my cat's name?", (("Miso",),)),
    Question("people", "What does my sister do?", (("teacher",),)),
    Question("people", "How old is my son?", (("4", "four"),)),
    Question("tasks", "What am I saving for?", (("van",),)),
    Question("changed", "Which city do I live in?", (("Leeds",),)),
    Question("changed", "What car do I drive now?", (("Toyota",),)),
    Question("unknown", "What is my favourite film?"),
    Question("unknown", "What is my wife's name?"),
    Question("unknown", "What is my dog's name?"),
    Question("unknown", "What does my brother do for work?"),
    Question("unknown", "When is my birthday?"),
    Question("unknown", "Which country was I born in?"),
    Question("unknown", "What music do I like?"),
    Question("unknown", "What is my daughter called?"),
    Question("unknown", "What did I study at school?"),
    Question("unknown", "What is my father's name?"),
]


@dataclass(frozen=True)
class Person:
    name: str
    memories: list[tuple[str, str, str | None]]
    old_values: list[str]
    questions: list[Question]


PEOPLE = {
    "tuned": Person("marta", MEMORIES, OLD_VALUES, QUESTIONS),
    "held-out": Person("kenji", HELD_OUT_MEMORIES, HELD_OUT_OLD_VALUES, HELD_OUT_QUESTIONS),
}

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
    r"\b[Yy]our\b[^.!?\n]{0,40}?\b(?:is|are|was|were)\s+(?:called\s+|named\s+)?(?:[A-Z]\w+|\d+)"
    r"|\b[Yy]ou(?:'re|\u2019re| are| were)\s+\d+"
    # "She is called "Lena"": a name given to someone the question asked about.
    r"|\b(?:[Hh]e|[Ss]he|[Ii]t|[Tt]hey)\s+(?:is|are|was|were)\s+(?:called|named)\s+\W?[A-Z]\w+",
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


# The strict judge of a reply that names the right value: not when it names an old value too,
# nor when the sentence naming it speaks of the model itself ("I live in Porto." to "Where do
# I live?"), a sentence with a first-person word and no second-person word.
_SENTENCES = re.compile(r"[^.!?\n]+")
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|me|my|mine|myself)\b", re.IGNORECASE)
_SECOND_PERSON = re.compile(r"\b(?:you|you're|you've|your|yours|yourself)\b", re.IGNORECASE)


def own_perspective(reply: str, question: Question) -> bool:
    """Whether a sentence that names an expected value says it of the model itself."""
    values = [v.lower() for group in question.expect for v in group]
    for sentence in _SENTENCES.findall(reply.replace("\u2019", "'")):
        if (
            any(v in sentence.lower() for v in values)
            and _FIRST_PERSON.search(sentence)
            and not _SECOND_PERSON.search(sentence)
        ):
            return True
    return False


def names_old_value(reply: str, old_values: list[str]) -> bool:
    return any(v.lower() in reply.lower() for v in old_values)


def strictly_grounded(reply: str, question: Question, old_values: list[str]) -> bool:
    return (
        grounded(reply, question)
        and not names_old_value(reply, old_values)
        and not own_perspective(reply, question)
    )


# llama.cpp's server (llama-cpp-python 0.3) reuses the KV cache of the longest prefix the new
# prompt shares with the last one, and decodes the rest in one batch: the same greedy request
# decodes slightly differently (and may answer differently) depending on what ran before it.
# It has no per-request switch for that (`cache_prompt` is the C++ server's; `seed` only
# seeds sampling, unused when greedy). So the bench sets the cache state itself before every
# reading, each state a deterministic one the chat meets:
#   cold:   the last prompt shares only the chat template's first tokens (another person's
#           chat), the whole prompt is decoded in one batch;
#   system: the last prompt had the same system message and another question (the same
#           person asking something else), the question is decoded on its own;
#   hit:    the same prompt was answered just before (a retry), only its last token is
#           decoded again.
# A reading in a state is repeatable; the states disagree now and then, and the bench reports
# every reading and, per question, the majority of its states.
STATES = ("cold", "system", "hit")
_COLD_PRIMER = [
    {"role": "system", "content": "Zebra."},
    {"role": "user", "content": "Zebra."},
]


def prime(state: str, messages: list[dict[str, str]]) -> None:
    """Leave the model server's prompt cache in `state` (see STATES) for `messages`."""
    from config import llm

    def send(prompt: list[dict[str, str]], max_tokens: int) -> None:
        body = {
            "model": "primer", "messages": prompt, "max_tokens": max_tokens, "temperature": 0.0,
        }  # fmt: skip
        llm.sync_client(background=False).post("/chat/completions", cast_to=bytes, body=body)

    send(_COLD_PRIMER, 1)
    if state == "system":
        send([messages[0], {"role": "user", "content": "Zebra."}], 2)
    elif state == "hit":
        # Two tokens: the first is decoded into the cache, so the prompt is a strict prefix
        # of the cache and the server decodes its last token again (as after a full reply).
        send(messages, 2)


@dataclass
class Tally:
    readings: int = 0
    answerable: int = 0
    grounded: int = 0
    grounded_no_echo: int = 0
    strict: int = 0
    old_value: int = 0
    own_perspective: int = 0
    unknown: int = 0
    invented: int = 0
    invented_revised: int = 0
    # Per question, the majority of its readings (more than half).
    questions_answerable: int = 0
    majority_grounded: int = 0
    majority_strict: int = 0
    questions_unknown: int = 0
    majority_invented: int = 0
    # Readings of one question in one state that differed between rounds (--repeat).
    unstable: int = 0
    seconds: float = 0.0


def seed_person(user: Any, memories: list[tuple[str, str, str | None]] = MEMORIES) -> None:
    from memory import services

    for kind, content, before in memories:
        memory = services.remember(user=user, content=before or content, kind=kind)
        if before:
            services.update_memory(user=user, memory_id=memory.pk, content=content)


def prompt_for(user: Any, question: str) -> Any:
    """The prompt the chat builds for `question` in a new conversation."""
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
    return chat_services.assemble_prompt(user=user, reply=reply)


def reply_to(prompt: Any, temperature: float | None = None) -> str:
    """The model's reply to `prompt`, streamed as the chat streams it."""
    from chat import services as chat_services

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

    return asyncio.run(collect())


def ask(
    user: Any, question: str, temperature: float | None = None, state: str = "cold"
) -> tuple[str, list[dict[str, str]]]:
    """One question in a new conversation, through the real prompt assembly and the model."""
    prompt = prompt_for(user, question)
    prime(state, prompt.messages)
    return reply_to(prompt, temperature), prompt.messages


def run_layout(
    user: Any,
    layout: str,
    repeat: int,
    verbose: bool,
    temperature: float | None = None,
    questions: list[Question] = QUESTIONS,
    old_values: list[str] = OLD_VALUES,
    states: tuple[str, ...] = STATES,
) -> Tally:
    from django.conf import settings

    settings.LLM_PROMPT_LAYOUT = layout
    tally = Tally()
    started = time.perf_counter()
    for question in questions:
        prompt = prompt_for(user, question.text)
        messages = prompt.messages
        if verbose:
            print(f"  [{question.topic}] {question.text}  (system: {messages[0]['content']!r})")
        verdicts: list[bool] = []  # strictly grounded, or invented (revised judge)
        votes: list[bool] = []  # grounded by the bench's check
        for state in states:
            texts = []
            for _ in range(repeat):
                prime(state, messages)
                text = reply_to(prompt, temperature)
                texts.append(text)
                tally.readings += 1
                if question.expect:
                    tally.answerable += 1
                    ok = grounded(text, question)
                    tally.grounded += ok
                    kept, echoed = without_echo(text, messages)
                    tally.grounded_no_echo += ok and grounded(kept, question)
                    old = names_old_value(text, old_values)
                    tally.old_value += old
                    mine = ok and own_perspective(text, question)
                    tally.own_perspective += mine
                    strict = strictly_grounded(text, question, old_values)
                    tally.strict += strict
                    verdicts.append(strict)
                    verdict = ("used memory" if ok else "MISSED") + (" +OLD VALUE" if old else "")
                    verdict += " +AS ITS OWN" if mine else ""
                    verdict += " (ECHOED ITS PROMPT)" if echoed else ""
                    votes.append(ok)
                else:
                    tally.unknown += 1
                    invented = not abstains(text)
                    tally.invented += invented
                    revised = invents(text, messages)
                    tally.invented_revised += revised
                    verdicts.append(revised)
                    verdict = "INVENTED" if invented else "said it does not know"
                    if revised != invented:
                        verdict += f"; revised judge: {'INVENTED' if revised else 'did not'}"
                if verbose:
                    one_line = " ".join(text.split())[:200]
                    print(f"    {state:6} {one_line!r}: {verdict}")
            tally.unstable += len(set(texts)) > 1
        majority = sum(verdicts) * 2 > len(verdicts)
        if question.expect:
            tally.questions_answerable += 1
            tally.majority_strict += majority
            tally.majority_grounded += sum(votes) * 2 > len(votes)
        else:
            tally.questions_unknown += 1
            tally.majority_invented += majority
    tally.seconds = time.perf_counter() - started
    return tally


def llama_build() -> str:
    """The llama.cpp build the bench's model server runs (it is started from this venv).
    Greedy readings can differ between builds (CPU features pick other kernels): the same
    code, prompts and version read 48/66 (tuned, small) in one round and 55/66 after
    llama.cpp was compiled again here (README, "Grounding"). Compare figures on one build."""
    try:
        import llama_cpp
    except ImportError:
        return "llama.cpp: not importable here"
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    features = " ".join(re.findall(r"(\w+) = 1", info))
    return f"llama-cpp-python {llama_cpp.__version__}, CPU features: {features or info.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", action="append", help="small, large (default: both)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="readings per state (each state is repeatable)"
    )
    parser.add_argument("--base-url", default=os.environ.get("LLM_BASE_URL", ""))
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--temperature", type=float, help="what if the chat sampled at this temperature"
    )
    parser.add_argument(
        "--topic",
        action="append",
        choices=sorted({q.topic for p in PEOPLE.values() for q in p.questions}),
        help="only these topics' questions (a quicker look; figures are for all of them)",
    )
    parser.add_argument(
        "--set", action="append", choices=sorted(PEOPLE), help="tuned, held-out (default: both)"
    )
    parser.add_argument(
        "--state",
        action="append",
        choices=STATES,
        help="the model server's prompt-cache states to read in (default: all three)",
    )
    args = parser.parse_args()
    states = tuple(args.state or STATES)
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
        people = []
        for set_name in args.set or list(PEOPLE):
            person = PEOPLE[set_name]
            user = User.objects.create(email=f"{person.name}-{secrets.token_hex(3)}@{DOMAIN}")
            seed_person(user, person.memories)
            questions = [q for q in person.questions if not args.topic or q.topic in args.topic]
            people.append((set_name, person, user, questions))
        layouts = args.layout or (
            ["small", "large"] if hasattr(chat_services, "LAYOUTS") else ["today"]
        )
        print(common.machine_line())
        if server:
            print(llama_build())
        print(f"{common.load_line()} at the start")
        print(
            f"model {settings.LLM_CHAT_MODEL} at {settings.LLM_BASE_URL} "
            f"({'started here' if server else 'given'}); "
            + "; ".join(
                f"{name}: {len(p.memories)} memories, {len(qs)} questions"
                for name, p, _, qs in people
            )
            + f"; states {', '.join(states)} x {args.repeat}; temperature "
            f"{args.temperature if args.temperature is not None else 'as the chat'}; "
            f"setup {time.perf_counter() - started:.0f} s"
        )
        print(
            "readings: grounded = names the expected value; strict = and no old value, and "
            "not said of the model itself; invented = revised judge (old judge in brackets);\n"
            "majority: per question, more than half of its readings"
        )
        header = (
            f"{'layout':6} {'set':8} {'grounded':>13} {'strict':>13} {'old':>4} {'own':>4} "
            f"{'invented':>13} {'(old)':>6} | {'maj.grounded':>13} {'maj.strict':>13} "
            f"{'maj.invented':>13} {'unstable':>8} {'s/reply':>7}"
        )
        print(header)

        def share(count: int, total: int) -> str:
            return f"{count:>3}/{total:<3} {count / max(total, 1):4.0%}"

        for layout in layouts:
            for set_name, person, user, questions in people:
                tally = run_layout(
                    user, layout, args.repeat, args.verbose, args.temperature, questions,
                    person.old_values, states,
                )  # fmt: skip
                print(
                    f"{layout:6} {set_name:8} {share(tally.grounded, tally.answerable)} "
                    f"{share(tally.strict, tally.answerable)} {tally.old_value:>4} "
                    f"{tally.own_perspective:>4} "
                    f"{share(tally.invented_revised, tally.unknown)} {tally.invented:>6} | "
                    f"{share(tally.majority_grounded, tally.questions_answerable)} "
                    f"{share(tally.majority_strict, tally.questions_answerable)} "
                    f"{share(tally.majority_invented, tally.questions_unknown)} "
                    f"{tally.unstable:>8} {tally.seconds / max(tally.readings, 1):7.1f}",
                    flush=True,
                )
        print(f"{common.load_line()} at the end")
        for _, _, user, _ in people:
            User.objects.filter(pk=user.pk).delete()
        common.close_django_connections()
    finally:
        if server is not None:
            server.stop()
        bench_db.stop()


if __name__ == "__main__":
    main()
