"""The privacy filter for every text Mnemo keeps about a person: secrets out, instructions out.

`redact(text)` finds secrets and replaces each with a placeholder; `without_secrets(text)`
drops the sentences that held one and keeps the rest ("I live in Lyon." out of "I live in
Lyon. Use this key: sk-…"). Detectors, most specific first:

- detect-secrets' own detectors (keys and tokens of known shapes, credentials in URLs, private
  keys) and its Shannon-entropy measure for opaque tokens. Used in-process through its plugin
  classes: no settings file, no baseline, and never its `verify()` (the only code that talks
  to the network);
- python-stdnum's checksums: payment cards (Luhn), IBANs, and national ids (US SSN, Canadian
  SIN, Dutch BSN, German tax id, Spanish DNI, Italian codice fiscale, French NIR, Indian
  Aadhaar, UK NHS number), so a number that merely looks like one is left alone;
- rules for what no library knows, written the way people say them: passwords and
  passphrases ("wifi pw is …", "login … with Summer2024!"), PINs and door, alarm, safe and
  locker codes, security questions and their answers, mother's maiden name, recovery codes and
  seed phrases, one-time codes, CVVs, passport and licence numbers, account numbers.

Phone numbers are not treated as secrets: they are contact details people ask Mnemo to keep
("my sister's number is …"), not credentials, and redacting them would refuse useful facts.

`is_injection(text)` recognises text that tries to act as an instruction to the assistant or
to change the prompt's structure (role tags, chat-template tokens, "ignore your rules", "you
are now DAN", `</memories>`), while a preference phrased as a request ("always answer in
French") is data about the person and passes.

A `Finding` never holds the secret itself (only its kind and position), so logging findings
cannot leak what they found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

PLACEHOLDER = "[redacted]"


@dataclass(frozen=True)
class Finding:
    """Where a secret is in a text, and what kind it is (never the secret itself)."""

    kind: str
    start: int
    end: int


# --- detect-secrets: known key shapes and entropy ---


@cache
def _detect_secrets_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """The regular expressions of detect-secrets' shape-based detectors."""
    from detect_secrets.plugins.artifactory import ArtifactoryDetector
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.cloudant import CloudantDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
    from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.softlayer import SoftlayerDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    # Not IPPublicDetector: an IP address is not a credential.
    detectors: list[Any] = [
        ArtifactoryDetector, AWSKeyDetector, AzureStorageKeyDetector, BasicAuthDetector,
        CloudantDetector, DiscordBotTokenDetector, GitHubTokenDetector, GitLabTokenDetector,
        IbmCloudIamDetector, IbmCosHmacDetector, JwtTokenDetector, MailchimpDetector,
        NpmDetector, OpenAIDetector, PrivateKeyDetector, PypiTokenDetector, SendGridDetector,
        SlackDetector, SoftlayerDetector, SquareOAuthDetector, StripeDetector,
        TelegramBotTokenDetector, TwilioKeyDetector,
    ]  # fmt: skip
    return [(d.secret_type, pattern) for d in detectors for pattern in d.denylist]


@cache
def _entropy_plugins() -> tuple[Any, Any]:
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )

    return Base64HighEntropyString(), HexHighEntropyString()


# Shapes detect-secrets does not know (or knows only inside quotes).
_KEY_PATTERNS = [
    r"\b(?:sk|pk|rk)[-_](?:[A-Za-z0-9]+[-_])*[A-Za-z0-9]{16,}",  # OpenAI/Stripe/Anthropic style
    r"\b(?:tok|whsec|key|api|secret|token)_[A-Za-z0-9]{16,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bAIza[0-9A-Za-z_\-]{35}\b",
    r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
    r"\b\d{8,10}:[A-Za-z0-9_\-]{30,}",  # Telegram bot tokens
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"\bAccountKey=[A-Za-z0-9+/=]{20,}",
    r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:([^\s@/]+)@",  # a password inside a URL
    r"\b[A-Z2-7]{16,}\b",  # base32 one-time-password seeds
]
_KEY_RE = re.compile("|".join(f"(?:{p})" for p in _KEY_PATTERNS), re.DOTALL)
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_TOKEN_RE = re.compile(r"[A-Za-z0-9+/=_\-]{16,}")


