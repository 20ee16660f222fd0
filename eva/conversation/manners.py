"""Conversation manners as plain functions: the mood of a clause, whether what the person
said over Eva was only a backchannel, which acknowledgement fits, and how Eva re-engages.

No I/O here: the session core (session.py) and the prosody (prosody.py) decide when to
ask; these decide what.
"""

from __future__ import annotations

import re
from typing import Literal

from eva.engines.voices import primary_language

Mood = Literal["neutral", "question", "excited", "gentle"]
AckKind = Literal["question", "statement", "sad", "excited"]

_WORD = re.compile(r"[\w'’-]+", re.UNICODE)


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Words that make a clause gentle: sympathy, loss, worry. Said a little slower.
_GENTLE_WORDS = _word_set(
    """sorry sad sadly unfortunately loss lost died passed miss missed missing hurt hurts
    painful pain difficult hard tough alone lonely worried afraid scared cry crying grief
    condolences gently désolé désolée triste malheureusement perdu mort morte manque
    difficile seul seule peur pleurer"""
)

# What people say to show they are listening, not to take the turn. Matched on the whole
# utterance, so "yeah but wait" is not one.
_BACKCHANNELS = _word_set(
    """mm mmm mhm mm-hm mm-hmm mmhmm hm hmm hmmm uh-huh uhhuh ah oh yeah yes yep yup right
    okay ok sure true exactly indeed wow cool nice oui ouais d'accord exactement carrément
    voilà"""
)
# Multi-word backchannels, as whole phrases.
_BACKCHANNEL_PHRASES = frozenset(
    {"i see", "got it", "uh huh", "ah bon", "that's right", "c'est vrai", "je vois"}
)
# Hums as a recognizer writes them: "mmhm", "mmmm", "hmm", "uh", "ah", "oh".
_HUM = re.compile(r"^(?:[mhn]+|u+h+|a+h+|o+h+)$")
# A backchannel is a word or two; more is the person taking the turn.
BACKCHANNEL_MAX_WORDS = 3

# Acknowledgements, short enough to end before the reply's audio is ready. English and
# French; other languages fall back to English. An acknowledgement plays whole before the
# reply: "Hmm, let me think." (1.05 s with the packaged voice) held back the reply's own
# audio until it ended for half the replies of a load run (many first audios within a few
# ms of its end); "Hmm." is 0.16 s.
ACKNOWLEDGEMENTS: dict[str, dict[AckKind, str]] = {
    "en": {
        "question": "Hmm.",
        "statement": "Mm.",
        "sad": "Oh, I'm sorry.",
        "excited": "Oh!",
    },
    "fr": {
        "question": "Hum.",
        "statement": "Mm.",
        "sad": "Oh, je suis désolée.",
        "excited": "Oh !",
    },
}

# Eva's own backchannel while the person talks: short, soft, unmistakably listening.
BACKCHANNEL_LINES = {"en": "Mm-hm.", "fr": "Mm-hm."}

REENGAGE_LINES = {
    "en": "Still there? No rush.",
    "fr": "Tu es toujours là ? Rien ne presse.",
}


def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def clause_mood(text: str) -> Mood:
    """The mood a clause is said in, from its punctuation and a few words."""
    stripped = text.strip().rstrip("\"')»”’ ")
    if any(word in _GENTLE_WORDS for word in _words(text)):
        return "gentle"
    if stripped.endswith("!"):
        return "excited"
    if stripped.endswith("?"):
        return "question"
    return "neutral"


def is_backchannel(text: str) -> bool:
    """Whether the transcript of a short utterance over Eva is only a listening noise
    ("mm-hm", "yeah", "d'accord"). No words at all counts: a short sound the recognizer
    makes nothing of (a hum, a laugh, a cough) is no reason to stop talking."""
    words = [w for w in _words(text) if not _HUM.match(w.replace("-", ""))]
    if len(words) > BACKCHANNEL_MAX_WORDS:
        return False
    if not words or " ".join(words) in _BACKCHANNEL_PHRASES:
        return True
    return all(word in _BACKCHANNELS for word in words)


def acknowledgement_kind(user_text: str) -> AckKind:
    """What the person's words call for while Eva thinks."""
    mood = clause_mood(user_text)
    if mood == "gentle":
        return "sad"
    if mood == "excited":
        return "excited"
    words = _words(user_text)
    question_words = {"what", "why", "how", "when", "where", "who", "which", "could", "can"}
    questions_fr = {"quoi", "pourquoi", "comment", "quand", "où", "qui", "quel", "quelle"}
    if mood == "question" or (words and words[0] in question_words | questions_fr):
        return "question"
    return "statement"


def choose_acknowledgement(user_text: str, language: str) -> str:
    table = ACKNOWLEDGEMENTS.get(primary_language(language), ACKNOWLEDGEMENTS["en"])
    return table[acknowledgement_kind(user_text)]


def all_acknowledgements(language: str) -> list[str]:
    table = ACKNOWLEDGEMENTS.get(primary_language(language), ACKNOWLEDGEMENTS["en"])
    return list(dict.fromkeys(table.values()))


def reengage_line(language: str) -> str:
    return REENGAGE_LINES.get(primary_language(language), REENGAGE_LINES["en"])


def backchannel_line(language: str) -> str:
    return BACKCHANNEL_LINES.get(primary_language(language), BACKCHANNEL_LINES["en"])
