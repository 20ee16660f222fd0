"""The summary of a long session's older turns, so that the prompt stays within the model's
context while the messages themselves all stay stored.

The summary is extractive, not written by the model: SmolLM2-135M summarizing its own
conversation invents and drops things, and would cost a second or more of the one LLM
thread after every turn. What the person said is what matters (Eva's side can be
re-derived from it), so the summary keeps the gist of each older message of theirs, their
first sentence clipped, newest last, within a fixed size; what falls off the front is
still in the messages table (and its facts are in the long-term memories).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from eva.store.records import MessageRecord

# The summary's share of the prompt: about 250 tokens of the 2048 the model has.
SUMMARY_MAX_CHARS = 750
# One remembered utterance: its first sentence, at most this long.
SAID_MAX_CHARS = 120

_HEADERS = {
    "en": "Earlier in this conversation, the person said:",
    "fr": "Plus tôt dans cette conversation, la personne a dit :",
}


def gist(text: str) -> str:
    """The first sentence of ``text``, clipped at a word to SAID_MAX_CHARS."""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    if len(first) <= SAID_MAX_CHARS:
        return first
    return first[:SAID_MAX_CHARS].rsplit(" ", 1)[0] + "…"


def condense(previous: str, older: Sequence[MessageRecord], language: str) -> str:
    """``previous`` summary lines plus the gist of each of the person's ``older``
    messages, keeping the newest lines that fit in SUMMARY_MAX_CHARS."""
    lines = [line for line in previous.split("\n") if line.strip()]
    lines += [f"- {gist(m.content)}" for m in older if m.role == "user" and m.content.strip()]
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) + 1 > SUMMARY_MAX_CHARS:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept))


def summary_context(summary: str, language: str) -> str:
    """The summary as the system message shows it."""
    if not summary.strip():
        return ""
    return f"{_HEADERS.get(language, _HEADERS['en'])}\n{summary}"