def _is_opaque_token(token: str) -> bool:
    """A long string with the entropy of a key, not of a word ("internationalization")."""
    base64, hexadecimal = _entropy_plugins()
    token = token.strip("=-_/+")
    if len(token) < 16 or token.isdigit():
        return False
    has_digit = any(c.isdigit() for c in token)
    has_letter = any(c.isalpha() for c in token)
    mixed_case = any(c.islower() for c in token) and any(c.isupper() for c in token)
    if re.fullmatch(r"[0-9a-fA-F]+", token) and has_digit and has_letter:
        return bool(hexadecimal.calculate_shannon_entropy(token) > 3.0)
    if not (has_letter and (has_digit or (mixed_case and len(token) >= 24))):
        return False
    if re.fullmatch(r"[A-Za-z]+(?:[-_][A-Za-z]+)*\d{0,4}", token):
        return False  # words joined with hyphens, maybe a year: "well-known-project-2024"
    return bool(base64.calculate_shannon_entropy(token) > 3.5)


# --- python-stdnum: checksummed numbers ---


def _card(digits: str) -> bool:
    from stdnum import luhn

    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn.is_valid(digits)


def _national_id(compact: str) -> str | None:
    """The kind of national id `compact` (digits and letters, no separators) is, if any."""
    from stdnum.br import cpf
    from stdnum.ca import sin
    from stdnum.de import idnr
    from stdnum.es import dni
    from stdnum.fr import nir
    from stdnum.gb import nhs
    from stdnum.in_ import aadhaar
    from stdnum.it import codicefiscale
    from stdnum.nl import bsn
    from stdnum.us import ssn

    checks = {
        9: [("US social security number", ssn), ("Canadian SIN", sin), ("Dutch BSN", bsn)],
        10: [("NHS number", nhs)],
        11: [("German tax id", idnr), ("Brazilian CPF", cpf)],
        12: [("Aadhaar number", aadhaar)],
        15: [("French NIR", nir)],
    }
    if compact.isdigit():
        for kind, module in checks.get(len(compact), []):
            if module.is_valid(compact):
                return kind
        return None
    if re.fullmatch(r"\d{8}[A-Za-z]", compact) and dni.is_valid(compact):
        return "Spanish DNI"
    if len(compact) == 16 and codicefiscale.is_valid(compact.upper()):
        return "Italian codice fiscale"
    return None


# Digit groups as people write them: "4111 1111 1111 1111", "536-22-8190", "1 84 03 76 …".
_NUMBER_RE = re.compile(r"(?<![\w+])\d+(?:[ \-.]\d+)*(?![\w])")
_SSN_SHAPE = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")
_GROUPED_ID_SHAPE = re.compile(r"\d{3}([- ])\d{3}\1\d{3}|\d{3} \d{3} \d{4}|\d{4} \d{4} \d{4}")
_ID_CONTEXT_RE = re.compile(
    r"\b(?:ssn|social|insurance|bsn|burgerservicenummer|sin|nhs|steuer|tax|aadhaar|cpf|nir|"
    r"s[ée]cu|national|identity|id|passport|licen[cs]e)\b",
    re.IGNORECASE,
)
_IBAN_START = re.compile(r"\b[A-Za-z]{2}\d{2}(?=[ \-]?[A-Za-z0-9])")
_ALNUM_ID_RE = re.compile(
    r"\b(?:\d{8}[A-Za-z]|[A-Za-z]{6}\d{2}[A-Za-z]\d{2}[A-Za-z]\d{3}[A-Za-z])\b"
)
_NINO_RE = re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")


def _numbers(text: str) -> Iterator[Finding]:
    for match in _NUMBER_RE.finditer(text):
        groups = re.findall(r"\d+", match.group())
        # Try runs of consecutive whole groups (a card followed by an expiry, an id followed
        # by a year), never arbitrary slices of digits.
        for first in range(len(groups)):
            for last in range(len(groups), first, -1):
                digits = "".join(groups[first:last])
                if _card(digits):
                    yield _span_of_groups(match, groups, first, last, "card number")
                    break
        whole = match.group()
        compact = "".join(groups)
        sentence = _sentence_around(text, match.start())
        kind = None
        if _SSN_SHAPE.fullmatch(whole) or _GROUPED_ID_SHAPE.fullmatch(whole):
            kind = _national_id(compact)
        elif len(groups) > 1 or _ID_CONTEXT_RE.search(sentence):
            # Bare digit runs are ids only with a checksum and a word that says so, or when
            # written in groups the way ids are ("1 84 03 76 451 089 96").
            kind = _national_id(compact)
            if kind == "US social security number" and not _ID_CONTEXT_RE.search(sentence):
                kind = None  # nine digits in groups, no checksum: too weak alone
        if kind:
            yield Finding(kind, match.start(), match.end())


def _span_of_groups(
    match: re.Match[str], groups: list[str], first: int, last: int, kind: str
) -> Finding:
    positions = [m.span() for m in re.finditer(r"\d+", match.group())]
    return Finding(
        kind, match.start() + positions[first][0], match.start() + positions[last - 1][1]
    )


