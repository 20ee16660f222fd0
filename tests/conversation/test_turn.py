"""The streaming turn pipeline with the real LLM and TTS: order, bounds, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest

from eva.conversation.turn import (
    EARLY_CUT_MIN_CHARS,
    URGENT_AUDIO_S,
    AudioChunk,
    ReplyBounds,
    TextDelta,
    TurnControl,
    TurnDone,
    TurnEvent,
    TurnTimer,
    run_turn,
)
from eva.engines.base import COMPANION_SAMPLING, ChatMessage, Int16Audio, Sampling, VoiceInfo
from eva.engines.runtime import Engines
from eva.engines.threads import EnginePools, SpeechPriority
from tests.support import pools_are_idle

SYSTEM = ChatMessage("system", "You are Eva, a friendly companion. Answer in plain sentences.")


def _ask(text: str) -> list[ChatMessage]:
    return [SYSTEM, ChatMessage("user", f"{text} (ref {uuid.uuid4().hex[:6]})")]


def _turn(
    engines: Engines,
    messages: Sequence[ChatMessage],
    bounds: ReplyBounds,
    control: TurnControl | None = None,
    tts: object | None = "default",
    timer: TurnTimer | None = None,
):  # type: ignore[no-untyped-def]
    voice = engines.tts.info(None)
    return run_turn(
        messages,
        llm=engines.llm,
        tts=engines.tts if tts == "default" else tts,  # type: ignore[arg-type]
        voice_id=voice.id,
        sample_rate=voice.sample_rate,
        language="en",
        pools=engines.pools,
        bounds=bounds,
        control=control,
        timer=timer,
    )


async def test_first_audio_leaves_before_the_llm_has_finished(engines: Engines) -> None:
    events: list[TurnEvent] = []
    messages = _ask("Tell me a long story about a lighthouse keeper and a seagull.")
    async for event in _turn(engines, messages, ReplyBounds(max_tokens=200, max_sentences=8)):
        events.append(event)
    done = events[-1]
    assert isinstance(done, TurnDone)
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, AudioChunk))
    last_delta = max(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert first_audio < last_delta
    assert done.timings["first_audio_ms"] < done.timings["llm_done_ms"]
    assert done.timings["llm_first_token_ms"] <= done.timings["first_clause_ms"]
    assert done.timings["tts_first_chunk_ms"] > 0
    assert not done.interrupted and done.spoken_text == done.text


async def test_the_llm_is_free_for_another_session_while_a_reply_still_plays(
    engines: Engines,
) -> None:
    # A voice session reads its reply at playback pace (seconds per clause). The one LLM
    # must not stay locked for that long: the next session's turn would wait for the
    # whole playback instead of for the writing.
    timer = TurnTimer()
    messages = _ask("Tell me a long story about a lighthouse keeper and a seagull.")
    playing = _turn(engines, messages, ReplyBounds(max_tokens=200, max_sentences=8), timer=timer)
    first = await anext(playing)
    while not isinstance(first, AudioChunk):
        first = await anext(playing)
    # The listener is "playing" the first clause and reads nothing more meanwhile.
    for _ in range(600):  # up to 30 s
        if "llm_done_ms" in timer.marks:
            break
        await asyncio.sleep(0.05)
    else:
        await playing.aclose()
        pytest.fail("the LLM waited for the listener")
    other: TurnDone | None = None
    async for event in _turn(engines, _ask("Say hello."), ReplyBounds(40, 1), tts=None):
        if isinstance(event, TurnDone):
            other = event
    assert other is not None and other.text
    rest = [event async for event in playing]
    done = rest[-1]
    assert isinstance(done, TurnDone) and not done.interrupted
    assert done.spoken_text == done.text  # nothing lost by writing ahead of the listener
    assert await pools_are_idle(engines)


async def test_reply_is_bounded_to_the_configured_sentences(engines: Engines) -> None:
    messages = _ask("Describe your perfect day in great detail, with many sentences.")
    deltas: list[str] = []
    done: TurnDone | None = None
    async for event in _turn(
        engines, messages, ReplyBounds(max_tokens=200, max_sentences=1), tts=None
    ):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        elif isinstance(event, TurnDone):
            done = event
    assert done is not None and done.text
    # "1. Morning: ..." is a list number, not a sentence end (the chunker agrees)
    assert len(re.findall(r"(?<!\d)[.!?](\s|$)", done.text)) <= 1
    assert " ".join("".join(deltas).split()) == done.text  # no delta past the bound


async def test_cancel_stops_the_chain_promptly(engines: Engines) -> None:
    control = TurnControl()
    messages = _ask("Tell me a long story about a fox who learns to sail.")
    cancelled_at = 0.0
    done: TurnDone | None = None
    audio_after_cancel = 0
    async for event in _turn(engines, messages, ReplyBounds(200, 10), control):
        if isinstance(event, AudioChunk):
            if cancelled_at:
                audio_after_cancel += 1
            else:
                control.cancel()
                cancelled_at = time.monotonic()
        elif isinstance(event, TurnDone):
            done = event
    assert done is not None and done.interrupted
    assert time.monotonic() - cancelled_at < 0.5
    assert audio_after_cancel <= 1  # at most the chunk already in flight
    assert len(done.spoken_text) <= len(done.text)
    assert await pools_are_idle(engines)


async def test_closing_the_stream_mid_reply_leaves_no_work_running(engines: Engines) -> None:
    stream = _turn(engines, _ask("Tell me a long story about a dragon."), ReplyBounds(200, 10))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    assert await pools_are_idle(engines)


async def test_cancelling_the_consuming_task_stops_the_engines(engines: Engines) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for event in _turn(
            engines, _ask("Tell me a long story about rain."), ReplyBounds(200, 10)
        ):
            if isinstance(event, TextDelta):
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pools_are_idle(engines)


class _ScriptedLLM:
    """Replays fixed deltas: the only way to make a model write markdown on demand. With
    ``delay_s``, one every ``delay_s``: slower than speech plays, as a model shared by
    several people's replies on two cores writes."""

    name = "scripted"
    reuses_prompt_prefix = False
    concurrent_streams = 1

    def __init__(self, deltas: list[str], delay_s: float = 0.0) -> None:
        self.deltas = deltas
        self.delay_s = delay_s

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        for delta in self.deltas:
            if self.delay_s and cancel.wait(self.delay_s):
                return
            yield delta


