"""How long a silence ends the person's turn: decided from how they spoke and what they said.

Plain functions, no I/O. Two sources of evidence arrive during a pause, in this order:

1. the end-of-turn model's probability that the turn is complete (Smart Turn, ~50 ms
   after the pause is noticed), judged from the audio: the words and their melody;
2. the transcript (~200 ms later), whose last words can show a thought still going on
   ("... and then the doctor said that I should").

Each arrival sets the silence after which the turn ends (``TurnPolicy.wait_ms``). A
confident model, with words that look finished, ends the turn after 200 ms of silence
(how fast people answer each other) or as soon as the words arrive, if later. A model that
says unfinished waits 1.5 s (0.8 s once the words look finished after all), and so do
words without the full stop Whisper writes after a finished sentence; words that trail
off (a dangling "and", a comma) wait 2 s. When the model is off, the rule on words alone
decides, as it did before the model.

A wrong "finished" costs little when the person goes on quickly: until Eva's reply is
heard (~0.7 s after the words are known), the session core takes it back and the turn
goes on (eva/conversation/session.py, ``RESUME_TURN_S``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TRAILING_WORDS = re.compile(
    r"\b(and|but|or|so|because|then|um+|uh+|er+|like|the|a|an|to|of|with|et|mais|donc|"
    r"euh+|le|la|les|de|avec)[\s,.…-]*$",
    re.IGNORECASE,
)


def trails_off(text: str) -> bool:
    """The words end mid-thought: a dangling conjunction or article, a comma, an ellipsis."""
    stripped = text.strip()
    return stripped.endswith(("...", "…", ",")) or bool(_TRAILING_WORDS.search(stripped))


def looks_complete(text: str) -> bool:
    """Whether words end like a finished turn: sentence punctuation, not a dangling word."""
    stripped = text.strip()
    return bool(stripped) and stripped[-1] in ".?!" and not trails_off(stripped)


@dataclass(frozen=True)
class TurnPolicy:
    """The silence (ms) that ends a turn, given the evidence so far."""

    model: bool = True  # an end-of-turn model judges each pause
    # The model is sure the turn is complete: answer as fast as a person would.
    confident: float = 0.8
    confident_ms: int = 200
    # The fast end waits for the transcript to agree (it arrives ~200 ms into the pause).
    confirm: bool = True
    # The model leans towards complete.
    likely: float = 0.5
    likely_ms: int = 500
    # The model says unfinished: mid-sentence pauses of over a second are common.
    unfinished_ms: int = 1500
    # The model says unfinished, the words look finished.
    disputed_ms: int = 800
    # The words trail off: the person is clearly mid-thought.
    mid_thought_ms: int = 2000
    # The rule on words alone (the model off, or not answered yet): finished-looking
    # words, anything else.
    words_complete_ms: int = 500
    words_ms: int = 800

    def wait_ms(self, probability: float | None, words: str | None) -> int:
        if words is not None and trails_off(words):
            return self.mid_thought_ms if self.model else self.words_ms
        if not self.model or probability is None:
            if words is not None and looks_complete(words):
                return self.words_complete_ms
            return self.words_ms
        if words is not None and not looks_complete(words):
            # No full stop where Whisper would write one: cut mid-phrase ("How do you").
            return self.unfinished_ms
        if probability >= self.confident:
            # On the model alone only when told to: its "complete" is wrong for about a
            # third of mid-clause pauses in synthesized speech (docs/performance.md).
            return self.confident_ms if words is not None or not self.confirm else self.likely_ms
        if probability >= self.likely:
            return self.likely_ms
        if words is not None:
            # The model says unfinished, the words say finished: it scores some finished
            # questions of the synthesized voice under 0.1, so the words get a say.
            return self.disputed_ms
        return self.unfinished_ms
