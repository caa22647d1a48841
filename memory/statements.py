"""Deterministic extraction: what a person states about themselves, in their own words.

The floor under any model (and all there is on the embedded default, whose 135M model echoes
its examples): sentences are cut into clauses, lead-ins ("Big news:", "Please remember that",
"By the way,") are dropped, and each clause is read by patterns for the common forms of a
statement about oneself: identity (name, residence, origin, employer, role, timezone,
language, age), diet and allergies, preferences including imperatives ("Please keep answers
short", "bullet points are best"), tasks, habits and their negations, and the people, pets
and places in the person's life. Each statement gets a kind and, where one value replaces
another ("I moved to Berlin" after "I live in Lisbon"), a slot. Questions, requests, chit-chat
and passing moods are not statements.

Plain regular expressions rather than a parser: they take microseconds, load nothing, and do
exactly what the labeled set (tests/memory/labeled_extraction.py) says, case by case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

PROFILE, PREFERENCE, FACT, TASK = "profile", "preference", "fact", "task"


@dataclass(frozen=True)
class Statement:
    kind: str
    content: str
    slot: str | None = None


@dataclass(frozen=True)
class Mention:
    """A person, pet, place or organisation the person named, with what they said of it."""

    name: str
    type: str  # person | pet | place | organization
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Reading:
    statements: list[Statement] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    # The clauses that were statements about the person or their life (for grounding).
    clauses: list[str] = field(default_factory=list)

    @property
    def slots(self) -> dict[str, str]:
        return {s.slot: s.content for s in self.statements if s.slot}


# --- Vocabulary ---

_CAP = r"[A-ZÀ-ÖØ-Þ][\w'.&-]*"
# A proper name: capitalized words, with the small connectors of place and family names.
_CONNECTOR = r"de|da|do|dos|das|del|della|di|du|van|von|der|den|le|la|al|bin|of"
NAME = rf"{_CAP}(?:(?: (?:{_CONNECTOR}))? {_CAP}){{0,3}}"
_DEMONYMS = frozenset(
    """american british english scottish welsh irish french german dutch belgian swiss
    austrian italian spanish portuguese brazilian mexican argentinian chilean colombian
    peruvian canadian australian indian pakistani chinese japanese korean vietnamese thai
    filipino indonesian malaysian russian ukrainian polish czech slovak hungarian romanian
    bulgarian greek turkish swedish norwegian danish finnish icelandic nigerian kenyan
    ghanaian ethiopian egyptian moroccan israeli iranian iraqi lebanese syrian saudi
    european african asian latino latina catholic christian jewish muslim buddhist hindu
    atheist vegan vegetarian sorry fine ok okay new back here home ready done""".split()  # noqa: SIM905
)
ROLES = frozenset(
    """nurse teacher doctor engineer developer designer manager student lawyer architect chef
    cook writer journalist librarian accountant consultant scientist researcher programmer
    analyst artist musician photographer pharmacist dentist farmer pilot firefighter officer
    mechanic electrician plumber carpenter therapist psychologist professor lecturer tutor
    translator editor founder ceo cto cfo freelancer entrepreneur retiree pensioner paramedic
    midwife vet veterinarian surgeon physician barista waiter waitress cashier driver soldier
    intern assistant secretary clerk baker butcher tailor gardener cleaner nanny caregiver
    coach trainer instructor administrator admin technician economist biologist chemist
    physicist mathematician historian sociologist linguist illustrator animator producer
    director actor actress singer dancer sailor fisherman builder contractor realtor agent
    banker broker trader investor recruiter marketer salesperson salesman saleswoman
    receptionist postdoc phd undergrad nutritionist dietitian optician radiologist
    physiotherapist pediatrician anesthesiologist cardiologist psychiatrist counselor
    counsellor social worker volunteer owner""".split()  # noqa: SIM905
)
SPECIES = (
    r"dog|puppy|cat|kitten|parrot|rabbit|bunny|hamster|guinea pig|horse|pony|fish|goldfish|"
    r"turtle|tortoise|bird|budgie|canary|snake|lizard|gecko|ferret|chinchilla|rat|mouse|pig|"
    r"goat|chicken|hen|beagle|labrador|poodle|terrier|spaniel|retriever|collie|husky"
)
RELATIONS = (
    r"brother|sister|mother|mom|mum|father|dad|wife|husband|partner|boyfriend|girlfriend|"
    r"fiancée|fiancee|fiancé|fiance|son|daughter|friend|best friend|colleague|coworker|"
    r"co-worker|boss|manager|cousin|uncle|aunt|grandma|grandmother|granny|grandpa|"
    r"grandfather|niece|nephew|roommate|flatmate|neighbour|neighbor|kid|child|baby|"
    r"stepson|stepdaughter|stepmother|stepfather|sibling|twin|mentor|teammate|classmate"
)
# One value at a time: a new one replaces the old (not "friend", "kid": there can be many).
_SINGLE_RELATIONS = frozenset(
    [
        "wife",
        "husband",
        "partner",
        "boyfriend",
        "girlfriend",
        "fiancée",
        "fiancee",
        "fiancé",
        "fiance",
        "boss",
        "manager",
        "mentor",
    ]
)
DIETS = (
    r"vegetarian|vegan|pescatarian|pescetarian|flexitarian|keto|paleo|gluten-free|kosher|"
    r"halal|carnivore|plant-based|lacto-vegetarian|ovo-vegetarian"
)
# Medicines: the usual names, and the generic names by their endings (…pril, …olol, …statin,
# …oxetine). Shared with memory/exposure.py, which reads a text with them as health.
MEDICATIONS = (
    r"[a-z]{3,}(?:pril|sartan|olol|statin|formin|prazole|oxetine|xetine|aline|azepam|zepam|"
    r"azolam|thyroxine|cillin|mycin|cycline|floxacin|triptan|gliptin|gliflozin|parin|xaban|"
    r"gabalin|pentin|dronate|semide|thiazide|dipine|profen|codone|morphine|tidine|lukast|"
    r"nisone|solone|cortisone|triptyline|faxine|pramine|peridol|iapine|zapine|ridone|zodone|"
    r"talopram|tropium|sterone|estradiol)|"
    r"insulin|metformin|aspirin|warfarin|methotrexate|paracetamol|acetaminophen|"
    r"ibuprofen|naproxen|bupropion|adderall|ritalin|methylphenidate|melatonin|"
    r"antihistamines?|antibiotics?|antidepressants?|blood thinners?|beta[- ]blockers?|statins?|"
    r"steroids?|birth control|the pill|hrt|medications?|medicines?|meds|pills|inhalers?|"
    r"an inhaler|chemo(?:therapy)?|dialysis"
)
# Conditions a person may say they have ("I have asthma", "I live with epilepsy"): plain
# names, which memory/exposure.py also reads as health.
CONDITION_NAMES = (
    r"asthma|diabetes|epilepsy|eczema|psoriasis|dermatitis|rosacea|lupus|multiple sclerosis|"
    r"parkinson'?s|alzheimer'?s|dementia|endometriosis|pcos|hypothyroidism|hyperthyroidism|"
    r"thyroid|an(?:a)?emia|gout|sleep apn(?:o)?ea|insomnia|tinnitus|glaucoma|dyslexia|"
    r"dyspraxia|fibromyalgia|osteoporosis|scoliosis|arthritis|hernia|concussion|migraines?|"
    r"adhd|autism|ocd|ptsd|depression|anxiety|bipolar(?: disorder)?|schizophrenia|"
    r"hypertension|high blood pressure|low blood pressure|high cholesterol|cancer|leukemia|"
    r"leukaemia|tumou?r|hiv|hepatitis [a-e]|crohn'?s(?: disease)?|colitis|ibs|coeliac|celiac|"
    r"acid reflux|gerd|copd|bronchitis|cystic fibrosis|sickle cell|long covid|tourette'?s|"
    r"cerebral palsy|atrial fibrillation|afib|arrhythmia|hay ?fever"
)
# With the forms only a whole clause can tell ("a chronic back condition", "type 2 diabetes").
_CONDITION = (
    rf"(?:an? )?(?:(?:type [12] |gestational )?(?:{CONDITION_NAMES})|thyroid \w+|"
    r"chronic \w+(?: \w+)?|[\w' -]+ (?:disease|disorder|syndrome|condition))"
)
# Conditions said as an adjective ("I'm diabetic").
_CONDITION_ADJECTIVES = (
    r"diabetic|pre-?diabetic|asthmatic|epileptic|an(?:a)?emic|coeliac|celiac|autistic|"
    r"bipolar|dyslexic|dyspraxic|hypothyroid|hyperthyroid|immunocompromised|hiv positive|"
    r"hiv-positive|pregnant|anorexic|bulimic|insomniac|arthritic"
)
_STYLE_NOUNS = (
    r"answers?|replies|reply|responses?|explanations?|messages?|summaries|summary|emails?"
)
_LENGTH = r"short|shorter|brief|briefer|concise|long|longer|detailed|thorough|in-depth|succinct"
_TONE = r"casual|formal|friendly|technical|simple|plain|polite|direct|blunt|funny"
_FORMAT = (
    r"bullet points?|bullets|lists?|numbered lists?|tables?|code examples?|examples?|"
    r"step-by-step|steps|headings|markdown|prose|paragraphs|diagrams|links|sources|emojis?|"
    r"metric units|imperial units|metric|imperial|celsius|fahrenheit"
)
_TIME_TAIL = re.compile(
    r"(?:,?\s+(?:now|anymore|any more|again|these days|nowadays|too|as well|instead|"
    r"(?:since |from |in |last |this |next |every |each |on )?(?:last|this|next|a|one|every)?"
    r"\s*(?:week|month|year|weekend|summer|winter|spring|autumn|fall|morning|evening|night|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|"
    r"may|june|july|august|september|october|november|december)s?|yesterday|today|tonight|"
    r"recently|lately|already|finally|actually))+$",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"\b(?:today|tonight|right now|this morning|this afternoon|this evening|at the moment|"
    r"just now|yesterday|so far)\b",
    re.IGNORECASE,
)
_MOOD = re.compile(
    r"^i(?:'m| am)(?: (?:so|very|really|a bit|a little|kind of|kinda|quite|pretty|too|just))*"
    r" (?:tired|exhausted|hungry|thirsty|bored|sleepy|sick|ill|busy|stressed|happy|sad|"
    r"excited|sorry|glad|fine|good|ok|okay|great|here|back|home|confused|lost|curious|"
    r"ready|done|late|annoyed|angry|upset|worried|nervous|thrilled|grateful|thankful|"
    r"not sure|unsure|wondering|asking|back again|jk|kidding|joking)\b",
    re.IGNORECASE,
)
# "I need help with…", "I want to know…", "I think…": requests and opinions, not statements.
_NOT_A_STATEMENT = re.compile(
    r"^i(?:'d| would| will|'ll| could| should| might| can|'m going to| am going to| was"
    r"| wonder| was wondering| need| want| wanted| hope| guess| think| thought| believe"
    r"| mean| see| agree| understand| know| don't know| do not know| don't understand"
    r"| forgot| have a question| got a question| just| feel like| bet| suppose| get it"
    r"| can't| cannot| couldn't| didn't| did)\b",
    re.IGNORECASE,
)
_PRONOUN_OBJECT = re.compile(r"\b(?:him|her|them|it|this|that|these|those|he|she|they)\b", re.I)
_FIRST_PERSON = re.compile(
    r"^(?:i|i'm|i've|i'd|i'll|my|mine|we|we're|we've|our|me)\b", re.IGNORECASE
)
_STOP = frozenset(
    """a an the my our your his her their this that these those some any of to in on at for
    with from by about as and or but very really so also just new old own one two three""".split()  # noqa: SIM905
)


# --- Splitting ---

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE_SPLIT = re.compile(
    r"\s*;\s*"
    r"|,?\s+(?:and|but|so|because|plus)\s+(?=(?:also\s+)?(?:i|i'm|i've|i'd|my|we|we're|we've|our)\b)"
    r"|,\s+(?=(?:i|i'm|i've|i'd|my|we|we're|we've|our|also i)\b)"
    rf"|,\s+(?=(?:[\w-]+\s+){{0,2}}(?:{_FORMAT}|{_STYLE_NOUNS})\s+(?:is|are|work|works)\s+best\b)"
    r"|,\s+(?=(?:please\s+)?(?:keep|make|use|avoid|no|don't use|do not use)\b)",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|yo|greetings|good (?:morning|afternoon|evening))(?: there)?"
    r"(?: mnemo)?|so|well|ok|okay|oh|ah|and|also|anyway|anyways|actually|btw|by the way|fyi|"
    r"for the record|just so you know|just fyi|for context|for your information|quick update|"
    r"update|news|big news|good news|great news|sad news|fun fact|guess what|heads up|"
    r"as i said|as i told you|like i said|as mentioned|changed my mind|i changed my mind|"
    r"in fact|honestly|to be honest|tbh|now|these days|nowadays|lately|currently|recently|"
    r"finally|plus|oh and|and also|one more thing|also note|p\.?s\.?)\b[\s,:;!.\u2014\u2013-]*"
    # Interjections only with their punctuation: "No emojis" is a request, "No, I …" is not.
    r"|^(?:yes|yeah|yep|no|nope|sure|thanks|thank you|cool|great|nice|right|haha|lol)"
    r"\b\s*[,:;!.\u2014\u2013-]+\s*",
    re.IGNORECASE,
)
_REMEMBER = re.compile(
    r"^(?:please\s+)?(?:remember|note|keep in mind|don't forget|do not forget|make a note|"
    r"take note|save|store|memori[sz]e)(?:\s+(?:that|this))?(?:\s*:\s*|\s*,\s*|\s+)"
    r"(?=(?:i|i'm|i've|my|we|our)\b)",
    re.IGNORECASE,
)
_TELL = re.compile(
    r"^(?:i (?:just )?(?:wanted|want|would like|'d like) to (?:tell|let) you(?: know)?|"
    r"i should (?:tell you|mention)|you should know|let me tell you|i forgot to (?:tell you|"
    r"mention)|i'd like you to know|i want you to know)(?: that)?[\s,:]*",
    re.IGNORECASE,
)
_HEADLINE = re.compile(r"^[\w' -]{1,30}:\s+(?=\S)")


def _clean(text: str) -> str:
    for curly, straight in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"')):
        text = text.replace(curly, straight)
    return " ".join(text.split())


def _strip_lead_ins(clause: str) -> str:
    previous = None
    while clause and clause != previous:
        previous = clause
        clause = _LEAD_IN.sub("", clause, count=1).strip()
        clause = _REMEMBER.sub("", clause, count=1).strip()
        clause = _TELL.sub("", clause, count=1).strip()
        headline = _HEADLINE.match(clause)
        if headline and not re.match(r"(?i)^(?:my|our) [\w ]+:", clause):
            clause = clause[headline.end() :].strip()
    return clause


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(_clean(text)) if s.strip()]


def is_question(sentence: str) -> bool:
    bare = sentence.rstrip(" )\"'!.:;😊🙂").strip()
    return bare.endswith("?")


def clauses(sentence: str) -> list[str]:
    """A sentence cut where a new statement starts ("I'm Ada and I live in Paris")."""
    parts = []
    for part in _CLAUSE_SPLIT.split(sentence):
        part = _strip_lead_ins(part.strip(" ,.!;:-\u2014\u2013\"'()"))
        part = re.sub(r"(?i)(?:,\s*|\s+)please$", "", part).strip(" ,.!;:-\"'")
        if part:
            parts.append(part)
    return parts


# --- Helpers ---


def _sentence(text: str) -> str:
    text = text.strip(" ,;:-")
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!")) else text + "."


def _expand(text: str) -> str:
    """The person's words with "I'm" spelled out, which the guards count as three words."""
    text = re.sub(r"(?i)\bi'm\b", "I am", text)
    text = re.sub(r"(?i)\bwe're\b", "we are", text)
    text = re.sub(r"(?i)^we\b", "I", text)
    return re.sub(r"(?i)^i\b", "I", text)