class _RecordingTTS:
    """The real synthesizer, with a record of every text it was asked to speak."""

    name = "recording"

    def __init__(self, real: object) -> None:
        self.real = real
        self.spoken: list[str] = []

    def voices(self) -> list[VoiceInfo]:
        return self.real.voices()  # type: ignore[attr-defined,no-any-return]

    def synthesize(self, text: str, voice_id: str, cancel: threading.Event) -> Iterator[Int16Audio]:
        self.spoken.append(text)
        return self.real.synthesize(text, voice_id, cancel)  # type: ignore[attr-defined,no-any-return]


async def _scripted_turn(
    engines: Engines,
    script: list[str],
    tts: _RecordingTTS,
    pools: EnginePools | None = None,
) -> list[TurnEvent]:
    """Every event of one turn whose LLM writes ``script``, spoken by ``tts``."""
    voice = engines.tts.info(None)
    return [
        e
        async for e in run_turn(
            [SYSTEM],
            llm=_ScriptedLLM(script),
            tts=tts,
            voice_id=voice.id,
            sample_rate=voice.sample_rate,
            language="en",
            pools=pools or engines.pools,
            bounds=ReplyBounds(200, 5),
        )
    ]


async def test_no_markdown_or_emoji_reaches_the_synthesizer(engines: Engines) -> None:
    script = [
        "**Sure!** ",
        "Here",
        " are",
        " ideas:\n",
        "- *walk* ",
        "the dog 🐶,\n",
        "1. read `a book`,\n",
        "## and [rest](http://x.y) at 10:30 pm.",
    ]
    recorder = _RecordingTTS(engines.tts)
    events = await _scripted_turn(engines, script, recorder)
    assert recorder.spoken
    for text in recorder.spoken:
        assert not re.search(r"[*#`_\[\]|🐶]|http", text), text
    joined = " ".join(recorder.spoken).lower()
    assert "ten thirty" in joined and "walk the dog" in joined
    assert isinstance(events[-1], TurnDone)


async def test_an_llm_failure_propagates_after_stopping_the_chain(engines: Engines) -> None:
    from eva.engines.base import EngineError

    class _Failing(_ScriptedLLM):
        def stream(
            self,
            messages: Sequence[ChatMessage],
            *,
            max_tokens: int,
            cancel: threading.Event,
            session: str = "",
            sampling: Sampling = COMPANION_SAMPLING,
        ) -> Iterator[str]:
            yield "Hello there, "
            raise EngineError("the model crashed")

    voice = engines.tts.info(None)
    with pytest.raises(EngineError, match="crashed"):
        async for _ in run_turn(
            [SYSTEM],
            llm=_Failing([]),
            tts=engines.tts,
            voice_id=voice.id,
            sample_rate=voice.sample_rate,
            language="en",
            pools=engines.pools,
            bounds=ReplyBounds(),
        ):
            pass
    assert await pools_are_idle(engines)