def _ibans(text: str) -> Iterator[Finding]:
    from stdnum import iban

    for start in _IBAN_START.finditer(text):
        # Collect up to 34 characters, allowing single separators, then keep the longest
        # prefix that is a valid IBAN (so a word after it is not swallowed).
        chars: list[tuple[str, int]] = []
        position = start.start()
        while position < len(text) and len(chars) < 34:
            char = text[position]
            if char.isalnum():
                chars.append((char, position))
            elif char not in " -" or not (
                position + 1 < len(text) and text[position + 1].isalnum()
            ):
                break
            position += 1
        for length in range(len(chars), 14, -1):
            candidate = "".join(c for c, _ in chars[:length]).upper()
            if iban.is_valid(candidate):
                yield Finding("IBAN", start.start(), chars[length - 1][1] + 1)
                break


def _alnum_ids(text: str) -> Iterator[Finding]:
    for match in _ALNUM_ID_RE.finditer(text):
        kind = _national_id(match.group())
        if kind:
            yield Finding(kind, match.start(), match.end())
    for match in _NINO_RE.finditer(text):
        yield Finding("National Insurance number", match.start(), match.end())


# --- Rules for what no library knows ---

# Words that follow "password is" without being one ("my password is too weak").
_NOT_A_VALUE = frozenset(
    """a an the my your his her our their this that it its same too very so not no never
    still also just really quite weak strong long short easy hard simple different new old
    changed reset expired stored saved written wrong right correct incorrect required needed
    missing lost forgotten there here in on at for of to with from by and or but if when as
    be been being is are was were will would should could can cannot must might may
    something anything nothing everything somewhere case sensitive""".split()  # noqa: SIM905  (a word list reads better as text)
)