def _untimed(text: str) -> str:
    return _TIME_TAIL.sub("", text).strip(" ,")


def _joined(*parts: str) -> str:
    """Pieces of a rewritten statement, one space between each: a captured fragment loses
    its own leading space to `_untimed` and `strip`, so a rewrite never concatenates them
    ("a nurse" + "at the city hospital", not "a nurseat the city hospital")."""
    return " ".join(part.strip() for part in parts if part and part.strip())


def head_noun(phrase: str) -> str:
    """The word a phrase is about: "a budgeting app in Django" → "app", "green tea" → "tea"."""
    phrase = _untimed(phrase.lower())
    phrase = re.split(
        r"\b(?:on|in|at|for|about|with|by|from|to|of|every|each|since|because)\b|,", phrase
    )[0]
    words = [w for w in re.findall(r"[\w'-]+", phrase) if w not in _STOP]
    return words[-1] if words else ""


def _lemma(verb: str) -> str:
    verb = verb.lower()
    irregular = {"ran": "run", "drank": "drink", "ate": "eat", "had": "have", "has": "have",
                 "went": "go", "did": "do", "does": "do", "quit": "quit", "smoked": "smoke",
                 "swam": "swim", "drove": "drive", "played": "play", "using": "use",
                 "driving": "drive", "smoking": "smoke", "cycling": "cycle", "having": "have",
                 "making": "make", "taking": "take", "baking": "bake", "writing": "write",
                 "dancing": "dance", "skating": "skate", "running": "run", "swimming": "swim",
                 "shopping": "shop", "jogging": "jog"}  # fmt: skip
    if verb in irregular:
        return irregular[verb]
    for suffix in ("ing", "ed", "es", "s"):
        if verb.endswith(suffix) and len(verb) > len(suffix) + 2:
            return verb[: -len(suffix)]
    return verb


