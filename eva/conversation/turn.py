"""One reply, streamed: LLM deltas -> clause chunker -> text shaping -> TTS -> audio chunks.

``run_turn`` is an async generator of ``TurnEvent``s. Text deltas go out as the LLM writes
them; each clause goes to the synthesizer the moment the chunker releases it, so the first
audio leaves while the LLM is still writing. The consumer cancels the whole chain by closing
the generator (or cancelling its task) or by calling ``TurnControl.cancel()`` from anywhere;
the worker threads stop at their next token or clause.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

from eva.conversation.chunker import ClauseChunker
from eva.conversation.text_shaping import speakable
from eva.engines.base import (
    COMPANION_SAMPLING,
    ChatMessage,
    Int16Audio,
    LLMEngine,
    Sampling,
    TTSEngine,
)
from eva.engines.threads import EnginePools, SpeechPriority, iterate_in_thread

# Markup characters a small model writes (markdown, HTML-ish tags). Eva talks: they are
# never spoken (text_shaping removes them before synthesis), so the text shown and stored
# drops them too. Character by character, so it works on a stream of deltas as is.
_MARKUP = str.maketrans("", "", "*#`_|[]<>~")
# The first clause may be a single word ("Oh," "Sure!"): it gets audio out soonest, and an
# interjection followed by a pause sounds natural. Synthesis time grows with the clause
# (about 30 ms + 37 ms per second of speech here), so a long first sentence with no comma
# is cut at a phrase boundary: at 24 characters (about 1.5 s of speech) rather than 48, the
# first audio came 60 ms (TTS) to 130 ms (text to first audio) sooner in an interleaved A/B
# (docs/performance.md, attempts).
FIRST_CLAUSE_MIN_CHARS = 3
FIRST_CLAUSE_MAX_CHARS = 24
# A reply's audio is synthesized with priority over the LLM until this much of it is made:
# the first clause (the person waits in silence for it) and a second one when the first is
# a single word. A clause takes 40-200 ms to make and the LLM writes the next one in well
# under a second, so past this the playback ahead covers synthesis without priority. Under
# load, priority for every clause of every reply kept the model paused half the time.
URGENT_AUDIO_S = 2.0
# When the speech made ahead of what the listener has heard falls under this, the words
# written so far are spoken without waiting for the clause's punctuation: making a clause
# takes 0.1-0.5 s on a loaded machine, so this leaves it time to be ready. Under load the
# model writes only about twice as fast as speech plays, and a long second sentence left
# the voice silent 0.6-1.5 s after the first clause in most replies (eva loadtest, gaps).
LOW_WATER_S = 1.0
# The fewest characters spoken that way (about four words): shorter pieces sound choppy.
EARLY_CUT_MIN_CHARS = 20
# A silence in a reply's speech shorter than this is not heard as a break (scheduling, under
# a syllable); a longer one is counted (``speech_gap_ms``, and admission.py's limit).
AUDIBLE_GAP_S = 0.05


# A reply that shares the model with other people's turns is kept to two short sentences:
# every turn batched with others slows them all, and a shorter hold lets the next person
# in sooner. Web services call this a brownout (optional content dropped under load); one
# reply written under load measured 6-13 s of hold for 90 tokens (docs/scaling.md).
SHARED_REPLY_TOKENS = 48
SHARED_REPLY_SENTENCES = 2


@dataclass(frozen=True)
class ReplyBounds:
    max_tokens: int = 90
    max_sentences: int = 3

    def at_most(self, max_tokens: int, max_sentences: int) -> ReplyBounds:
        """These bounds, tightened to ``max_tokens`` and ``max_sentences``."""
        return ReplyBounds(min(self.max_tokens, max_tokens), min(self.max_sentences, max_sentences))

    def shared(self) -> ReplyBounds:
        """The bounds of a reply written while others share the model."""
        return self.at_most(SHARED_REPLY_TOKENS, SHARED_REPLY_SENTENCES)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class AudioChunk:
    pcm: Int16Audio
    sample_rate: int
    text: str  # the clause this audio speaks


@dataclass(frozen=True)
class TurnDone:
    text: str  # the whole reply as written (bounded)
    spoken_text: str  # the clauses whose audio was completely handed to the consumer
    interrupted: bool
    timings: dict[str, float]


TurnEvent = TextDelta | AudioChunk | TurnDone


@dataclass(frozen=True)
class _ClauseHandedOver:
    """Internal marker: every audio chunk of ``clause`` went to the consumer before it."""

    clause: str


class TurnTimer:
    """Milliseconds since the start of the turn, first occurrence of each stage only."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.marks: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        if stage not in self.marks:
            self.marks[stage] = round((time.monotonic() - self.start) * 1000.0, 2)

    def set(self, stage: str, milliseconds: float) -> None:
        self.marks[stage] = round(milliseconds, 2)