_CREDENTIAL = (
    r"(?:pass(?:word|wd|phrase|code)?s?|pass[ -](?:word|phrase)s?|pwd?|mot de passe|"
    r"contrase[ñn]a|passwort|login|log-?in|sign-?in|credentials?|wi-?fi(?: key)?|wlan|"
    r"wpa(?:2)?(?: key)?|network key|"
    r"(?:api|access|auth|bearer|secret|private|session|webhook|bot)[ _-]?(?:key|token|secret)s?|"
    r"tokens?|keys?|secret)"
)
_CODE = (
    r"(?:pin(?: code| number)?|puk|passcode|(?:door|entry|gate|alarm|garage(?: door)?(?: opener)?|"
    r"safe|lock|locker|keypad|building|access|entrance|front door|lockbox|key ?safe|padlock|"
    r"bike lock|security|verification|confirmation code for login|one-time|one time|otp|2fa|"
    r"two-factor|mfa|sms|login|backup|recovery|unlock|disarm)(?: code)?s?|"
    r"codes?|combination|combo|cvv2?|cvc2?|csc)"
)
_SEPARATOR = (
    r"(?:\s*(?:(?:is|was|are|were|will be|set to|changed to|reads|to|es|era|ist|war|est|"
    r"était)(?!\w))?\s*(?:[:=\-\u2192]|->)?\s*)"
)
# "password *for the intranet* is …", "mot de passe *du portail*: …"
_QUALIFIER = (
    r"(?:\s+(?:for|of|to|on|at|du|de|des|für|pour|para|per)\s+"
    r"(?:[\w'\u2019.-]+\s+){0,3}?[\w'\u2019.-]+)?"
)
_ASIDE = r"(?:\s*\([^)]{0,30}\))?"
_PASSWORD_RE = re.compile(
    rf"\b(?P<keyword>{_CREDENTIAL})\b{_QUALIFIER}{_ASIDE}(?P<separator>{_SEPARATOR})"
    rf"(?P<quote>['\"\u201c\u2018]?)"
    rf"(?!(?:{'|'.join(sorted(_NOT_A_VALUE))})(?![\w]))(?P<value>[^\s'\"\u201d\u2019,;]+)",
    re.IGNORECASE,
)
_PASSPHRASE_RE = re.compile(
    rf"\b(?:pass[ -]?phrase|seed phrase|recovery phrase|mnemonic|secret phrase){_QUALIFIER}"
    rf"(?:\s+\w+){{0,2}}?\s*(?:is|was|are|=|:)\s*:?\s*['\"\u201c\u2018]?"
    rf"(?P<value>[a-z]+(?:[ -][a-z]+){{2,23}})",
    re.IGNORECASE,
)
# "password: correct horse battery staple" (a first word may be one that usually describes
# a password, "correct"): three or more plain words after an explicit ":" or "=".
_WORDS_PASSWORD_RE = re.compile(
    r"\b(?:pass(?:word|phrase)s?|pass[ -](?:word|phrase)|pwd?|mot de passe|contrase[ñn]a|"
    rf"passwort){_QUALIFIER}\s*[:=]\s*['\"\u201c\u2018]?(?P<value>[a-z]+(?:[ -][a-z]+){{2,11}})",
    re.IGNORECASE,
)
# A wallet's recovery words written after "seed"/"wallet" and a colon: twelve or more words.
_SEED_WORDS_RE = re.compile(
    r"\b(?:seed|wallet|bip-?39)\b[^.!?\n:=]{0,30}[:=]\s*"
    r"(?P<value>[a-z]+(?:[ ,-]+[a-z]+){11,23})",
    re.IGNORECASE,
)
_QUOTED_PASSPHRASE_RE = re.compile(
    r"['\"\u201c\u2018](?P<value>[^'\"\u201d\u2019]{3,80})['\"\u201d\u2019]\s+(?:as|is)\s+(?:the|my)\s+(?:\w+\s+){0,2}"
    r"(?:pass(?:word|phrase)|pin|code)",
    re.IGNORECASE,
)
_VALUE_BEFORE_RE = re.compile(
    r"(?P<value>[^\s,;'\"]{4,})\s+(?:is|was)\s+(?:my|the|our)\s+(?:\w+\s+){0,2}"
    r"(?:pass(?:word|phrase|code)|pin|pw|pwd|code|combination)\b",
    re.IGNORECASE,
)
_CODE_RE = re.compile(
    rf"\b{_CODE}\b(?:\s+(?:for|of|to|on|at)\s+(?:[\w'\u2019.-]+\s+){{0,4}}?)?(?:[^\w\n]{{0,3}}\w+){{0,5}}?"
    rf"[^\w\n]{{0,4}}(?P<value>#?\d[\dA-Za-z]*(?:[ \-]\d[\dA-Za-z]*)*\*?#?)",
    re.IGNORECASE,
)
# "zip code 69001" and its kind are not secrets.
_PUBLIC_CODE_RE = re.compile(
    r"\b(?:zip|postal|post|postcode|area|country|dial(?:ling)?|dress|source|error|status|http|"
    r"discount|promo|coupon|tracking|flight|course|product|sku|model|colou?r|iso|language|"
    r"airport|reference|booking|qr|bar|morse|tax|iata|icd|station|zone)\s+codes?\b",
    re.IGNORECASE,
)
_SECURITY_QA_RE = re.compile(
    r"\b(?:security|secret|memorable|challenge)\s+(?:question|answer|word|information|phrase)s?\b"
    r"|\b(?:mother|mom|mum|mama|maman)(?:'?s|\u2019s)?\s+maiden\s+name\b",
    re.IGNORECASE,
)
_ANSWER_RE = re.compile(
    r"(?:\b(?:is|was|are|answer(?:ed)?|put|use|:|=)\b|[:=,])\s*['\"\u201c\u2018]?(?P<value>[^.!?\n]+)",
    re.IGNORECASE,
)
_ID_RE = re.compile(
    r"\b(?:passport|driver'?s?\s+licen[cs]e|driving\s+licen[cs]e|licen[cs]e|account|acct|"
    r"routing|sort|tax|national|identity|id|ssn|social|membership|policy)\s*(?:number|no\.?|#|code|id)?"
    r"(?:\s+(?:is|was|:|=|-))?\s*:?\s*(?P<value>[A-Za-z]{0,6}\d[\dA-Za-z\-]{4,}|\d{2}-\d{2}-\d{2})",
    re.IGNORECASE,
)
_PASSWORD_SHAPE = re.compile(
    r"(?<![\w@/.])(?=[^\s]*[A-Za-z])(?=[^\s]*(?:\d|[!@#$%^&*?~]))[^\s,;'\"()]{6,64}(?<![.:!?])"
)
# Versions, times, dates, "2-factor", "24-hour", and the password manager named 1Password.
_NOT_A_PASSWORD = re.compile(
    r"v?\d+(?:\.\d+)+|\d{1,2}[:/.]\d{1,2}(?:[:/.]\d{2,4})?|\d+-[A-Za-z]+|1password",
    re.IGNORECASE,
)
_PASSWORD_CONTEXT = re.compile(
    r"\b(?:pass(?:word|wd|phrase)?s?|pwd?|log ?in|login|sign ?in|credentials?|wi-?fi|wlan|"
    r"contrase[ñn]a|passwort|mot de passe|"
    r"wpa|unlock)\b",
    re.IGNORECASE,
)


def _sentence_around(text: str, position: int) -> str:
    start = max(text.rfind(mark, 0, position) for mark in (". ", "! ", "? ", "\n"))
    ends = [i for i in (text.find(mark, position) for mark in (". ", "! ", "? ", "\n")) if i >= 0]
    return text[start + 1 : min(ends) if ends else len(text)]