def _answer_slot(text: str) -> str | None:
    lowered = text.lower()
    if re.search(rf"\b(?:{_LENGTH})\b", lowered):
        return "answers:length"
    if re.search(rf"\b(?:{_TONE})\b", lowered) and re.search(
        rf"\b(?:{_STYLE_NOUNS}|tone)\b", lowered
    ):
        return "answers:tone"
    if re.search(r"\bemojis?\b", lowered):
        return "answers:emoji"
    if re.search(r"\b(?:metric|imperial|celsius|fahrenheit)\b", lowered):
        return "answers:units"
    if re.search(
        r"\b(?:in|into) (?:english|french|german|spanish|portuguese|italian|dutch)\b", lowered
    ):
        return "answers:language"
    if re.search(rf"\b(?:{_FORMAT})\b", lowered):
        return "answers:format"
    return None


# --- Patterns: each reads one clause, or declines (returns None) ---

Read = tuple[list[Statement], list[Mention]]
_I = r"(?i:i|we)"
_AM = r"(?i:i'm|i am|we're|we are)"
# "I have", "I've got", "I also have", "we've got".
_HAVE = r"(?i:i|we)(?i:'ve| have)?(?i:\s+(?:also|still|now|even))*\s+(?i:have|got)"
_SEVERITY = r" (?i:severe|serious|mild|bad|slight|strong|deadly|life-threatening|food)"


