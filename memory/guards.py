"""Deterministic guards for extracted facts: secrets, instructions, grounding, first person.

These decide what must never be stored whatever the model says, and keep only what the
person actually said: a small local model invents facts, so a candidate whose words are not
in the person's message is dropped.
"""

from __future__ import annotations

import re

from stdnum import luhn

from memory import privacy

# --- Secrets ---
# The detectors live in memory.privacy (one filter for every text Mnemo keeps); these names
# stay for the callers that screen candidates.


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    return digits.isdigit() and luhn.is_valid(digits)


def contains_card_number(text: str) -> bool:
    return any(f.kind == "card number" for f in privacy.find_secrets(text))


def contains_secret(text: str) -> bool:
    """Keys, tokens, passwords, codes, card, account and id numbers: never stored."""
    return privacy.contains_secret(text)


# --- Instructions aimed at the assistant ---


def is_instruction(text: str) -> bool:
    """Text that tries to instruct the assistant or change the prompt ("ignore your rules",
    role tags, chat-template tokens); a preference phrased as a request is not one."""
    return privacy.is_injection(text)


# --- Grounding ---

_STOPWORDS = frozenset(
    """a an the and or but if then so to of in on at by for with from into about as is are was
    were be been being am do does did have has had having i me my mine myself we us our ours
    you your he she it they them their his her its this that these those there here what which
    who whom whose when where why how not no yes very really just also too can could would
    should will shall may might must now currently still anymore again user users person
    s t m re ve ll d don't i'm i've i'd i'll it's that's
    name named called work works job live lives prefer like likes favorite favourite""".split()  # noqa: SIM905  (a word list reads better as text)
)
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")


def _words(text: str) -> list[str]:
    return [w.lower().strip("'-") for w in _WORD_RE.findall(text)]


def _stem(word: str) -> str:
    # Crude but enough to match inflections ("moved"/"move", "loves"/"love", "cats"/"cat").
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def is_grounded(candidate: str, source: str, *, threshold: float = 0.75) -> bool:
    """True when the candidate's content words come from the person's own message.

    Every number and capitalized name in the candidate must appear in the source, and at
    least `threshold` of its other content words (matched by stem or by a 5-letter prefix).
    """
    source_words = set(_words(source))
    source_stems = {_stem(w) for w in source_words}
    source_prefixes = {w[:5] for w in source_words if len(w) >= 5}

    def present(word: str) -> bool:
        return (
            word in source_words
            or _stem(word) in source_stems
            or (len(word) >= 5 and word[:5] in source_prefixes)
        )

    tokens = _WORD_RE.findall(candidate)
    for position, token in enumerate(tokens):
        lowered = token.lower()
        is_name = token[0].isupper() and position > 0 and lowered not in _STOPWORDS
        if (token.isdigit() or is_name) and not present(lowered):
            return False
    content = [w for w in _words(candidate) if w not in _STOPWORDS]
    if not content:
        return False
    found = sum(1 for w in content if present(w))
    return found / len(content) >= threshold


# --- First person ---

_THIRD_PERSON = [
    (re.compile(r"^(?:the )?user'?s\b", re.IGNORECASE), "My"),
    (re.compile(r"^(?:the )?user (?:is|was)\b", re.IGNORECASE), "I am"),
    (re.compile(r"^(?:the )?user (?:has|had)\b", re.IGNORECASE), "I have"),
    (re.compile(r"^(?:the )?user\b", re.IGNORECASE), "I"),
    (re.compile(r"\b(?:the )?user'?s\b", re.IGNORECASE), "my"),
    (re.compile(r"\bthe user\b", re.IGNORECASE), "me"),
]
_VERB_FIXES = [
    (
        re.compile(r"^I (lives|works|likes|loves|prefers|wants|needs|hates|enjoys|plans|owns)\b"),
        None,
    ),
]


def to_first_person(text: str) -> str:
    """Rewrite "The user lives in Paris" as "I live in Paris"; leave first-person text alone."""
    text = " ".join(text.split()).strip().rstrip(".").strip()
    for pattern, replacement in _THIRD_PERSON:
        text = pattern.sub(replacement, text, count=1)
    match = _VERB_FIXES[0][0].match(text)
    if match:
        verb = match.group(1)
        text = "I " + verb[:-1] + text[match.end() :]
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text + "." if text and text[-1].isalnum() else text
