"""Which class a model belongs to: small local models need other prompts than large ones.

Measured on SmolLM2-135M (bench/grounding.py): a 135M model ignores a `<memories>` block in a
long system prompt but follows short second-person facts; it echoes few-shot examples and
turns any name it sees into a "fact". Larger models follow the structured layout well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from django.conf import settings

SMALL, LARGE = "small", "large"
CLASSES = (SMALL, LARGE)

# Families that only come in small sizes, and any name that states a size of 2B or less
# ("qwen2.5-0.5b-instruct", "gemma-2-2b-it", "smollm2-360m").
_SMALL_FAMILIES = re.compile(r"smollm|tinyllama|tinydolphin|pythia-(?:70|160|410)m", re.I)
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", re.I)


def class_of(model: str) -> str:
    """ "small" for known small local models, "large" for everything else (the safe default)."""
    if _SMALL_FAMILIES.search(model):
        return SMALL
    for number, unit in _SIZE.findall(model):
        if unit.lower() == "m" or float(number) <= 2:
            return SMALL
    return LARGE


def configured_class(model: str) -> str:
    """LLM_PROMPT_LAYOUT when set to small or large, else the class of `model` by its name."""
    layout = str(getattr(settings, "LLM_PROMPT_LAYOUT", "auto")).lower()
    return layout if layout in CLASSES else class_of(model)


@dataclass(frozen=True)
class Decoding:
    """How the chat model samples a reply. Only OpenAI-standard parameters, so every
    OpenAI-compatible endpoint (llama.cpp, vLLM, Ollama, OpenAI itself) accepts them;
    None leaves the endpoint's default."""

    temperature: float
    top_p: float | None = None
    # A cap under LLM_MAX_TOKENS (the smaller wins); None: LLM_MAX_TOKENS.
    max_tokens: int | None = None
    # Where a reply ends even if the model goes on writing (a new turn it made up).
    stop: tuple[str, ...] = ()
    # OpenAI's penalties on tokens already in the reply (llama.cpp also counts the prompt's
    # last tokens); None: not sent.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


# Measured on SmolLM2-135M (bench/grounding.py, one prompt): sampled at 0.7 or even 0.2 it
# drifts off the facts it was given (52 % of replies used them at 0.2, over two runs); greedy,
# it repeats its best reading of them (64 %; 82 % with today's small layout). At most 256
# tokens: at 128, 41 % of its replies were cut by the limit (bench/cutoff.py, 32 messages), at
# 256 28 %; greedy, the first 128 tokens are the same either way, so grounding only gains. A
# reply the limit ends is marked cut short with Continue. Large models keep 0.7 and
# LLM_MAX_TOKENS.
DECODING = {
    SMALL: Decoding(temperature=0.0, max_tokens=256),
    LARGE: Decoding(temperature=0.7),
}


def decoding(layout: str) -> Decoding:
    """The sampling for a model class; LLM_CHAT_TEMPERATURE, when set, wins for every class."""
    chosen = DECODING.get(layout, DECODING[LARGE])
    temperature = getattr(settings, "LLM_CHAT_TEMPERATURE", None)
    if temperature is not None:
        chosen = replace(chosen, temperature=float(temperature))
    return chosen