def _name(clause: str) -> Read | None:
    m = re.match(
        rf"^(?i:my name is|my name's|i am called|i'm called|call me|people call me|"
        rf"everyone calls me|i go by|name's|you can call me)\s+(?P<name>{NAME})\b",
        clause,
    ) or re.match(
        rf"^(?i:i'm|i am|this is|it's)\s+(?P<name>{NAME})"
        r"(?P<rest>$|,.*$|\s+(?i:here|from|and)\b.*$)",
        clause,
    )
    if not m:
        return None
    name = m.group("name")
    stated = "rest" not in m.groupdict()  # "my name is X", not "I'm X" ("I'm British")
    if not stated and (name.split()[0].lower() in _DEMONYMS or name.lower() in ROLES):
        return None
    statements = [Statement(PROFILE, f"My name is {name}.", "name")]
    mentions: list[Mention] = []
    rest = (m.groupdict().get("rest") or "").strip(" ,")
    origin = re.match(rf"^(?i:from|originally from)\s+(?P<place>{NAME})", rest)
    if origin:
        statements.append(Statement(PROFILE, f"I am from {origin.group('place')}.", "origin"))
        mentions.append(Mention(origin.group("place"), "place"))
    role = re.match(
        rf"^(?i:a|an)\s+(?P<role>[a-z][a-z -]*?)(?:\s+(?i:in|at|from)\s+(?P<place>{NAME}))?$", rest
    )
    if role and role.group("role").split()[-1] in ROLES:
        where = f"in {role.group('place')}" if role.group("place") else ""
        statements.append(
            Statement(PROFILE, _joined("I work as a", role.group("role"), where) + ".", "role")
        )
        if role.group("place"):
            mentions.append(Mention(role.group("place"), "place"))
    return statements, mentions


def _residence(clause: str) -> Read | None:
    m = re.match(
        rf"^{_I}(?i:(?:'ve|'re| have| are| am|'m)?(?:\s+(?:just|recently|finally|now|currently|"
        rf"still|also|already))*\s+(?:live|living|lived|reside|residing|based|moved|moving back|"
        rf"relocated|settled|went back|moved back))\s+(?i:in|to|back to|down to|over to|into)\s+"
        rf"(?P<place>{NAME})(?P<rest>.*)$",
        clause,
    )
    if not m or re.search(
        r"(?i)\b(?:used to|will|going to|plan|planning|want|might)\b", clause[: m.start("place")]
    ):
        return None
    # No place entity: the profile holds where the person lives, and a move would leave the
    # old city behind as a place in their life.
    return [Statement(PROFILE, f"I live in {m.group('place')}.", "residence")], []


def _origin(clause: str) -> Read | None:
    m = re.match(
        rf"^(?:{_AM}|{_I} (?i:come|came))(?i:\s+originally)?\s+(?i:from)\s+(?P<place>{NAME})"
        rf"|^{_I} (?i:grew up|was born) (?i:in) (?P<place2>{NAME})",
        clause,
    )
    if not m:
        return None
    place = m.group("place") or m.group("place2")
    return [Statement(PROFILE, f"I am from {place}.", "origin")], [Mention(place, "place")]


def _employer(clause: str) -> Read | None:
    m = re.match(
        r"^(?i:i|we)(?i:'m| am| are|'ve| have)?(?i:\s+(?:now|currently|still|just|recently|also))*"
        r"\s+(?i:work|working|employed|started(?: a new job| working)?|joined|got a (?:new )?job)"
        rf"\s*(?i:at|for|by|with)?\s+(?P<org>(?i:the )?{NAME}|(?i:a|an|the) [a-z][\w -]+?)"
        r"(?P<rest>(?:\s+(?i:as|in)\s+.+)?)$",
        clause,
    )
    if not m:
        return None
    org, rest = m.group("org"), _untimed(m.group("rest") or "")
    if re.match(r"(?i)^(?:a|an) ", org) and head_noun(org) in ROLES:
        return None  # "I work as a nurse" is a role
    content = _joined("I work at", org, rest) + "."
    mentions = (
        [] if org[:1].islower() else [Mention(re.sub(r"^(?i:the) ", "", org), "organization")]
    )
    return [Statement(PROFILE, content, "employer")], mentions


