"""Which class a model belongs to: small local models need other prompts than large ones.

Measured on SmolLM2-135M (bench/grounding.py): a 135M model ignores a `<memories>` block in a
long system prompt but follows short second-person facts; it echoes few-shot examples and
turns any name it sees into a "fact". Larger models follow the structured layout well.
"""

from __future__ import annotations

import re

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