def _looks_like_value(value: str) -> bool:
    word = value.strip(".,;:!?)(\"'").lower()
    return bool(word) and word not in _NOT_A_VALUE and not word.startswith("http")


def _strip_trailing(text: str, start: int, end: int) -> int:
    # Not "!" or "?": they end passwords as often as sentences ("Summer2024!").
    while end > start and text[end - 1] in ".,;:)":
        end -= 1
    return end


# Plain words that describe a password rather than being one ("stolen", "terrible").
# Not every "-er": "sunflower", "summer" and "tiger" are passwords, "longer" describes one.
_DESCRIPTIVE = re.compile(
    r"(?:ed|en|ing|ible|able|ly|ful|less|ous|ive|ish|est)$|^(?:longer|stronger|weaker|safer|"
    r"better|shorter|easier|harder|simpler|newer|older|greater|smaller|larger|tougher|bigger|"
    r"clever|never|over|under|other|either|neither|whatever|together|rather|later|proper|"
    r"sooner|quicker|faster|slower|lower|upper|fewer|higher|cooler|nicer|cleaner|clearer)$"
)
_PASSWORD_WORDS = re.compile(
    r"pass(?:word|wd|code)?s?|pass[ -]word|pwd?|mot de passe|contrase[ñn]a|passwort", re.I
)


def _is_password_value(match: re.Match[str]) -> bool:
    """Whether the word after "password is" (or "wifi:", "login …") is the password."""
    value = match.group("value")
    if not _looks_like_value(value):
        return False
    if _PASSWORD_SHAPE.fullmatch(value):
        return True  # letters with digits or symbols: "hunter2", "Summer2024!"
    separator = match.group("separator").strip()
    if match.group("quote") or any(mark in separator for mark in ":=\u2192>"):
        return True  # "pw: tangerine", "password = 'sunshine'"
    if not separator:
        return False  # "password reset flows"
    # "my password is sunshine" names one; "my login is slow" does not.
    plain = value.strip(".,;:!?").lower()
    return bool(
        _PASSWORD_WORDS.fullmatch(match.group("keyword"))
        and plain.isalpha()
        and not _DESCRIPTIVE.search(plain)
    )


def _rules(text: str) -> Iterator[Finding]:
    # Not finditer: a rejected match must not swallow the next keyword ("wifi password is
    # sunflower" is first read as keyword "wifi", value "password", and rejected).
    position = 0
    while match := _PASSWORD_RE.search(text, position):
        if _is_password_value(match):
            start = match.start("value")
            yield Finding("password", start, _strip_trailing(text, start, match.end("value")))
            position = match.end()
        else:
            position = match.end("keyword")
    for regex in (_PASSPHRASE_RE, _QUOTED_PASSPHRASE_RE, _SEED_WORDS_RE):
        for match in regex.finditer(text):
            yield Finding("passphrase", match.start("value"), match.end("value"))
    for match in _WORDS_PASSWORD_RE.finditer(text):
        words = re.split(r"[ -]", match.group("value").lower())
        if sum(word not in _NOT_A_VALUE for word in words) >= 3:
            yield Finding("passphrase", match.start("value"), match.end("value"))
    for match in _VALUE_BEFORE_RE.finditer(text):
        if _looks_like_value(match.group("value")):
            yield Finding("password", match.start("value"), match.end("value"))
    for match in _CODE_RE.finditer(text):
        head = text[max(0, match.start() - 12) : match.end()]
        if _PUBLIC_CODE_RE.search(head) or _PUBLIC_CODE_RE.search(match.group()):
            continue
        value = match.group("value").strip("#*")
        if sum(c.isdigit() for c in value) < 3:
            continue  # "the alarm wakes me at 6"
        if re.fullmatch(r"(?:19|20)\d\d", value) and re.search(
            r"\b(?:in|since|from|until|by|before|after)\s*$", text[: match.start("value")]
        ):
            continue  # "the code changed in 2023"
        start = match.start("value")
        yield Finding("code", start, _strip_trailing(text, start, match.end("value")))
    for match in _SECURITY_QA_RE.finditer(text):
        sentence_end = min(
            [i for i in (text.find(m, match.end()) for m in (". ", "! ", "? ", "\n")) if i >= 0]
            or [len(text)]
        )
        # A question and its answer may be two sentences: "security question: …. Answer: …".
        following = re.match(
            r"[.!?]\s+answer\s*[:=-]?\s*(?P<value>[^.!?\n]+)", text[sentence_end:], re.I
        )
        if following:
            yield Finding(
                "security answer",
                sentence_end + following.start("value"),
                sentence_end + following.end("value"),
            )
        answer = _ANSWER_RE.search(text, match.end(), sentence_end)
        if answer:
            start = answer.start("value")
            # The answer ends where the sentence goes on: "…is Okonkwo, the bank asks for it".
            value = answer.group("value")
            tail = re.search(r",\s|\s(?:and|but|because|so|which)\s", value)
            # Not after a description: "I put my childhood nickname, Bumblebee".
            if tail and re.match(r"(?:my|the|our|his|her|their)\b", value, re.I):
                tail = None
            end = start + tail.start() if tail else answer.end("value")
            yield Finding("security answer", start, _strip_trailing(text, start, end))
    for match in _ID_RE.finditer(text):
        value = match.group("value")
        if sum(c.isdigit() for c in value) >= 5 or re.fullmatch(r"\d{2}-\d{2}-\d{2}", value):
            start = match.start("value")
            yield Finding("id number", start, _strip_trailing(text, start, match.end("value")))
    for match in _PASSWORD_SHAPE.finditer(text):
        sentence = _sentence_around(text, match.start())
        if _PASSWORD_CONTEXT.search(sentence) and not _NOT_A_PASSWORD.fullmatch(match.group()):
            yield Finding("password", match.start(), match.end())
    # Lists of recovery codes: every code-like token after the words.
    for match in re.finditer(
        r"\b(?:recovery|backup)\s+(?:codes?|keys?)\b[^.!?\n]*", text, re.IGNORECASE
    ):
        for token in re.finditer(
            r"[A-Za-z0-9]*\d[A-Za-z0-9]*(?:[ -][A-Za-z0-9]*\d[A-Za-z0-9]*)*", match.group()
        ):
            if sum(c.isalnum() for c in token.group()) >= 6:
                yield Finding(
                    "recovery code", match.start() + token.start(), match.start() + token.end()
                )