def _role(clause: str) -> Read | None:
    m = re.match(
        r"^(?:(?i:i|we)(?i:'m| am)?(?i:\s+(?:now|currently|still))*\s+(?i:work(?:ing)? as)"
        r"|(?i:my) (?i:job|role|position|title|profession) (?i:is)"
        r"|(?i:i'm|i am)(?i:\s+(?:now|currently|still|also))*)"
        r"\s+(?:(?i:an|a)\s+)?(?P<role>[a-zA-Z][a-zA-Z -]*?)"
        r"(?P<rest>(?:\s+(?i:at|in|for|by|from)\s+.+)?)$",
        clause,
    )
    if not m:
        return None
    role = _untimed(m.group("role")).strip()
    words = role.lower().split()
    if not words or words[-1] not in ROLES or len(words) > 4:
        return None
    if words[-1] == "owner" and len(words) == 1:
        return None
    article = "an" if role[:1].lower() in "aeiou" else "a"
    content = _joined("I work as", article, role, _untimed(m.group("rest") or "")) + "."
    mentions = []
    at = re.search(rf"\b(?i:at|for)\s+(?P<org>{NAME})", m.group("rest") or "")
    if at:
        mentions.append(Mention(at.group("org"), "organization"))
    return [Statement(PROFILE, content, "role")], mentions


def _timezone(clause: str) -> Read | None:
    m = re.match(
        r"^(?i:my|our) (?i:time ?zone) (?i:is)(?i: now)?\s+"
        r"(?P<tz>[A-Za-z][\w/+:-]*(?: [A-Z][\w/+:-]*)?)"
        r"|^(?:(?i:i'm|i am|we're|we are)(?i: now)? (?i:in|on)(?i: the)?)\s+"
        r"(?P<tz2>[A-Z][\w/+:-]*(?: [A-Z][\w/+:-]*)?)\s+(?i:time ?zone|time)\b",
        clause,
    )
    if not m:
        return None
    tz = m.group("tz") or m.group("tz2")
    return [Statement(PROFILE, f"My timezone is {tz}.", "timezone")], []


def _language(clause: str) -> Read | None:
    m = re.match(
        r"^(?:(?i:i|we) (?i:speak|am fluent in|'m fluent in|am a native speaker of)|"
        r"(?i:my) (?i:native|first|mother) (?i:language|tongue) (?i:is))\s+(?P<what>.+)$",
        clause,
    )
    if not m:
        return None
    return [Statement(PROFILE, _sentence(_expand(_untimed(clause))), "language")], []


def _age(clause: str) -> Read | None:
    m = re.match(
        r"^(?i:i'm|i am|i just turned|i turned|i've turned|i have turned|i'll be|i will be)"
        r"(?i:\s+(?:now|already|just))?\s+(?P<n>\d{1,3})(?i:\s+(?:years old|years|yo|yrs))?"
        r"(?P<rest>.*)$",
        clause,
    )
    if not m or _untimed(m.group("rest")).strip(" !.") or not 1 <= int(m.group("n")) <= 120:
        return None
    # In the person's words where they did not say "years old" (the guards check grounding).
    said = "year" in clause.lower()
    content = f"I am {m.group('n')} years old." if said else _sentence(_expand(_untimed(clause)))
    return [Statement(PROFILE, content, "age")], []


def _diet(clause: str) -> Read | None:
    lowered = clause.lower()
    m = re.match(
        r"^(?:i'm|i am|i've been|i have been|i became|i went|i've gone|i have gone|we're|we are|"
        r"we went|i turned|i'm now|i am now)(?:\s+(?:now|a|an|strictly|fully|mostly|also|"
        rf"completely))*\s+(?P<diet>{DIETS})(?P<rest>.*)$",
        lowered,
    )
    if m:
        diet = m.group("diet")
        statements = [Statement(PROFILE, f"I am {diet}.", "diet")]
        mentions: list[Mention] = []
        living = re.search(rf"\b(?i:living|based) (?i:in) (?P<place>{NAME})", clause)
        if living:
            statements.append(
                Statement(PROFILE, f"I live in {living.group('place')}.", "residence")
            )
            mentions.append(Mention(living.group("place"), "place"))
        return statements, mentions
    m = re.match(
        r"^(?:i|we) (?:don't|do not|no longer|never|can't|cannot|won't|stopped|quit)\s+"
        r"(?:eat|eating)\s+(?P<food>(?:red )?meat|fish|pork|beef|dairy|eggs|gluten|seafood|"
        r"animal products|chicken)\b",
        lowered,
    )
    if m:
        food = m.group("food")
        slot = "diet" if food in ("meat", "red meat", "animal products") else f"avoid:{food}"
        return [Statement(PROFILE, f"I don't eat {food}.", slot)], []
    m = re.match(r"^(?:i'm|i am) no longer (?:a )?(?P<diet>\w+)", lowered)
    if m and re.fullmatch(DIETS, m.group("diet")):
        return [Statement(PROFILE, f"I am no longer {m.group('diet')}.", "diet")], []
    m = re.match(
        r"^(?:i|we) (?:now |started |have started |'ve started )?(?:eat|eating) "
        r"(?P<food>meat|fish) again",
        lowered,
    )
    if m:
        return [Statement(PROFILE, _sentence(_expand(clause)), "diet")], []
    return None


