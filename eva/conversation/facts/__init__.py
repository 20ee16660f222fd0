"""Facts a person states about themselves: deterministic patterns per language
(``en``, ``fr``) over their own words; see ``common`` for what makes a sentence count."""

from __future__ import annotations

from eva.conversation.facts import en, fr
from eva.conversation.facts.common import is_statement, sentences
from eva.store.memories import NewMemory

__all__ = ["extract_facts", "language_of"]


def language_of(language: str) -> str:
    """The pattern table for a configured language: French, or English for anything else."""
    return "fr" if language.lower().startswith("fr") else "en"


def extract_facts(text: str, language: str = "en") -> list[NewMemory]:
    """The facts ``text`` states about its speaker, one per slot (the last one wins)."""
    lang = language_of(language)
    patterns = fr.PATTERNS if lang == "fr" else en.PATTERNS
    found: dict[str, NewMemory] = {}
    for sentence in sentences(text):
        if not is_statement(sentence, lang):
            continue
        for pattern in patterns:
            for match in pattern.regex.finditer(sentence):
                fact = pattern.build(match, sentence)
                if fact is not None:
                    found[fact.key] = fact
    return list(found.values())
