"""Benchmark of memory.embeddings: per-sentence latency one by one and in batches, and RSS.

Run: `.venv/bin/python bench/embed.py` (no database needed). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

BATCH = 16
SUBJECTS = [
    "I",
    "My sister",
    "Our team lead",
    "The neighbour upstairs",
    "My oldest friend from school",
]
FACTS = [
    "lives in Berlin with two cats",
    "is allergic to peanuts and shellfish",
    "prefers tea over coffee in the morning",
    "runs a half marathon every spring, usually in under two hours",
    "is learning Japanese and practises kanji for twenty minutes a day",
    "works as a nurse on night shifts at the city hospital",
    "wants to visit Lisbon next summer, ideally for a whole week by the sea",
    "has a dentist appointment on Tuesday at nine",
    "plays the cello in an amateur orchestra that rehearses on Thursdays",
    "hates long meetings and asks for agendas to be sent the day before",
    "keeps a vegetable garden with tomatoes, beans, courgettes and far too much mint",
    "is saving for a flat and tracks every expense in a spreadsheet",
    "reads science fiction, mostly Le Guin and Banks, before going to sleep",
    "takes the 7:40 train and would rather not be called before ten",
    "speaks Spanish at home and English at work",
    "is vegetarian but eats fish on holidays",
    "collects vinyl records of seventies jazz and soul",
    "moved from Toronto three years ago and still misses the lake",
    "needs reminders to water the plants on Sundays",
    "is planning a surprise party for a fortieth birthday in March, with a budget of 500 euros",
    "has a bad knee and avoids stairs",
    "drinks oat milk",
    "is writing a thesis on urban heat islands and needs sources on green roofs",
    "likes sushi, especially salmon nigiri",
    "gets migraines when the weather changes quickly",
    "volunteers at the food bank on the first Saturday of each month",
    "teaches a beginners' pottery class",
    "wants short answers, in bullet points, without emojis",
    "owns an old Volvo that breaks down every winter",
    "is afraid of flying but takes the plane for work twice a year",
    "sleeps badly after coffee in the afternoon",
    "prefers the metric system",
    "follows Formula 1 and supports the smaller teams",
    "has two children, aged four and seven",
    "is moving house at the end of next month",
    "uses Linux at home and a Mac at work",
    "bakes sourdough bread every weekend",
    "forgets birthdays, so wants to be reminded a week before each one",
    "keeps bees on the roof of the building",
    "studied chemistry but now writes software for a logistics company",
]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


def report(name: str, per_sentence_ms: list[float]) -> None:
    print(
        f"{name:<28} p50 {statistics.median(per_sentence_ms):7.2f} ms"
        f"   p95 {percentile(per_sentence_ms, 0.95):7.2f} ms"
        f"   mean {statistics.fmean(per_sentence_ms):7.2f} ms   (n={len(per_sentence_ms)})"
    )


def main() -> None:
    # Run as a script from anywhere: the project root must be importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()

    import psutil
    from django.conf import settings

    from memory import embeddings

    process = psutil.Process()
    sentences = [f"{subject} {fact}." for subject in SUBJECTS for fact in FACTS]
    rss_before = process.memory_info().rss

    started = time.perf_counter()
    embeddings.embed_one("warm-up: loads the model")
    load_s = time.perf_counter() - started
    rss_loaded = process.memory_info().rss

    backend = "remote " + settings.EMBEDDING_BASE_URL if settings.EMBEDDING_BASE_URL else "local"
    print(f"model {embeddings.embedding_model_name()} ({backend}), ", end="")
    print(f"{settings.EMBEDDING_THREADS} intra-op thread(s), {os.cpu_count()} cores")
    print(
        f"{len(sentences)} sentences, first call (model load + 1 sentence) {load_s * 1000:.0f} ms"
    )

    single_ms = []
    for sentence in sentences:
        started = time.perf_counter()
        embeddings.embed_one(sentence)
        single_ms.append((time.perf_counter() - started) * 1000)
    report("single, per sentence", single_ms)

    batched_ms = []
    for start in range(0, len(sentences), BATCH):
        batch = sentences[start : start + BATCH]
        started = time.perf_counter()
        embeddings.embed(batch)
        batched_ms.append((time.perf_counter() - started) * 1000 / len(batch))
    report(f"batch of {BATCH}, per sentence", batched_ms)

    rss_end = process.memory_info().rss
    mib = 1024 * 1024
    print(
        f"RSS before load {rss_before / mib:.0f} MiB, after load {rss_loaded / mib:.0f} MiB, "
        f"after the run {rss_end / mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