def _allergy(clause: str) -> Read | None:
    m = re.match(
        r"^(?i:i'm|i am|i've become|i have become|i became|we're|we are)"
        r"(?i:\s+(?:also|very|severely|seriously|quite|highly|mildly|slightly|deathly))*\s+"
        r"(?i:allergic to)\s+(?P<what>.+)$",
        clause,
    ) or re.match(
        rf"^{_HAVE}(?: (?i:an?))?(?:{_SEVERITY})* (?i:allerg(?:y|ies)) (?i:to) (?P<what>.+)$",
        clause,
    )
    if m:
        what = _untimed(m.group("what")).strip(" .")
        return [Statement(PROFILE, f"I am allergic to {what}.", f"allergy:{head_noun(what)}")], []
    # "I have a nut allergy", "I've got a severe shellfish allergy": in the person's words.
    m = re.match(
        rf"^{_HAVE}(?: (?i:an?))?(?:{_SEVERITY})* (?P<what>[\w -]+?) (?i:allerg(?:y|ies))$",
        clause,
    )
    if m:
        what = m.group("what")
        content = _sentence(_expand(clause))
        return [Statement(PROFILE, content, f"allergy:{head_noun(what)}")], []
    m = re.match(
        r"^(?i:i'm|i am)(?i:\s+(?:also|very|quite|a bit))*\s+(?P<what>[\w-]+) (?i:intolerant)$",
        clause,
    )
    if m:
        what = m.group("what").lower()
        return [Statement(PROFILE, f"I am {what} intolerant.", f"intolerance:{what}")], []
    return None


def _pet(clause: str) -> Read | None:
    m = re.match(
        rf"^{_I} (?i:have|has|got|adopted|own|just got|recently adopted)"
        r"(?i: (?:a|an|one|two|three|\d+|"
        rf"new|little|big|old|young|rescue|grey|gray|black|white|brown|ginger|tabby|cute|sweet))*\s+"
        rf"(?P<species>(?i:{SPECIES}))(?i:s)?,?\s+(?i:called|named)\s+(?P<name>{NAME})(?P<rest>.*)$",
        clause,
    )
    if not m:
        return None
    attributes = {"species": m.group("species").lower()}
    breed = re.search(rf"\b(?i:a|an) (?P<breed>(?i:{SPECIES}))\b", m.group("rest") or "")
    if breed:
        attributes["breed"] = breed.group("breed").lower()
    content = _sentence(_expand(_untimed(clause)))
    return [Statement(FACT, content)], [Mention(m.group("name"), "pet", attributes)]


def _third_party(clause: str) -> Read | None:
    """ "My brother Ravi lives in Pune", "Our cat Luna is 12", "My wife is called Maria"."""
    m = re.match(
        rf"^(?i:my|our)\s+(?:(?i:little|big|older|younger|elder|baby|best|old|new|twin|"
        rf"eldest|youngest|oldest)\s+)?(?P<what>(?i:{RELATIONS}|{SPECIES}))(?i:'s)?"
        rf"(?:\s+(?i:is called|is named|'s name is|name is|is)\s+(?P<named>{NAME})$|"
        rf",?\s+(?P<name>{NAME})(?P<rest>.*)$|(?P<bare>\s+.*)$)",
        clause,
    )
    if not m:
        return None
    what = m.group("what").lower()
    name = m.group("named") or m.group("name")
    if name and name.split()[0].lower() in {"is", "and"}:
        name = None
    content = _sentence(_expand(_untimed(clause)) if not m.group("bare") else _expand(clause))
    if m.group("named"):
        content = f"My {what} is {name}."
    slot = f"relation:{what}" if what in _SINGLE_RELATIONS and m.group("named") else None
    mentions = []
    if name:
        is_pet = re.fullmatch(SPECIES, what) is not None
        attributes = {"species" if is_pet else "relation": what}
        rest = m.group("rest") or ""
        for pattern, key in (
            (rf"\b(?i:lives|living|moved) (?i:in|to) (?P<v>{NAME})", "lives in"),
            (rf"\b(?i:works|working|started) (?i:at|for) (?P<v>{NAME})", "works at"),
            (r"\b(?i:as|is) (?i:an?) (?P<v>[a-z][a-z ]*?)(?=$|[,.]| at | in | and )", "job"),
            (r"\b(?i:is|turned) (?P<v>\d{1,3})\b", "age"),
        ):
            found = re.search(pattern, rest)
            if found and (key != "job" or found.group("v").split()[-1] in ROLES):
                attributes[key] = found.group("v")
        mentions.append(Mention(name, "pet" if is_pet else "person", attributes))
    return [Statement(FACT, content, slot)], mentions


def _preference(clause: str) -> Read | None:
    m = re.match(
        r"^(?i:i|we)\s+(?:(?i:really|absolutely|totally|also|still|much|do|kind of|kinda|truly|"
        r"just|definitely|generally|usually|mostly|now|actually|secretly)\s+)*"
        r"(?P<verb>(?i:prefer|like|love|enjoy|adore|hate|dislike|detest|can't stand|cannot stand|"
        r"don't like|do not like|don't enjoy|do not enjoy|am into|'m into|am a big fan of|"
        r"'m a big fan of|am a fan of|'m a fan of|am not a fan of|'m not a fan of))"
        r"\s+(?P<what>.+)$",
        clause,
    )
    if m:
        content = _sentence(_expand(clause))
        slot = (
            _answer_slot(m.group("what"))
            if re.search(_STYLE_NOUNS, m.group("what"), re.I)
            else None
        )
        if slot is None:
            thing = head_noun(m.group("what"))
            slot = f"taste:{_lemma(thing)}" if thing else None
        return [Statement(PREFERENCE, content, slot)], []
    m = re.match(
        r"^(?i:my|our)\s+(?i:(?:all[- ]time\s+)?favou?rite)\s+(?P<thing>[\w ]+?)"
        r"\s+(?i:is|are)\s+(?P<v>.+)$",
        clause,
    )
    if m:
        return [
            Statement(
                PREFERENCE, _sentence(_untimed(clause)), "favorite:" + m.group("thing").lower()
            )
        ], []
    return None


