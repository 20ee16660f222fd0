"""The language model as a second reader of what the person said, for the facts the
patterns miss ("Cooking is my passion").

SmolLM2-135M invents readily, so nothing it says is kept unless it passes strict checks:
the answer must be one line of a known form, every word of the fact must be the person's
own, the sentence must be a statement in the first person, and the fact's polarity must
agree with the sentence (a "likes" needs no negation, a "dislikes" needs one).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from eva.conversation.facts.common import (
    NOT_A_THING,
    is_statement,
    sentences,
    slot_name,
    word_set,
)
from eva.engines.base import ChatMessage, LLMEngine
from eva.store.memories import NewMemory

# One short line: "likes: science fiction books" is nine tokens.
MAX_ANSWER_TOKENS = 12
# Fact extraction keeps to one prompt cache of its own (its few-shot prompt never changes),
# so that it does not take the place of a conversation's.
FACTS_SESSION = "eva:facts"
# The most words a fact from the model may have; longer answers are the model rambling.
MAX_FACT_WORDS = 4

_SYSTEM = (
    "You read one sentence a person said and write the fact it states about them, as one "
    "line: 'likes: <thing>', 'dislikes: <thing>', 'name: <name>', 'lives in: <place>', "
    "'job: <job>', 'pet: <animal> <name>'. Use only words from the sentence. "
    "If the sentence states none of these, write 'none'."
)
_EXAMPLES = (
    ("I'm crazy about photography.", "likes: photography"),
    ("The weather is nice today.", "none"),
    ("Pizza is the best food ever for me.", "likes: pizza"),
    ("Do you like cats?", "none"),
    ("Everyone at work calls me Jo.", "name: Jo"),
    ("Our cat Luna sleeps all day.", "pet: cat Luna"),
    ("Rainy days make me miserable.", "dislikes: rainy days"),
)
_FIRST_PERSON = {
    "en": re.compile(r"\b(?:i|i'm|i've|my|me|mine|we|our|us)\b", re.IGNORECASE),
    "fr": re.compile(r"(?:\b(?:je|moi|mon|ma|mes|nous|notre|nos)\b|\b[jm]')", re.IGNORECASE),
}
_NEGATION = re.compile(
    r"\b(?:not|never|no longer|hate|hates|dislike|can't|cannot|don't|doesn't|miserable|"
    r"ne|pas|plus|jamais|déteste)\b|n't|n'",
    re.IGNORECASE,
)
# The model's answer, with the synonyms it uses for the kinds it was asked for.
_KINDS = {"likes": "likes", "like": "likes", "loves": "likes", "love": "likes",
          "dislikes": "dislikes", "dislike": "dislikes", "hates": "dislikes",
          "hate": "dislikes", "name": "name", "lives in": "lives in", "job": "job",
          "pet": "pet"}  # fmt: skip
_ANSWER = re.compile(
    r"(?P<kind>likes|like|loves|love|dislikes|dislike|hates|hate|name|lives in|job|pet)"
    r"\s*:\s*(?P<value>[^\n.;!?]+?)\s*\.?",
    re.IGNORECASE,
)
_PRONOUNS = word_set("i i'm me my we our us je j' moi mon ma mes nous it")
_ABOUT_EVA = word_set("you your yours yourself eva tu toi vous")
# A name is only a name when the sentence names the speaker.
_NAMING = re.compile(
    r"\b(?:name|call me|calls me|called me|i'm|i am|m'appelle|prénom|appelle-moi)\b", re.I
)
_PETS = word_set("dog cat puppy kitten rabbit hamster parrot horse bird chien chat")


def worth_asking(sentence: str, language: str) -> bool:
    """A statement in the first person: the only kind of sentence the model is shown."""
    lang = "fr" if language == "fr" else "en"
    return is_statement(sentence, lang) and bool(_FIRST_PERSON[lang].search(sentence))


def model_messages(sentence: str) -> list[ChatMessage]:
    messages = [ChatMessage("system", _SYSTEM)]
    for said, answer in _EXAMPLES:
        messages += [ChatMessage("user", said), ChatMessage("assistant", answer)]
    messages.append(ChatMessage("user", sentence))
    return messages


def ask_model(
    llm: LLMEngine, sentence: str, language: str, cancel: threading.Event
) -> list[NewMemory]:
    """The facts the model finds in ``sentence`` that survive validation (blocking)."""
    if not worth_asking(sentence, language):
        return []
    answer = "".join(
        llm.stream(
            model_messages(sentence),
            max_tokens=MAX_ANSWER_TOKENS,
            cancel=cancel,
            session=FACTS_SESSION,
        )
    )
    if cancel.is_set():
        return []
    fact = validated(answer, sentence, language)
    return [] if fact is None else [fact]


def _words(text: str) -> list[str]:
    return re.findall(r"[\wÀ-ÿ'-]+", text.lower())


def validated(answer: str, sentence: str, language: str) -> NewMemory | None:
    """The fact in the model's ``answer``, or None unless it is grounded in ``sentence``."""
    match = _ANSWER.fullmatch(answer.strip().split("\n")[0].strip())
    if match is None:
        return None
    kind, value = _KINDS[match.group("kind").lower()], match.group("value").strip(" '\"")
    words = _words(value)
    said = set(_words(sentence))
    if not words or len(words) > MAX_FACT_WORDS or not set(words) <= said:
        return None  # not the person's own words: invented
    if value.lower() in NOT_A_THING or _PRONOUNS & set(words) or _ABOUT_EVA & said:
        return None  # a whole clause, or a sentence about Eva rather than the person
    negated = bool(_NEGATION.search(sentence))
    french = language == "fr"
    if kind in ("likes", "dislikes"):
        if (kind == "likes") == negated:
            return None  # the polarity contradicts the sentence
        thing = value
        if kind == "likes":
            text = f"Aime {thing}." if french else f"Likes {thing}."
        else:
            text = f"N'aime pas {thing}." if french else f"Does not like {thing}."
        return NewMemory(f"likes:{slot_name(thing)}", kind[:-1], text, thing)
    if negated:
        return None
    original = _original_case(value, sentence)
    if kind == "name":
        if len(words) != 1 or not original[:1].isupper() or not _NAMING.search(sentence):
            return None
        return NewMemory("name", "name", _name_text(original, french), original)
    if kind == "pet":
        if len(words) != 2 or words[0] not in _PETS or not original.split()[1][:1].isupper():
            return None
        animal, name = original.split()
        return NewMemory(f"pet:{animal.lower()}", "relation", f"Has a {animal} named {name}.", name)
    if kind == "lives in":
        text = f"Habite à {original}." if french else f"Lives in {original}."
        return NewMemory("lives_in", "place", text, original)
    text = f"Travaille comme {original}." if french else f"Works as {original}."
    return NewMemory("job", "job", text, original)


def _name_text(name: str, french: bool) -> str:
    return f"Son prénom est {name}." if french else f"Their name is {name}."


def _original_case(value: str, sentence: str) -> str:
    """``value`` as the person wrote it (the model may change capitals)."""
    found = re.search(re.escape(value), sentence, re.IGNORECASE)
    return found.group(0) if found else value


def leftover_sentences(text: str, language: str, found_keys: Sequence[str]) -> list[str]:
    """The sentences of ``text`` worth showing the model: statements in the first person,
    when the patterns found nothing in the whole message."""
    if found_keys:
        return []
    return [s for s in sentences(text) if worth_asking(s, language)]
