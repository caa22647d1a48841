"""Deterministic guards for extracted facts: secrets, instructions, grounding, first person.

These decide what must never be stored whatever the model says, and keep only what the
person actually said: a small local model invents facts, so a candidate whose words are not
in the person's message is dropped.
"""

from __future__ import annotations

import re

# --- Secrets ---

_KEY_PATTERNS = [
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}",  # OpenAI/Stripe-style keys
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"\bAIza[0-9A-Za-z_\-]{35}\b",  # Google API keys
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.",  # JWTs
]
_KEY_RE = re.compile("|".join(_KEY_PATTERNS))
# A long token mixing letters and digits looks like a credential, not like prose.
_OPAQUE_TOKEN_RE = re.compile(
    r"\b(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{24,}\b"
)
_SECRET_WORDS_RE = re.compile(
    r"\b(pass ?words?|passwd|pass ?phrases?|passcodes?|pin(?: code)?|api[ _-]?keys?|secret keys?|"
    r"access tokens?|auth tokens?|private keys?|recovery codes?|seed phrases?|cvv|cvc|"
    r"social security numbers?|ssn|iban|credit card|card number|bank account number)\b",
    re.IGNORECASE,
)
_DIGIT_RUN_RE = re.compile(r"(?:\d[ \-]?){13,19}")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    for match in _DIGIT_RUN_RE.finditer(text):
        # A card is written as whole groups ("4111 1111 1111 1111", maybe followed by an
        # expiry): try runs of consecutive groups, never arbitrary slices of digits, of which
        # one in ten passes Luhn by chance (most 16-digit numbers would then look like cards).
        groups = re.findall(r"\d+", match.group())
        for first in range(len(groups)):
            for last in range(first + 1, len(groups) + 1):
                digits = "".join(groups[first:last])
                if 13 <= len(digits) <= 19 and luhn_valid(digits):
                    return True
    return False


def contains_secret(text: str) -> bool:
    """Passwords, API keys, tokens, card numbers: never stored, whatever the model says."""
    return bool(
        _KEY_RE.search(text)
        or _OPAQUE_TOKEN_RE.search(text)
        or _SECRET_WORDS_RE.search(text)
        or contains_card_number(text)
    )


# --- Instructions aimed at the assistant ---

_INSTRUCTION_RE = re.compile(
    r"\byou (?:must|should|shall|will|have to|need to|are to|always|never|can't|cannot|may not)\b"
    r"|\b(?:always|never) (?:respond|answer|reply|say|use|call|refer|mention|talk|write|tell)\b"
    r"|\bignore (?:all|any|the|previous|prior|your)\b"
    r"|\bfrom now on\b"
    r"|\bsystem prompt\b"
    r"|\b(?:remember|note|keep in mind) that you\b"
    r"|\byour (?:instructions|rules|prompt|guidelines)\b"
    r"|\b(?:the )?assistant (?:must|should|will|is to)\b"
    r"|\bact as\b|\bpretend (?:to be|you)\b|\bjailbreak\b",
    re.IGNORECASE,
)


def is_instruction(text: str) -> bool:
    """Orders for the assistant ("remember that you must always …") are not facts."""
    return bool(_INSTRUCTION_RE.search(text))


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