def _imperative(clause: str) -> Read | None:
    """Requests about how to answer: preferences in the imperative."""
    lowered = clause.lower()
    m = re.match(
        rf"^(?:please\s+)?(?:always\s+)?(?:keep|make)\s+(?:your\s+|the\s+|my\s+)?(?P<obj>{_STYLE_NOUNS}|it|them|things)"
        r"\s+(?P<adj>(?:very\s+|nice and\s+|really\s+)?"
        rf"(?:{_LENGTH}|{_TONE}|to the point|short and sweet))\b",
        lowered,
    )
    if m:
        adj = re.sub(r"^(?:very|nice and|really)\s+", "", m.group("adj"))
        obj = (
            m.group("obj")
            if m.group("obj").startswith(
                ("answer", "repl", "respon", "expla", "summ", "mess", "email")
            )
            else "answers"
        )
        content = f"I prefer {adj} {obj}."
        return [Statement(PREFERENCE, content, _answer_slot(content) or "answers:style")], []
    m = re.match(
        r"^(?:please\s+)?(?:use|give me|show me|include|write in|answer in|reply in|respond in|"
        r"talk to me in|explain in|format (?:answers|replies|them|it) (?:as|in|with))\s+"
        r"(?P<obj>.+?)$",
        lowered,
    )
    if m and (
        _answer_slot(m.group("obj"))
        or re.search(r"\b(?:english|french|german|spanish|portuguese|italian)\b", m.group("obj"))
    ):
        obj = m.group("obj")
        verb = lowered[: m.start("obj")].strip().removeprefix("please").strip()
        if verb.endswith(" in") or verb == "write in":
            content = f"I prefer answers in {obj}."
        else:
            content = f"I prefer {obj}."
        return [Statement(PREFERENCE, content, _answer_slot(content) or "answers:format")], []
    m = re.match(
        rf"^(?:please\s+)?(?:no|don't use|do not use|avoid|skip|stop using|without|less|fewer)\s+"
        rf"(?P<obj>(?:{_FORMAT}|jargon|small talk|fluff|disclaimers|apologies|exclamation marks|"
        rf"slang|swearing|profanity|caps)(?:\s+in\s+(?:your\s+)?(?:{_STYLE_NOUNS}))?)$",
        lowered,
    )
    if m:
        content = f"I prefer no {m.group('obj')}."
        return [Statement(PREFERENCE, content, _answer_slot(content) or "answers:format")], []
    m = re.match(
        rf"^(?:i find\s+)?(?P<obj>(?:[\w-]+\s+){{0,2}}(?:{_FORMAT}|{_STYLE_NOUNS}))\s+"
        rf"(?:are|is|work|works)\s+(?:the\s+)?best(?:\s+for me)?$",
        lowered,
    )
    if m:
        content = f"I prefer {m.group('obj')}."
        return [Statement(PREFERENCE, content, _answer_slot(content) or "answers:format")], []
    return None


_TASK_VERBS = (
    r"working on|building|writing|developing|making|creating|planning|preparing|organizing|"
    r"organising|studying(?: for)?|learning|training for|practicing|practising|renovating|"
    r"saving (?:up )?for|applying (?:for|to)|looking for|trying to|preparing for|designing|"
    r"launching|starting|moving to|reading|translating|researching|recording|composing|"
    r"painting|knitting|restoring|coding|teaching myself"
)


def _task(clause: str) -> Read | None:
    m = re.match(
        r"^(?i:i|we)(?i:'m| am| are|'re|'ve been| have been)?(?i:\s+(?:currently|still|now|also|"
        rf"slowly|finally|busy|actively))*\s+(?P<verb>(?i:{_TASK_VERBS}))\b(?P<rest>.*)$",
        clause,
    )
    if m:
        rest = m.group("rest")
        inner = re.match(r"^\s+to\s+(?P<v>\w+)\s+(?P<r>.*)$", rest)
        thing = head_noun(inner.group("r") if inner else rest)
        if not thing:
            return None
        mentions = []
        trip = re.search(
            rf"\b(?i:trip|move|moving|holiday|vacation|travel(?:ling)?) (?i:to) (?P<place>{NAME})",
            clause,
        )
        if trip:
            mentions.append(Mention(trip.group("place"), "place"))
        return [Statement(TASK, _sentence(_expand(clause)), f"task:{thing}")], mentions
    m = re.match(
        r"^(?i:my|our)(?:\s+[\w']+'s)?\s+(?i:deadline|project|goal|plan|exam|thesis|launch|"
        r"interview|presentation|startup|dissertation|book|app|side project)\b(?P<rest>.*)$",
        clause,
    )
    if m:
        return [Statement(TASK, _sentence(clause), None)], []
    m = re.match(
        r"^(?i:i|we)(?i:'ve| have)?(?i:\s+(?:just|finally|already|now))*\s+"
        r"(?i:finished|completed|submitted|handed in|gave up on|abandoned|dropped|shipped|"
        r"launched|published|passed|defended|am done with|'m done with)\b(?P<rest>.*)$",
        clause,
    )
    if m and head_noun(m.group("rest")):
        return [
            Statement(TASK, _sentence(_expand(clause)), f"task:{head_noun(m.group('rest'))}")
        ], []
    return None


_HABIT_VERBS = (
    r"drink|drinking|drank|eat|eating|smoke|smoking|smoked|play|playing|played|run|running|"
    r"cook|cooking|drive|driving|use|using|watch|watching|swim|swimming|cycle|cycling|bike|"
    r"biking|practice|practise|practicing|do|doing|own|have|has|had|take|taking|go|going|"
    r"read|reading|bake|baking|hike|hiking|climb|climbing|surf|surfing|ski|skiing|knit|"
    r"knitting|paint|painting|sing|singing|dance|dancing|teach|teaching|volunteer|wear|"
    r"wearing|walk|walking|meditate|meditating|collect|collecting|grow|growing|keep|"
    r"visit|visiting|write|study"
)


