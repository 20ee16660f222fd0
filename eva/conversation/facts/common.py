"""What the fact patterns share: sentence splitting, the statement test, value cleaning and
pronoun swapping.

Facts a person states about themselves are found with patterns over their own words.

The embedded model (SmolLM2-135M) is too small to be trusted with structure, so the facts
Eva keeps come first from these deterministic patterns, in English and French: each gives
a typed fact with a *slot key* (``name``, ``lives_in``, ``likes:jazz``, ``relation:sister``)
so that a changed fact lands in the same slot and replaces the old one. ``text`` is the fact
as the LLM is told it (third person, the configured language); ``value`` is the person's
words turned to the second person, for templates such as the greeting.

A sentence is only read for facts when it is a statement: questions, hypotheticals and
wishes ("if I lived in Rome", "I'd love to") say nothing true about the person.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from eva.store.memories import NewMemory

# A fact's words: long enough for "going to visit my sister Marie in Rome next week", short
# enough that a rambling clause is not kept as a "fact".
MAX_VALUE_WORDS = 12


def word_set(words: str) -> frozenset[str]:
    """The words of a space-separated list (how the word lists below are written)."""
    return frozenset(words.split())


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
# Where the words of a fact stop: the next clause.
_CLAUSE_BREAK = re.compile(
    r"\s*(?:[,:(]|\s-\s|\b(?:but|because|so|since|although|though|when|while|which|who|"
    r"where|and (?:i|i'm|my|we|it|she|he|they|you|then)|mais|parce que|car|donc|quand|qui|"
    r"et (?:je|j'|mon|ma|mes|il|elle|on|nous))\b)",
    re.IGNORECASE,
)
_TRAILING_FILLER = re.compile(
    r"(?:\s+(?:now|these days|currently|at the moment|anymore|any more|at all|very much|"
    r"so much|a lot|too|also|actually|lately|right now|really|though|maintenant|aussi|"
    r"vraiment|du tout|beaucoup|en ce moment|last \w+|(?:a|one|two|three|a few) \w+ ago|"
    r"a while ago|recently|yesterday|l'année dernière|récemment|hier))+$",
    re.IGNORECASE,
)
# Things that are not facts about the person when they are the object of "I like ...".
NOT_A_THING = word_set(
    "it that this them you him her these those everything anything something nothing "
    "yourself eva ça ca cela toi vous tout rien"
)
_ABOUT_EVA = re.compile(r"\b(?:you|your|yours|yourself|eva|toi|tu|vous|votre|ton|ta|tes)\b", re.I)

_EN_QUESTION_START = re.compile(
    r"^(?:what|where|when|why|how|who|whom|which|do|does|did|are|is|was|were|can|could|"
    r"would|will|should|shall|have|has|may|am)\b",
    re.IGNORECASE,
)
_EN_HYPOTHETICAL = re.compile(
    r"\b(?:if|would|wish|imagine|suppose|supposing|pretend|might|maybe|perhaps|unless|"
    r"whether|i'd|wouldn't|could|dream)\b",
    re.IGNORECASE,
)
_FR_QUESTION_START = re.compile(
    r"^(?:est-ce|qu'est-ce|où|ou est|quand|comment|pourquoi|quel|quelle|quels|quelles|"
    r"qui|combien|tu|vous|as-tu|es-tu|aimes-tu)\b",
    re.IGNORECASE,
)
_FR_HYPOTHETICAL = re.compile(
    r"\b(?:si|s'il|imagine|imaginons|peut-être|rêve|\w+rais|\w+rait)\b", re.IGNORECASE
)

_SECOND_PERSON_EN = {
    "i'm": "you're", "i am": "you are", "i've": "you've", "i'll": "you'll", "i'd": "you'd",
    "i was": "you were", "i": "you", "my": "your", "me": "you", "myself": "yourself",
    "mine": "yours", "am": "are",
}  # fmt: skip
_THIRD_PERSON_EN = {
    "i'm": "they're", "i am": "they are", "i've": "they've", "i'll": "they'll",
    "i'd": "they'd", "i was": "they were", "i": "they", "my": "their", "me": "them",
    "myself": "themselves", "mine": "theirs", "am": "are",
}  # fmt: skip
_SECOND_PERSON_FR = {
    "je": "tu", "j'": "tu ", "me": "te", "m'": "t'", "moi": "toi", "mon": "ton", "ma": "ta",
    "mes": "tes",
}  # fmt: skip
_THIRD_PERSON_FR = {
    "je": "il ou elle", "j'": "il ou elle ", "me": "se", "m'": "s'", "moi": "lui",
    "mon": "son", "ma": "sa", "mes": "ses",
}  # fmt: skip


def _swap(words: str, table: dict[str, str]) -> str:
    keys = sorted(table, key=len, reverse=True)
    pattern = re.compile(
        r"(?<![\w'])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w'])", re.IGNORECASE
    )
    return pattern.sub(lambda m: table[m.group(1).lower()], words)


def second_person(words: str, language: str = "en") -> str:
    return _swap(words, _SECOND_PERSON_FR if language == "fr" else _SECOND_PERSON_EN)


def third_person(words: str, language: str = "en") -> str:
    return _swap(words, _THIRD_PERSON_FR if language == "fr" else _THIRD_PERSON_EN)


def clean_value(raw: str) -> str | None:
    """The words of a fact: up to the next clause, without trailing filler; None when it
    is empty, too long, or about Eva rather than the person."""
    value = _CLAUSE_BREAK.split(raw, maxsplit=1)[0]
    value = value.strip(" .!?;,\"'")
    previous = None
    while previous != value:
        previous = value
        value = _TRAILING_FILLER.sub("", value).strip(" .!?;,\"'")
    if not value or len(value.split()) > MAX_VALUE_WORDS or _ABOUT_EVA.search(value):
        return None
    return value


def slot_name(thing: str) -> str:
    """The key part for a thing: lower case, without articles and possessives."""
    words = re.sub(
        r"^(?:to|the|a|an|some|my|le|la|les|l'|un|une|des|du|de la|de l'|d'|mon|"
        r"ma|mes)\s*",
        "",
        thing.lower().strip(),
    )
    return re.sub(r"\s+", " ", words).strip() or thing.lower()


def is_statement(sentence: str, language: str) -> bool:
    """True when ``sentence`` asserts something: not a question, wish or hypothetical."""
    text = sentence.strip()
    if not text or text.endswith("?"):
        return False
    if language == "fr":
        return not (_FR_QUESTION_START.match(text) or _FR_HYPOTHETICAL.search(text))
    return not (_EN_QUESTION_START.match(text) or _EN_HYPOTHETICAL.search(text))


def sentences(text: str) -> Iterator[str]:
    normalized = text.replace("’", "'").replace("‘", "'")
    for part in _SENTENCE_END.split(normalized):
        part = part.strip()
        if part:
            yield part


Builder = Callable[[re.Match[str], str], NewMemory | None]


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    build: Builder
