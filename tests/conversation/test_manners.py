"""The plain functions behind Eva's manners: moods, backchannels, acknowledgements."""

from __future__ import annotations

import pytest

from eva.conversation.manners import (
    acknowledgement_kind,
    choose_acknowledgement,
    clause_mood,
    is_backchannel,
    reengage_line,
)


@pytest.mark.parametrize(
    ("clause", "mood"),
    [
        ("That's wonderful news!", "excited"),
        ("What did you have for dinner?", "question"),
        ("I'm so sorry to hear about your dog.", "gentle"),
        ("Unfortunately it rained all day.", "gentle"),
        ("The market opens at nine.", "neutral"),
        ("and then we walked home,", "neutral"),
        ("Je suis désolée pour toi.", "gentle"),
        ("C'est génial !", "excited"),
    ],
)
def test_clause_mood_follows_punctuation_and_words(clause: str, mood: str) -> None:
    assert clause_mood(clause) == mood


@pytest.mark.parametrize(
    "heard",
    [
        "Mm-hm.",
        "MMHM",
        "m m m",
        "Yeah.",
        "Yeah, right.",
        "right",
        "ok.",
        "Okay",
        "Uh-huh.",
        "I see.",
        "",
        "Oui.",
        "D'accord.",
        "d’accord",
        "hmm",
        "Exactly!",
    ],
)
def test_listening_noises_are_backchannels(heard: str) -> None:
    assert is_backchannel(heard)


@pytest.mark.parametrize(
    "heard",
    [
        "Wait, stop please.",
        "No.",
        "Stop.",
        "Yeah but what about the dog?",
        "Can you say that again?",
        "Tell me about Paris instead.",
        "Attends, arrête.",
    ],
)
def test_real_interruptions_are_not_backchannels(heard: str) -> None:
    assert not is_backchannel(heard)


@pytest.mark.parametrize(
    ("said", "kind"),
    [
        ("What is the capital of France?", "question"),
        ("how do tides work", "question"),
        ("My grandmother died last week.", "sad"),
        ("I got the job!", "excited"),
        ("I went to the market this morning.", "statement"),
    ],
)
def test_acknowledgement_fits_what_was_said(said: str, kind: str) -> None:
    assert acknowledgement_kind(said) == kind


def test_acknowledgements_and_reengagement_speak_the_language() -> None:
    assert choose_acknowledgement("Why is the sky blue?", "en") == "Hmm."
    assert choose_acknowledgement("Pourquoi le ciel est bleu ?", "fr-FR") == "Hum."
    assert choose_acknowledgement("I had a walk.", "de") == "Mm."  # English fallback
    assert reengage_line("en") == "Still there? No rush."
    assert "toujours là" in reengage_line("fr")
