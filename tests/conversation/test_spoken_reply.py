"""A whole reply through Conversation.reply (persona, prosody, store) with the real voice
and a scripted LLM: exactly what reaches the synthesizer, and at which rate."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from eva.conversation.service import Conversation
from eva.conversation.turn import AudioChunk, TurnDone
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, Int16Audio, Sampling, VoiceInfo
from eva.engines.runtime import Engines
from eva.engines.voices import VoiceCatalog
from eva.stats import LatencyStats
from eva.store.sqlite import Store
from tests.support import make_settings

MARKDOWN_REPLY = [
    "# Great news!\n",
    "**Congratulations** on the *new job*! ",
    "Here is what to do:\n- pack a `lunch`,\n- read [the guide](http://example.com/guide) 📘,\n",
    "> and ~~never~~ worry_too_much.\n",
    "I'm sorry about the commute, though. ",
    "What will you do first?",
]


class _ScriptedLLM:
    name = "scripted"
    reuses_prompt_prefix = False
    concurrent_streams = 1

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.prompts: list[list[ChatMessage]] = []

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        yield from self.deltas


class _RecordingBackend:
    """A real TTS backend that records every (text, rate) it is asked to speak."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.name = getattr(real, "name", "real")
        self.calls: list[tuple[str, float]] = []

    def voices(self) -> list[VoiceInfo]:
        return self.real.voices()  # type: ignore[attr-defined,no-any-return]

    def synthesize(
        self, text: str, voice_id: str, cancel: threading.Event, rate: float = 1.0
    ) -> Iterator[Int16Audio]:
        self.calls.append((text, rate))
        return self.real.synthesize(text, voice_id, cancel, rate)  # type: ignore[attr-defined,no-any-return]


async def test_no_markdown_reaches_the_synthesizer_and_moods_set_the_rate(
    engines: Engines, tmp_path: Path
) -> None:
    backends = [_RecordingBackend(engine) for engine in engines.tts.engines]
    catalog = VoiceCatalog(backends, "en_US-joe-medium", "en")  # type: ignore[arg-type]
    llm = _ScriptedLLM(MARKDOWN_REPLY)
    settings = make_settings(tmp_path, max_reply_sentences=8, max_reply_tokens=400)
    store = Store(settings.db_path)
    service = Conversation(settings, replace(engines, llm=llm, tts=catalog), store, LatencyStats())
    session = await service.open_session(None)
    events = [e async for e in service.reply(session.id, "I got the job!")]

    spoken = [text for text, _ in backends[0].calls]
    assert spoken, "nothing was synthesized"
    for text in spoken:
        assert not re.search(r"[*#`_\[\]()<>~|📘]|http|example", text), text
    joined = " ".join(spoken)
    assert "Congratulations on the new job!" in joined and "pack a lunch" in joined
    rates = dict(backends[0].calls)
    excited = next(t for t in rates if t.endswith("new job!"))
    sorry = next(t for t in rates if "sorry" in t)
    question = next(t for t in rates if t.endswith("first?"))
    assert rates[excited] > 1.0 > rates[sorry] and rates[question] == 1.0
    # The persona's examples went to the model between the system prompt and the turn.
    prompt = llm.prompts[0]
    assert prompt[0].role == "system" and prompt[1:-1] == list(service.persona.examples)
    audio = np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])
    assert len(audio) > 22050
    done = events[-1]
    assert isinstance(done, TurnDone) and not re.search(r"[*#`_\[\]<>~|]", done.text)
    stored = store.messages(session.id, 10)
    assert [m.content for m in stored] == ["I got the job!", done.text]