# --- Public API ---


def warm_up() -> None:
    """Import and compile the detectors now (about 0.2 s the first time), not in a request."""
    _detect_secrets_patterns()
    _entropy_plugins()
    find_secrets("warm-up: sk-live0123456789abcdef0123 and 4111 1111 1111 1111")


def find_secrets(text: str) -> list[Finding]:
    """Every secret in `text`, as non-overlapping spans in order."""
    if not text:
        return []
    found: list[Finding] = []
    for kind, pattern in _detect_secrets_patterns():
        found += [Finding(kind, m.start(), m.end()) for m in pattern.finditer(text) if m.group()]
    for match in _KEY_RE.finditer(text):
        if match.group():
            found.append(Finding("key", match.start(), match.end()))
    for match in _TOKEN_RE.finditer(text):
        if match.start() and text[match.start() - 1] in "./@:":
            continue  # part of a web address or a file path, not a token on its own
        if _UUID_RE.fullmatch(match.group()):
            continue  # an identifier; a key written as one is caught by its words ("key is …")
        if _is_opaque_token(match.group()):
            found.append(Finding("token", match.start(), match.end()))
    found += _numbers(text)
    found += _ibans(text)
    found += _alnum_ids(text)
    found += _rules(text)
    return _merge(f for f in found if f.end > f.start)


def _merge(findings: Iterable[Finding]) -> list[Finding]:
    merged: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and finding.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Finding(last.kind, last.start, max(last.end, finding.end))
        else:
            merged.append(finding)
    return merged


def redact(text: str, *, placeholder: str = PLACEHOLDER) -> tuple[str, list[Finding]]:
    """`text` with every secret replaced by `placeholder`, and what was found."""
    findings = find_secrets(text)
    if not findings:
        return text, []
    parts, position = [], 0
    for finding in findings:
        parts += [text[position : finding.start], placeholder]
        position = finding.end
    parts.append(text[position:])
    return "".join(parts), findings


def contains_secret(text: str) -> bool:
    """True when `text` holds a key, token, password, code, card, account or id number."""
    return bool(find_secrets(text))


_SENTENCE_RE = re.compile(r"[^\n]*?(?:[.!?;](?=\s|$)|\n|$)")


def sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of `text` (split at . ! ? ; followed by a space, and newlines)."""
    spans = []
    for match in _SENTENCE_RE.finditer(text):
        if match.group().strip():
            spans.append((match.start(), match.end()))
    return spans


# Words too common to say which sentence of a message a memory came from.
_COMMON_WORDS = frozenset(
    "a an and are as at be but by for from had has have he her his i i'm im is it its me my "  # noqa: SIM905
    "of on or our she so that the their them they this to user user's was we were with you "
    "your".split()
)
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _stems(text: str) -> set[str]:
    # A word's first four letters: "live" and "lives", "allergic" and "allergy" meet.
    return {
        word[:4]
        for word in _WORD_RE.findall(text.casefold())
        if word not in _COMMON_WORDS and len(word) > 1
    }


def supporting_sentences(text: str, content: str) -> list[str]:
    """The sentences of `text` that say `content`, in their order (each stripped).

    The sentence sharing most words with `content` first, then any other that adds words of
    it none chosen has ("My sister is Ana. She lives in Porto." for "My sister Ana lives in
    Porto"). Every sentence when none shares a word, or when `text` is one sentence.
    """
    spans = [text[start:end].strip() for start, end in sentences(text)]
    if len(spans) < 2:
        return spans
    wanted = _stems(content)
    scored = sorted(
        ((len(wanted & _stems(s)), i) for i, s in enumerate(spans)), key=lambda p: (-p[0], p[1])
    )
    covered: set[str] = set()
    chosen = []
    for score, index in scored:
        new = (wanted & _stems(spans[index])) - covered
        if score and new:
            chosen.append(index)
            covered |= new
    if not chosen:
        return spans
    return [spans[i] for i in sorted(chosen)]


def says(sentence: str, content: str) -> bool:
    """Whether `sentence` says `content`: it has every telling word of it ("I am allergic to
    penicillin and keep bees" says "I'm allergic to penicillin"; "The user is allergic to
    penicillin" too). Content with no telling word is said only by its own words."""
    wanted = _stems(content)
    if not wanted:
        return " ".join(content.split()).casefold() in " ".join(sentence.split()).casefold()
    return wanted <= _stems(sentence)


def without_statement(text: str, content: str, gone: Iterable[str] = ()) -> str:
    """`text` without the sentences that say `content` or hold one of the `gone` sentences
    (the forgotten memory's own quote): a whole sentence goes, never part of one. The rest is
    joined by single spaces, or `text` itself is returned when nothing goes."""
    gone = [" ".join(g.split()) for g in gone if g.strip()]
    kept = []
    for start, end in sentences(text):
        sentence = " ".join(text[start:end].split())
        if sentence and not says(sentence, content) and not any(g in sentence for g in gone):
            kept.append(sentence)
    cut = " ".join(kept)
    # Unchanged text stays as it was (no whitespace rewritten).
    return text if cut == " ".join(text.split()) else cut


def telling_words(text: str) -> set[str]:
    """The stems `says` compares (first four letters of each uncommon word)."""
    return _stems(text)


def quote(text: str, content: str, *, limit: int = 1000) -> str:
    """A memory's provenance quote: only the sentences of the person's message `text` that
    support `content`, secrets replaced by placeholders, at most `limit` characters.

    Secrets are found in the whole message first (a password's context may be the sentence
    before it), so none survives in a sentence quoted on its own.
    """
    redacted = redact(text)[0]
    return " ".join(supporting_sentences(redacted, content))[:limit]


def without_secrets(text: str) -> str:
    """`text` without the sentences that hold a secret: the rest may still be a useful fact."""
    findings = find_secrets(text)
    if not findings:
        return text
    kept = [
        text[start:end]
        for start, end in sentences(text)
        if not any(f.start < end and f.end > start for f in findings)
    ]
    clean = " ".join(" ".join(part.split()) for part in kept).strip()
    # A sentence split can leave a piece of a secret in a neighbour: check again.
    return clean if not contains_secret(clean) else ""


# --- Instructions and prompt structure ---

_STRUCTURE_RE = re.compile(
    r"</?\s*(?:memories|memory|system|assistant|user|instructions?|context|prompt|s)\s*>"
    r"|<\|[^|>]{1,40}\|>|<<\s*/?\s*SYS\s*>>|\[/?\s*(?:INST|SYS|SYSTEM)\s*\]"
    r"|<\s*/?\s*(?:start|end)_of_turn\s*>|^\s*#{2,}\s*(?:instruction|system|response|assistant|user)s?\b"
    r"|```\s*(?:system|assistant|instructions?)\b"
    r"|^\s*(?:system|assistant|developer|ai|bot|user|human)\s*:"
    r"|^\s*user\s*:\s*\w+\s*\n\s*system\s*:",
    re.IGNORECASE | re.MULTILINE,
)
_OVERRIDE_RE = re.compile(
    r"\b(?:ignore|disregard|forget|override|overrule|bypass|skip|drop)\s+(?:all\s+|any\s+|every\s+)?"
    r"(?:(?:of\s+)?(?:the|your|my|its|previous|prior|above|earlier|preceding|former|these|those|"
    r"system|memory|safety|content)\s+){0,3}"
    r"(?:instructions?|rules?|guidelines?|prompts?|programming|restrictions?|safety|filters?|"
    r"polic(?:y|ies)|directives?|constraints?|guardrails?|above|training)\b"
    r"|\b(?:previous|prior|above|earlier|your|all)\s+(?:instructions|rules|guidelines)\s+"
    r"(?:are|is)\s+(?:void|cancell?ed|null|revoked|obsolete)"
    r"|\byour\s+(?:rules|instructions|guidelines|restrictions|policies)\s+"
    r"(?:no longer|don'?t|do not)\s+apply"
    r"|\b(?:no longer|not)\s+bound\s+by\b"
    r"|\bdisable\s+(?:all\s+)?(?:the\s+)?(?:safety|content|rules|filters|guardrails)",
    re.IGNORECASE,
)
_PERSONA_RE = re.compile(
    r"\byou\s+are\s+now\b|\byou'?re\s+now\b|\bfrom\s+now\s+on,?\s+you\s+are\b"
    r"|\b(?:act|behave|respond)\s+as\s+(?:if\s+you\s+(?:were|are)\s+)?(?:an?\s+|my\s+|the\s+)?"
    r"(?!(?:a\s+)?(?:concise|brief|friendly|patient)\b)\w+"
    r"|\bpretend\s+(?:to\s+be|you\s+are|you're|that\s+you)\b|\broleplay\s+as\b"
    r"|\byou\s+are\s+(?:an?\s+)?(?:new|different|unfiltered|uncensored|unrestricted|evil|root|jailbroken)\b"
    r"|\b(?:DAN|do anything now|jailbreak|jailbroken|god mode|STAN|DUDE)\b"
    r"|\b(?:enable|enter|activate|switch\s+to|you\s+are\s+in|you're\s+in|in)\s+(?:the\s+)?"
    r"(?:developer|dev|god|debug|unrestricted|jailbreak|admin)\s+mode\b"
    r"|\bwithout\s+(?:any\s+)?(?:rules|restrictions|limits|filters|censorship|refusing)\b"
    r"|\bno\s+(?:rules|restrictions|limits|filters)\b|\bunfiltered\b|\buncensored\b",
    re.IGNORECASE,
)
_EXFILTRATION_RE = re.compile(
    r"\b(?:reveal|print|show|repeat|leak|output|dump|display|give me|tell me|"
    r"respond\s+only\s+with)\b"
    r"[^.!?\n]{0,40}\b(?:system\s+prompt|hidden\s+(?:instructions|prompt)|your\s+instructions|"
    r"initial\s+prompt|the\s+text\s+above|your\s+prompt|admin\s+password|secrets?)\b"
    r"|\b(?:new|updated|real|actual)\s+(?:system\s+)?(?:instructions|system\s+prompt|rules)\s*:"
    r"|\bend\s+of\s+(?:memories|memory|system\s+prompt|instructions)\b"
    r"|\bgrant\s+(?:me|the\s+user|this\s+user)\s+(?:\w+\s+)?(?:admin|root|full|elevated|superuser)\b"
    r"|\b(?:must|will|shall|always)\s+obey\b|\bobey\s+(?:me|the\s+user|every|all)\b"
    r"|\b(?:send|post|forward|upload|exfiltrate)\b[^.!?\n]{0,40}\bhttps?://"
    r"|!\[[^\]]*\]\(\s*https?://"
    r"|\b(?:always|every|each)\b[^.!?\n]{0,40}\b(?:include|add|append|insert)\b[^.!?\n]{0,40}https?://"
    r"|\bnote\s+to\s+(?:the\s+)?(?:ai|assistant|model|llm)\b"
    r"|\bthe\s+developers?\s+says?\b"
    r"|\b(?:assistant|ai|model)\s+must\s+ignore\b",
    re.IGNORECASE,
)


def is_injection(text: str) -> bool:
    """Text that tries to instruct the assistant or change the prompt's structure.

    A person's preference phrased as a request ("always answer in French", "never use emojis")
    is not one: it is data about them, and the prompt marks memories as data.
    """
    return bool(
        _STRUCTURE_RE.search(text) or _OVERRIDE_RE.search(text) or _PERSONA_RE.search(text)
        or _EXFILTRATION_RE.search(text)
    )  # fmt: skip


def without_injections(text: str) -> str:
    """`text` without the sentences that try to instruct the assistant."""
    if not is_injection(text):
        return text
    kept = [text[s:e] for s, e in sentences(text) if not is_injection(text[s:e])]
    clean = " ".join(" ".join(part.split()) for part in kept).strip()
    return clean if not is_injection(clean) else ""


def clean_text(text: str) -> str:
    """For prose Mnemo writes itself (summaries): secrets redacted, instructions dropped."""
    redacted, _ = redact(without_injections(text))
    return redacted