@dataclass
class TurnControl:
    """The cancel switch of one turn, safe to flip from any thread or task.

    Each engine call gets its own stop flag (a finished clause sets its own flag on the way
    out); ``cancel`` sets all of them, including flags handed out later.
    """

    cancelled: bool = False
    _stops: list[threading.Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new_stop(self) -> threading.Event:
        stop = threading.Event()
        with self._lock:
            self._stops = [s for s in self._stops if not s.is_set()]
            self._stops.append(stop)
            if self.cancelled:
                stop.set()
        return stop

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for stop in self._stops:
                stop.set()


async def run_turn(
    messages: Sequence[ChatMessage],
    *,
    llm: LLMEngine,
    tts: TTSEngine | None,
    voice_id: str,
    sample_rate: int,
    language: str,
    pools: EnginePools,
    bounds: ReplyBounds,
    control: TurnControl | None = None,
    timer: TurnTimer | None = None,
    session: str = "",
    sampling: Sampling = COMPANION_SAMPLING,
    llm_turn: contextlib.AbstractAsyncContextManager[object] | None = None,
) -> AsyncIterator[TurnEvent]:
    """Stream one reply. ``tts=None`` gives text only. The last event is always TurnDone.
    ``session`` keeps the conversation in its own prompt cache where the LLM has several.
    ``llm_turn`` is entered before the LLM writes and left when it has written (the turn's
    hold on a slot of the model, see eva/conversation/turn_gate.py); synthesis of the last
    clauses goes on outside it."""
    control = control or TurnControl()
    timer = timer or TurnTimer()
    # Both queues are unbounded on purpose: ReplyBounds already bounds a reply (about 90
    # deltas and a few sentences of audio, ~1 MB), and a consumer that plays the audio at
    # real-time pace must not hold back the writer. A bounded queue kept the one LLM locked
    # for the whole playback, so every other session's turn waited for it.
    out: asyncio.Queue[TurnEvent | _ClauseHandedOver | None] = asyncio.Queue()
    clauses: asyncio.Queue[str | None] = asyncio.Queue()
    written: list[str] = []  # raw LLM text handed to the consumer
    spoken: list[str] = []
    heard = _Playhead()  # when the listener will have heard the audio made so far

    async def write() -> None:
        try:
            async with llm_turn or contextlib.nullcontext():
                timer.mark("llm_slot_ms")  # waited this long for the model (turn_gate.py)
                await write_reply()
                timer.mark("llm_done_ms")
        finally:
            await clauses.put(None)

    async def write_reply() -> None:
        chunker = ClauseChunker(
            first_min_chars=FIRST_CLAUSE_MIN_CHARS, first_max_chars=FIRST_CLAUSE_MAX_CHARS
        )
        raw = ""
        released_end = 0
        sentences = 0
        shown = 0
        tokens = iterate_in_thread(
            pools.llm,
            lambda stop: pools.speech.pace(
                llm.stream(
                    messages,
                    max_tokens=bounds.max_tokens,
                    cancel=stop,
                    session=session,
                    sampling=sampling,
                )
            ),
            control.new_stop(),
        )
        async with contextlib.aclosing(tokens):
            async for delta in tokens:
                timer.mark("llm_first_token_ms")
                raw += delta
                pending = chunker.push(delta)
                if not pending and clauses.empty() and heard.ahead_s() < LOW_WATER_S:
                    pending = chunker.cut_early(EARLY_CUT_MIN_CHARS)
                for clause in pending:
                    released_end = _locate(raw, clause.text, released_end)
                    sentences += clause.ends_sentence
                    await _release(clause.text)
                    if sentences >= bounds.max_sentences:
                        break
                limit = released_end if sentences >= bounds.max_sentences else len(raw)
                if limit > shown:
                    await _write(raw[shown:limit])
                    shown = limit
                if sentences >= bounds.max_sentences:
                    break  # closing the iterator stops the LLM thread
        if sentences < bounds.max_sentences and not control.cancelled:
            for clause in chunker.flush():
                await _release(clause.text)
            if len(raw) > shown:
                await _write(raw[shown:])

    async def _write(text: str) -> None:
        shown = text.translate(_MARKUP)
        if shown:
            written.append(shown)
            await out.put(TextDelta(shown))

    async def _release(text: str) -> None:
        timer.mark("first_clause_ms")
        if tts is not None:
            await clauses.put(text)
        else:
            spoken.append(text)

    async def speak() -> None:
        if tts is None:
            return
        first = True
        made_s = 0.0  # seconds of this reply's audio synthesized so far
        while (clause := await clauses.get()) is not None:
            if control.cancelled:
                break
            words = speakable(clause, language)
            if not words.strip():
                await out.put(_ClauseHandedOver(clause))  # nothing to hear: spoken as is
                continue
            handed_at = time.monotonic()
            # Only the audio the person is waiting for pauses the LLM (SpeechPriority):
            # past the first seconds, a clause has the earlier ones' playback to be made
            # in, and pausing the model for it would stall other people's first clauses.
            urgent = made_s < URGENT_AUDIO_S
            chunks = iterate_in_thread(
                pools.tts,
                lambda stop, w=words, u=urgent: _synthesize(  # type: ignore[misc]
                    tts, w, voice_id, stop, pools.speech if u else None
                ),
                control.new_stop(),
            )
            async with contextlib.aclosing(chunks):
                async for pcm in chunks:
                    if first:
                        timer.set("tts_first_chunk_ms", (time.monotonic() - handed_at) * 1000)
                        first = False
                    made_s += len(pcm) / sample_rate
                    heard.made(len(pcm) / sample_rate)
                    await out.put(AudioChunk(pcm, sample_rate, clause))
            if not control.cancelled:
                await out.put(_ClauseHandedOver(clause))

    async def produce() -> None:
        try:
            await asyncio.gather(write(), speak())
        finally:
            await out.put(None)

    producer = asyncio.create_task(produce())
    try:
        while (event := await out.get()) is not None:
            if control.cancelled:
                continue  # made ahead of a barge-in: dropped, never played
            if isinstance(event, _ClauseHandedOver):
                spoken.append(event.clause)
                continue
            if isinstance(event, AudioChunk):
                timer.mark("first_audio_ms")
            yield event
        await producer  # re-raises an engine failure
    finally:
        if not producer.done():
            control.cancel()
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
    timer.mark("total_ms")
    if heard.gaps_s:
        timer.set("speech_gap_ms", heard.gaps_s * 1000)
    yield TurnDone(
        text=display_text("".join(written)),
        spoken_text=display_text(" ".join(spoken)),
        interrupted=control.cancelled,
        timings=dict(timer.marks),
    )


class _Playhead:
    """When the listener will have heard all of a reply's audio made so far, as if it
    played from its first chunk on (the server paces it so, eva/server/audio_out.py), and
    the gaps it heard where audio was made later than that."""

    def __init__(self) -> None:
        self._until: float | None = None
        self.gaps_s = 0.0  # audible ones (AUDIBLE_GAP_S), all together

    def made(self, seconds: float) -> None:
        now = time.monotonic()
        if self._until is not None and now - self._until >= AUDIBLE_GAP_S:
            self.gaps_s += now - self._until
        self._until = max(self._until or 0.0, now) + seconds

    def ahead_s(self) -> float:
        """Seconds of speech made and not yet heard; infinite before the first audio."""
        return math.inf if self._until is None else self._until - time.monotonic()


def display_text(text: str) -> str:
    """Reply text as shown and stored: single-spaced, without markup characters."""
    return " ".join(text.translate(_MARKUP).split())


def _locate(raw: str, clause: str, start: int) -> int:
    """Where ``clause`` (a stripped span of ``raw``) ends, searching from ``start``."""
    position = raw.find(clause, start)
    return len(raw) if position < 0 else position + len(clause)


def _synthesize(
    tts: TTSEngine,
    words: str,
    voice_id: str,
    stop: threading.Event,
    priority: SpeechPriority | None,
) -> Iterator[Int16Audio]:
    """``words`` in ``voice_id``, with ``priority`` over the LLM when given."""
    chunks = tts.synthesize(words, voice_id, stop)
    return priority.speak(chunks) if priority is not None else chunks
