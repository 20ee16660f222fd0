"""The fact patterns on a sentence set of our own (tests/conversation/data), and the
merging of changed facts: a later fact lands in the same slot as the one it replaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eva.conversation.facts import extract_facts
from eva.store.memories import NewMemory

SENTENCES = Path(__file__).parent / "data" / "fact_sentences.json"
# What the patterns alone must reach on the set. Precision matters most: a wrong memory is
# repeated to the person for ever; a missed one costs little.
MIN_PATTERN_PRECISION = 0.95
MIN_PATTERN_RECALL = 0.80


def load_sentences(language: str) -> list[tuple[str, list[tuple[str, str]]]]:
    data: dict[str, Any] = json.loads(SENTENCES.read_text(encoding="utf-8"))
    return [(text, [(key, word) for key, word in facts]) for text, facts in data[language]]


def score(
    found: list[tuple[str, list[NewMemory]]], expected: list[tuple[str, list[tuple[str, str]]]]
) -> tuple[float, float, list[str]]:
    """Precision and recall over (slot, word) facts, and a line per mistake."""
    hits = wrong = missed = 0
    mistakes: list[str] = []
    for (text, facts), (_, wanted) in zip(found, expected, strict=True):
        want = dict(wanted)
        got = {fact.key: fact for fact in facts}
        for key, fact in got.items():
            if key in want and want[key].lower() in fact.text.lower():
                hits += 1
            else:
                wrong += 1
                mistakes.append(f"extra {key!r} ({fact.text}) from {text!r}")
        for key, word in want.items():
            if not (key in got and word.lower() in got[key].text.lower()):
                missed += 1
                mistakes.append(f"missed {key!r} in {text!r}")
    precision = hits / (hits + wrong) if hits + wrong else 1.0
    recall = hits / (hits + missed) if hits + missed else 1.0
    return precision, recall, mistakes


def test_the_sentence_set_is_big_enough_and_has_negatives() -> None:
    english, french = load_sentences("en"), load_sentences("fr")
    assert len(english) >= 40 and len(french) >= 10
    assert sum(1 for _, facts in english if not facts) >= 12


@pytest.mark.parametrize("language", ["en", "fr"])
def test_patterns_reach_the_precision_and_recall_floor_on_the_sentence_set(
    language: str,
) -> None:
    expected = load_sentences(language)
    found = [(text, extract_facts(text, language)) for text, _ in expected]
    precision, recall, mistakes = score(found, expected)
    print(f"\npatterns ({language}): precision {precision:.2f}, recall {recall:.2f}")
    print("\n".join(mistakes))
    assert precision >= MIN_PATTERN_PRECISION, mistakes
    assert recall >= MIN_PATTERN_RECALL, mistakes


@pytest.mark.parametrize(
    ("language", "before", "after", "key", "old", "new"),
    [
        ("en", "My name is Ana.", "Actually, call me Anna.", "name", "Ana.", "Anna."),
        ("en", "I live in Lyon.", "I moved to Paris.", "lives_in", "Lyon", "Paris"),
        ("en", "I love jazz.", "I don't like jazz anymore.", "likes:jazz", "Loves", "not like"),
        ("fr", "J'aime le jazz.", "Je n'aime plus le jazz.", "likes:jazz", "Aime", "N'aime plus"),
        ("fr", "J'habite à Lyon.", "J'ai déménagé à Paris.", "lives_in", "Lyon", "Paris"),
    ],
)
def test_a_changed_fact_lands_in_the_slot_of_the_one_it_replaces(
    language: str, before: str, after: str, key: str, old: str, new: str
) -> None:
    (first,) = extract_facts(before, language)
    (second,) = extract_facts(after, language)
    assert first.key == second.key == key
    assert old in first.text and new in second.text and old not in second.text


def test_facts_are_told_in_the_third_person_and_kept_in_the_second() -> None:
    (plan,) = extract_facts("I'm going to visit my sister next week.")
    assert plan.kind == "plan"
    assert plan.text == "Said they're going to visit their sister next week."
    assert plan.value == "you're going to visit your sister next week"


def test_one_message_can_state_several_facts() -> None:
    facts = extract_facts("Hi! My name is Ana. I live in Lisbon and I work as a nurse.")
    assert {f.key: f.value for f in facts} == {
        "name": "Ana",
        "lives_in": "Lisbon",
        "job": "a nurse",
    }