def _habit(clause: str) -> Read | None:
    m = re.match(
        r"^(?i:i|we)\s+(?:(?i:usually|often|always|sometimes|regularly|still|also|really|"
        r"mostly|normally|never|rarely|occasionally|now|only))?\s*"
        r"(?P<neg>(?i:don't|do not|no longer|never|stopped|quit|gave up|have stopped|'ve stopped|"
        r"haven't|have not|can't|cannot|won't)\s+)?"
        rf"(?P<verb>(?i:{_HABIT_VERBS}))\s+(?P<obj>.+?)$",
        clause,
    )
    if not m:
        return None
    if _NOT_A_STATEMENT.match(clause) and not m.group("neg"):
        return None
    obj = m.group("obj")
    thing = head_noun(obj)
    if not thing or _PRONOUN_OBJECT.search(obj.split(",")[0]):
        return None
    content = _sentence(_expand(clause))
    return [Statement(FACT, content, f"habit:{_lemma(m.group('verb'))} {thing}")], []


_KIND_HINTS = [
    (
        PROFILE,
        re.compile(r"\b(?:name|live|living|based|moved|time ?zone|speak|language|from)\b", re.I),
    ),
    (
        PREFERENCE,
        re.compile(r"\b(?:prefer|like|love|enjoy|hate|dislike|favou?rite|rather)\b", re.I),
    ),
    (
        TASK,
        re.compile(r"\b(?:working on|building|writing|planning|project|deadline|finish)\b", re.I),
    ),
]


def _general(clause: str) -> Read | None:
    """Any other statement about the person or their life, in their words."""
    if not _FIRST_PERSON.match(clause) or _NOT_A_STATEMENT.match(clause) or _MOOD.match(clause):
        return None
    if _TRANSIENT.search(clause) or _PRONOUN_OBJECT.search(clause):
        return None
    content = _sentence(clause)
    if len(content.split()) < 3:
        return None
    kind = next((k for k, hint in _KIND_HINTS if hint.search(content)), FACT)
    return [Statement(kind, content)], []


def _diagnosis(clause: str) -> Read | None:
    """ "I was diagnosed with asthma": health, local only by default (memory/exposure.py)."""
    m = re.match(
        r"^(?i:i was|i've been|i have been|i got|i just got)(?i:\s+(?:recently|just|finally))?"
        r"\s+(?i:diagnosed with)\s+(?P<what>.+)$",
        clause,
    )
    what = _untimed(m.group("what")).strip(" .") if m else ""
    if not what:
        return None
    content = f"I have been diagnosed with {what}."
    return [Statement(FACT, content, f"condition:{head_noun(what)}")], []


def _medication(clause: str) -> Read | None:
    """ "I take metformin", "I'm on blood thinners": health, local only by default."""
    m = re.match(
        r"^(?i:i|we)(?i:'m| am|'ve been| have been| are|'re)?"
        r"(?i:\s+(?:also|still|now|currently|already|just|daily|regularly|recently))*\s+"
        r"(?i:take|taking|use|using|on|started taking|started on|been taking|been on|need)\s+"
        r"(?P<what>.+)$",
        clause,
    )
    found = re.search(rf"\b(?:{MEDICATIONS})\b", m.group("what"), re.I) if m else None
    if not m or not found:
        return None
    medicine = head_noun(found.group(0)) or found.group(0).lower()
    return [Statement(FACT, _sentence(_expand(clause)), f"medication:{medicine}")], []


def _condition(clause: str) -> Read | None:
    """ "I have asthma", "I suffer from migraines", "I'm diabetic": health, local only by
    default. A condition has its own slot, so a second one does not replace the first."""
    m = re.match(
        rf"^(?:{_HAVE}|(?i:i|we) (?i:live with|suffer from|struggle with|deal with|"
        r"was born with|am living with|'m living with|have had|'ve had|had))"
        r"(?i:\s+(?:also|still|now|mild|severe|bad|chronic))*\s+(?P<what>.+)$",
        clause,
    )
    what = _untimed(m.group("what")).strip(" .") if m else ""
    if what and re.fullmatch(_CONDITION, what, re.I):
        thing = head_noun(what)
        if thing in ("disease", "disorder", "syndrome", "condition", "pressure", "cholesterol"):
            thing = re.sub(r"(?i)^an? ", "", what).lower()  # heart disease ≠ celiac disease
        return [Statement(FACT, _sentence(_expand(clause)), f"condition:{thing}")], []
    m = re.match(
        rf"^(?i:i'm|i am)(?i:\s+(?:also|now|a bit|mildly|borderline))*\s+"
        rf"(?P<what>(?i:{_CONDITION_ADJECTIVES}))$",
        _untimed(clause),
    )
    if m:
        what = m.group("what").lower()
        return [Statement(FACT, f"I am {what}.", f"condition:{what}")], []
    return None


PATTERNS: list[Callable[[str], Read | None]] = [
    _diet, _allergy, _diagnosis, _medication, _condition, _age, _timezone, _language, _name,
    _origin, _residence, _role, _employer, _pet, _third_party, _imperative, _preference, _task,
    _habit, _general,
]  # fmt: skip


def read(text: str) -> Reading:
    """Every statement the person makes about themselves and their life, and whom they name."""
    reading = Reading()
    seen: set[str] = set()
    for sentence in sentences(text):
        if is_question(sentence):
            continue
        for clause in clauses(sentence):
            if not clause:
                continue
            for pattern in PATTERNS:
                result = pattern(clause)
                if result is None:
                    continue
                statements, mentions = result
                for statement in statements:
                    if statement.content.lower() not in seen:
                        seen.add(statement.content.lower())
                        reading.statements.append(statement)
                reading.mentions += mentions
                reading.clauses.append(clause)
                break
    return reading