async def test_markup_never_reaches_the_text_shown_or_stored(engines: Engines) -> None:
    script = ["Here is ", "```py", "thon\nprint", "(x)```", " and **bold** <b>tag</b> ", "a_b."]
    deltas: list[str] = []
    done: TurnDone | None = None
    async for event in run_turn(
        [SYSTEM],
        llm=_ScriptedLLM(script),
        tts=None,
        voice_id="",
        sample_rate=22050,
        language="en",
        pools=engines.pools,
        bounds=ReplyBounds(200, 5),
    ):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        elif isinstance(event, TurnDone):
            done = event
    assert done is not None
    for text in (*deltas, done.text, done.spoken_text):
        assert not re.search(r"[*#`_|\[\]<>~]", text), text
    assert done.text.startswith("Here is python print(x) and bold ")  # markdown: words kept
    assert " ".join("".join(deltas).split()) == done.text


async def test_only_the_audio_the_person_waits_for_pauses_the_llm(engines: Engines) -> None:
    script = [
        "Oh, ",
        "the keeper climbed the stairs every evening at dusk. ",
        "He lit the great lamp, and he watched the ships pass the rocks, ",
        "one by one, until the morning came over the grey water. ",
        "Then he slept, and the gulls kept watch for him.",
    ]
    pauses: list[float] = []
    priority = SpeechPriority(lambda: pauses.append(time.monotonic()), lambda: None)
    recorder = _RecordingTTS(engines.tts)
    pools = dataclasses.replace(engines.pools, speech=priority)
    events = await _scripted_turn(engines, script, recorder, pools)
    made_s = sum(len(e.pcm) / e.sample_rate for e in events if isinstance(e, AudioChunk))
    assert made_s > 3 * URGENT_AUDIO_S  # a reply long enough to have clauses past it
    # The first clauses ("Oh," and the one after) were made with priority; the rest, with
    # the earlier ones' playback ahead of them, let the model go on writing.
    assert 1 <= len(pauses) < len(recorder.spoken), (pauses, recorder.spoken)


async def _spoken_by(engines: Engines, llm: _ScriptedLLM) -> list[str]:
    recorder = _RecordingTTS(engines.tts)
    voice = engines.tts.info(None)
    async for _ in run_turn(
        [SYSTEM],
        llm=llm,
        tts=recorder,
        voice_id=voice.id,
        sample_rate=voice.sample_rate,
        language="en",
        pools=engines.pools,
        bounds=ReplyBounds(200, 5),
    ):
        pass
    return recorder.spoken


_LONG_SECOND_SENTENCE = ["Oh, ", "the", " keeper", " climbed", " the", " stairs", " every",
                         " evening", " and", " watched", " the", " ships", " pass."]  # fmt: skip


async def test_words_written_slower_than_speech_are_spoken_before_their_punctuation(
    engines: Engines,
) -> None:
    spoken = await _spoken_by(engines, _ScriptedLLM(_LONG_SECOND_SENTENCE, delay_s=0.3))
    # "Oh," plays in half a second; the sentence after it takes 3.6 s to write: its words
    # are spoken as the voice runs low, not after a silence of seconds
    assert spoken[0] == "Oh," and len(spoken) >= 3, spoken
    assert not spoken[1].endswith("."), spoken
    assert all(len(piece) >= EARLY_CUT_MIN_CHARS / 2 for piece in spoken[1:-1]), spoken
    assert (
        " ".join(spoken[1:])
        == "the keeper climbed the stairs every evening and watched the ships pass."
    )


async def test_words_written_ahead_of_speech_wait_for_their_punctuation(engines: Engines) -> None:
    # a first clause of 1.5 s of speech, and the next sentence written at once
    script = ["What", " a", " lovely", " old", " story, ", *_LONG_SECOND_SENTENCE[1:]]
    spoken = await _spoken_by(engines, _ScriptedLLM(script))
    assert spoken == [
        "What a lovely old story,",
        "the keeper climbed the stairs every evening and watched the ships pass.",
    ]


async def _done(engines: Engines, llm: _ScriptedLLM) -> TurnDone:
    voice = engines.tts.info(None)
    events = [
        e
        async for e in run_turn(
            [SYSTEM],
            llm=llm,
            tts=engines.tts,
            voice_id=voice.id,
            sample_rate=voice.sample_rate,
            language="en",
            pools=engines.pools,
            bounds=ReplyBounds(200, 5),
        )
    ]
    assert isinstance(events[-1], TurnDone)
    return events[-1]


async def test_a_reply_made_slower_than_it_plays_reports_the_gaps_its_listener_heard(
    engines: Engines,
) -> None:
    # "Oh," (half a second of speech) goes out when " the" comes; the rest 1.5 s later
    script = ["Oh,", " the", " keeper climbed the stairs."]
    slow = await _done(engines, _ScriptedLLM(script, delay_s=1.5))
    assert slow.timings["speech_gap_ms"] > 300, slow.timings
    fast = await _done(engines, _ScriptedLLM(script))
    assert "speech_gap_ms" not in fast.timings, fast.timings
