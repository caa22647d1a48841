"""Cut-off benchmark: how often does the local model's reply end mid-sentence, or repeat itself?

Run: `.venv/bin/python bench/cutoff.py` from the repository root (`--verbose` prints every
reply; `--variant NAME=SPEC` (repeatable) compares decodings, interleaved chat by chat so load
hits each the same; SPEC is comma-separated `max=N`, `fp=F` (frequency penalty), `pp=F`
(presence penalty), or `base` for the chat's own decoding, which is the default). It starts an
embedded PostgreSQL in `<data dir>/bench/pg` (unless DATABASE_URL is set) and llama.cpp's
server with SmolLM2-135M (unless `--base-url` or LLM_BASE_URL names an endpoint). One person
(the grounding bench's Marta, 18 memories) has six chats of five or six messages each (personal
questions, chit-chat, how-to and explain requests, a trip plan over several turns), sent one at
a time through the real prompt assembly (`chat.services.assemble_prompt`, with the chat's
history) and `chat.services.stream_model`; each reply is saved as the chat saves it (with its
finish reason), so the next message's prompt carries it.

Counted per variant: replies the endpoint ended by the token limit (finish_reason "length");
replies that end mid-sentence as the person sees them (the last character is not a sentence
end, or the reply is cut by the limit); replies that repeat an earlier reply of the same chat
verbatim or nearly (difflib ratio >= 0.9); reply length (completion tokens, median/max). Each
reply cut by the limit is also continued once as the Continue button asks
(`chat.services.continuation_prompt`, not saved): "ended" counts continuations the model
finished at a sentence end, "repeats" those that say the cut reply's first sentence again.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import re
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

DOMAIN = "cutoff.bench.invalid"

CHATS: list[list[str]] = [
    [
        "Hi!",
        "How are you today?",
        "I had a long day at work.",
        "Any tips to relax tonight?",
        "Thanks, that helps.",
    ],
    [
        "How do I boil an egg?",
        "How do I make a good cup of tea?",
        "Explain how the gears on a bicycle work.",
        "How do I start running as a beginner?",
        "Explain what a compiler does.",
    ],
    [
        "What is my name?",
        "Where do I live?",
        "What do I do for work?",
        "What should I cook for dinner tonight?",
        "Can you suggest a birthday gift for my daughter?",
    ],
    [
        "Tell me a short story about a cat.",
        "Why is the sky blue?",
        "What is photosynthesis?",
        "Explain the water cycle.",
        "What are black holes?",
    ],
    [
        "I want to plan a trip to Japan.",
        "Which cities should I visit?",
        "How many days should I spend in Tokyo?",
        "What food should I try there?",
        "Any tips for taking the train?",
        "What should I pack?",
    ],
    [
        "Write a short poem about the sea.",
        "Give me three ideas for the weekend.",
        "What is a healthy breakfast?",
        "How can I sleep better?",
        "Tell me about yourself.",
        "What did we talk about so far?",
    ],
]

# A reply the person sees as finished ends with one of these (after trailing quotes,
# brackets, emphasis marks and emoji are allowed to follow a sentence end).
_SENTENCE_END = re.compile(
    r"[.!?…:;]['\"\u201d\u2019)\]*_`]*\s*$"  # a sentence end, then closing marks
    r"|```\s*$"  # a code block
    r"|[\U0001F300-\U0001FAFF]\s*$"  # an emoji
)


def ends_mid_sentence(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not _SENTENCE_END.search(stripped)


def near_repeat(text: str, earlier: list[str]) -> bool:
    norm = " ".join(text.split()).lower()
    for other in earlier:
        other_norm = " ".join(other.split()).lower()
        if not norm or not other_norm:
            continue
        if norm == other_norm or difflib.SequenceMatcher(None, norm, other_norm).ratio() >= 0.9:
            return True
    return False


@dataclass
class Tally:
    replies: int = 0
    length: int = 0
    mid_sentence: int = 0
    repeats: int = 0
    tokens: list[int] = field(default_factory=list)
    seconds: float = 0.0
    # Continue on each reply cut by the limit: it ended (the model stopped, at a sentence
    # end), or it repeats the cut text (its first sentence again, or nearly all of it).
    continued: int = 0
    continue_ended: int = 0
    continue_repeats: int = 0


def decoding_for(base: Any, options: dict[str, Any]) -> Any:
    changes: dict[str, Any] = {}
    if "max" in options:
        changes["max_tokens"] = int(options["max"])
    if "fp" in options:
        changes["frequency_penalty"] = float(options["fp"])
    if "pp" in options:
        changes["presence_penalty"] = float(options["pp"])
    return replace(base, **changes)


def collect(prompt: Any) -> tuple[str, str | None, int]:
    from chat import services as chat_services
    from config import llm

    async def run() -> tuple[str, str | None, int]:
        parts: list[str] = []
        finish: str | None = None
        tokens = 0
        stream = chat_services.stream_model(prompt)
        try:
            async for delta in stream:
                parts.append(delta.text or "")
                finish = delta.finish_reason or finish
                if delta.usage:
                    tokens = delta.usage.completion_tokens
        finally:
            await stream.aclose()
        text = "".join(parts)
        # llama.cpp's server does not always report usage when streaming: count as the chat does.
        return text, finish, tokens or llm.count_tokens(text)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("LLM_BASE_URL", ""))
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--variant",
        action="append",
        help="NAME=SPEC, SPEC: base or max=N,fp=F,pp=F (default: one variant, the chat's own)",
    )
    args = parser.parse_args()
    variants: list[tuple[str, dict[str, Any]]] = []
    for spec in args.variant or ["chat=base"]:
        name, _, body = spec.partition("=")
        options: dict[str, Any] = {}
        for part in filter(None, body.split(",")):
            if part != "base":
                key, _, value = part.partition("=")
                options[key] = value
        variants.append((name, options))
    common.bootstrap()

    bench_db = common.BenchDatabase("bench")
    server = None
    started = time.perf_counter()
    try:
        bench_db.start()
        server = common.local_model(
            args.base_url, log_name="cutoff-llm.log", model_setting="LLM_CHAT_MODEL"
        )
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from accounts.models import User
        from bench.grounding import MEMORIES, seed_person
        from chat import services as chat_services
        from chat.models import Message
        from config import model_class

        call_command("migrate", interactive=False, verbosity=0)
        User.objects.filter(email__endswith="@" + DOMAIN).delete()
        user = User.objects.create(email=f"marta-{secrets.token_hex(3)}@{DOMAIN}")
        seed_person(user, MEMORIES)
        print(common.machine_line())
        print(f"{common.load_line()} at the start")
        layout = chat_services.prompt_layout()
        print(
            f"model {settings.LLM_CHAT_MODEL} at {settings.LLM_BASE_URL} "
            f"({'started here' if server else 'given'}); layout {layout}; "
            f"{len(CHATS)} chats, {sum(map(len, CHATS))} messages per variant; "
            f"setup {time.perf_counter() - started:.0f} s"
        )
        original = model_class.DECODING[model_class.SMALL]
        tallies = {name: Tally() for name, _ in variants}
        for chat in CHATS:
            for name, options in variants:  # interleaved: each chat in every variant
                model_class.DECODING[model_class.SMALL] = decoding_for(original, options)
                tally = tallies[name]
                conversation = chat_services.start_conversation(user=user)
                replies: list[str] = []
                for text in chat:
                    _, reply = chat_services.send_message(
                        user=user, conversation_id=conversation.pk, content=text
                    )
                    prompt = chat_services.assemble_prompt(user=user, reply=reply)
                    begun = time.perf_counter()
                    content, finish, tokens = collect(prompt)
                    tally.seconds += time.perf_counter() - begun
                    tally.replies += 1
                    cut = finish == "length"
                    tally.length += cut
                    mid = ends_mid_sentence(content)
                    tally.mid_sentence += mid
                    repeat = near_repeat(content, replies)
                    tally.repeats += repeat
                    tally.tokens.append(tokens)
                    replies.append(content)
                    if cut and hasattr(chat_services, "continuation_prompt"):
                        more, more_finish, _ = collect(
                            chat_services.continuation_prompt(prompt, content)
                        )
                        tally.continued += 1
                        tally.continue_ended += more_finish == "stop" and not ends_mid_sentence(
                            more
                        )
                        first = re.split(r"(?<=[.!?])\s", content.strip(), maxsplit=1)[0]
                        tally.continue_repeats += first.lower() in more.lower() or near_repeat(
                            more, [content]
                        )
                        if args.verbose:
                            print(f"    continue [{more_finish}] {more!r}")
                    fields = {"content": content, "status": Message.Status.COMPLETE}
                    if hasattr(Message, "finish_reason"):
                        fields["finish_reason"] = finish or ""
                    Message.objects.filter(pk=reply.pk).update(**fields)
                    if args.verbose:
                        marks = "".join(
                            m for m, on in (("L", cut), ("M", mid), ("R", repeat)) if on
                        )
                        print(f"  [{name}] {text!r} -> [{marks or '-'} {tokens} tok] {content!r}")
        model_class.DECODING[model_class.SMALL] = original

        def share(count: int, total: int) -> str:
            return f"{count:>3}/{total:<3} {count / max(total, 1):4.0%}"

        print(
            f"{'variant':8} {'spec':22} {'length':>12} {'mid-sentence':>12} {'repeats':>12} "
            f"{'tokens med/max':>14} {'s/reply':>7} | {'continue: ended':>15} {'repeats':>12}"
        )
        for name, options in variants:
            tally = tallies[name]
            spec = ",".join(f"{k}={v}" for k, v in options.items()) or "base"
            print(
                f"{name:8} {spec:22} {share(tally.length, tally.replies)} "
                f"{share(tally.mid_sentence, tally.replies)} "
                f"{share(tally.repeats, tally.replies)} "
                f"{statistics.median(tally.tokens):>8.0f}/{max(tally.tokens):<5} "
                f"{tally.seconds / max(tally.replies, 1):7.1f} | "
                f"{share(tally.continue_ended, tally.continued):>15} "
                f"{share(tally.continue_repeats, tally.continued)}"
            )
        print(f"{common.load_line()} at the end")
        User.objects.filter(pk=user.pk).delete()
        common.close_django_connections()
    finally:
        if server is not None:
            server.stop()
        bench_db.stop()


if __name__ == "__main__":
    main()
