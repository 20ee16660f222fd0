"""The conversation as every front end sees it (HTTP, WebSocket, the terminal chat).

It owns the order of things in a turn: read the session's history, stream the reply, save
the turn before the final event reaches the client (so a reply the person saw is never
lost), and record the timings. The engines are reached only through their interfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from eva.config import Settings
from eva.conversation.acknowledgements import SpokenLines
from eva.conversation.admission import Channel, Ticket
from eva.conversation.chunker import ClauseChunker
from eva.conversation.memory_worker import MemoryKeeper
from eva.conversation.persona import Persona, load_persona
from eva.conversation.prompt import (
    build_messages,
    estimate_tokens,
    message_room,
    prompt_token_budget,
)
from eva.conversation.prosody import StyledVoice, style_for
from eva.conversation.text_shaping import speakable
from eva.conversation.turn import (
    AudioChunk,
    ReplyBounds,
    TextDelta,
    TurnControl,
    TurnDone,
    TurnEvent,
    TurnTimer,
    run_turn,
)
from eva.conversation.turn_gate import TurnGate
from eva.engines.base import (
    COMPANION_SAMPLING,
    ChatMessage,
    DetailedTranscript,
    EngineError,
    Float32Audio,
    Int16Audio,
    Sampling,
    Transcript,
    TranscriptionOptions,
)
from eva.engines.runtime import Engines
from eva.engines.threads import iterate_in_thread
from eva.stats import LatencyStats
from eva.store import MessageRecord, SessionRecord, SessionStore, UnknownSessionError

log = logging.getLogger("eva.conversation")


# Conversations one slot of the language model serves within the latency targets: a
# conversation keeps the model busy for about a quarter of its time (the person speaks,
# listens and thinks for the rest), and a turn may wait for one other turn (docs/scaling.md).
CONVERSATIONS_PER_SLOT = 8


@dataclass(frozen=True)
class TimedTranscript:
    transcript: Transcript
    milliseconds: float


def turn_owner(session_id: str | None, user_id: str | None) -> str:
    """Whom the model is shared fairly between: a user, else a session, else the request
    alone (a plain completion, a new session's first turn)."""
    if user_id is not None:
        return f"user:{user_id}"
    return f"session:{session_id or uuid.uuid4().hex}"


class Conversation:
    def __init__(
        self, settings: Settings, engines: Engines, store: SessionStore, stats: LatencyStats
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.store = store
        self.stats = stats
        self.persona: Persona = load_persona(settings)
        self.bounds = ReplyBounds(settings.max_reply_tokens, settings.max_reply_sentences)
        self.prompt_budget = prompt_token_budget(settings.llm_context, settings.max_reply_tokens)
        self.memory = MemoryKeeper(settings, engines, store, prime=self.prime)
        self.lines = SpokenLines(engines, settings.language)  # acknowledgements and the like
        slots = engines.llm.concurrent_streams
        self.gate = TurnGate(
            slots,
            settings.max_conversations or CONVERSATIONS_PER_SLOT * slots,
            settings.max_turn_wait_s,
            settings.first_audio_target_s or float("inf"),
        )
        _use_persona_voice(self.persona, engines, settings)
        self._transcribing = 0  # transcriptions queued for or running on the STT thread

    # --- sessions

    async def open_session(
        self, session_id: str | None, user_id: str | None = None
    ) -> SessionRecord:
        """The session asked for, or a new one of ``user_id``.

        UnknownSessionError for a wrong id, and for another user's session: to a stranger,
        someone else's session does not exist (a 404, never their data).
        """
        if session_id is None:
            return await asyncio.to_thread(self.store.create_session, user_id)
        record = await asyncio.to_thread(self.store.get_session, session_id)
        if record is None or record.user_id != user_id:
            raise UnknownSessionError(session_id)
        return record

    async def seed_history(self, session_id: str, turns: Sequence[tuple[str, str]]) -> None:
        """Store earlier exchanges a client brings with it (an OpenAI client resends the
        whole conversation) as the session's history; nothing is learnt from them."""
        for user_text, reply in turns:
            await asyncio.to_thread(self.store.add_turn, session_id, user_text, reply)

    # --- one turn

    async def reply(
        self,
        session_id: str,
        user_text: str,
        *,
        voice_id: str | None = None,
        audio: bool = True,
        control: TurnControl | None = None,
        timer: TurnTimer | None = None,
        settle: Callable[[TurnDone], Awaitable[TurnDone | None]] | None = None,
        instructions: str = "",
        max_tokens: int | None = None,
        sampling: Sampling = COMPANION_SAMPLING,
        channel: Channel = Channel.TYPED,
        owner: str | None = None,
        waiting_since: float | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Stream the reply to ``user_text`` and save the turn before its TurnDone.

        The turn is admitted first: ``ServerBusyError`` at once when Eva is full (an HTTP
        route that must answer 503 before it streams asks ``check_admission`` first). The
        model is shared fairly between owners (``turn_owner``; by default the session).

        ``settle`` lets a front end decide what is saved: it gets the finished turn and
        returns it as it should be stored (say, cut to the audio actually sent), or None to
        save nothing (a speculative reply the person talked over). ``instructions`` (an API
        client's) follow the persona's; ``max_tokens`` can only shorten Eva's bound.
        ``waiting_since`` (time.monotonic): when the person began to wait, if before now (a
        speaker, from the end of their speech); admission's latency target counts from then.
        """
        ticket = self.gate.admit(owner or turn_owner(session_id, None), channel, waiting_since)
        try:
            async for event in self._reply(
                session_id, user_text, voice_id, audio, control, timer, settle,
                instructions, max_tokens, sampling, ticket,
            ):  # fmt: skip
                yield event
        finally:
            self.gate.release(ticket)

    def check_admission(self, owner: str, channel: Channel = Channel.TYPED) -> None:
        """ServerBusyError if a turn of ``owner`` would be refused now."""
        self.gate.check(owner, channel)

    def keep_place_for_speaker(self, owner: str) -> None:
        """A speaker paused: ServerBusyError if their turn would be refused now; else a
        place is kept for it while its words are transcribed."""
        self.gate.keep_place_for_speaker(owner)

    async def _reply(
        self,
        session_id: str,
        user_text: str,
        voice_id: str | None,
        audio: bool,
        control: TurnControl | None,
        timer: TurnTimer | None,
        settle: Callable[[TurnDone], Awaitable[TurnDone | None]] | None,
        instructions: str,
        max_tokens: int | None,
        sampling: Sampling,
        ticket: Ticket,
    ) -> AsyncIterator[TurnEvent]:
        voice = self.engines.tts.info(voice_id)
        started = time.monotonic()
        parts = await self.memory.prepare(session_id, user_text)  # history, memories, summary
        self.stats.record({"recall_ms": (time.monotonic() - started) * 1000.0})
        messages = self._prompt(
            parts.history, parts.summary, user_text, parts.memories, instructions
        )
        bounds = self.bounds.shared() if ticket.shared else self.bounds
        if max_tokens is not None:
            bounds = bounds.at_most(max_tokens, bounds.max_sentences)
        style = style_for(self.settings.voice_styles, voice.id)
        events = run_turn(
            messages,
            llm=self.engines.llm,
            tts=StyledVoice(self.engines.tts, voice, style) if audio else None,
            voice_id=voice.id,
            sample_rate=voice.sample_rate,
            language=self.settings.language,
            pools=self.engines.pools,
            bounds=bounds,
            control=control,
            timer=timer,
            session=session_id,
            sampling=sampling,
            llm_turn=self.gate.holding(ticket),
        )
        async for event in self.memory.during_turn(events):
            if isinstance(event, AudioChunk) or (isinstance(event, TextDelta) and not audio):
                self.gate.first_output(ticket)  # once per ticket: was it in time?
            if isinstance(event, TurnDone):
                if "speech_gap_ms" in event.timings:
                    self.gate.speech_ran_dry(ticket)
                settled = await settle(event) if settle is not None else event
                if settled is None:
                    return
                event = settled
                # What the person heard is what Eva said: an interrupted reply keeps only
                # the clauses whose audio went out.
                said = event.spoken_text if (event.interrupted and audio) else event.text
                stored, _ = await asyncio.to_thread(
                    self.store.add_turn,
                    session_id,
                    user_text,
                    said,
                    event.timings,
                    event.interrupted,
                )
                self.stats.record(event.timings)
                yield event
                self.memory.learn_from(parts.user_id, stored)  # after the final event
                return
            yield event

    async def prime(self, session_id: str) -> None:
        """Evaluate the start of the session's next prompt (persona, summary, history) in
        the LLM while nobody waits for it, when something else has replaced it in the
        LLM's prompt cache. Then the next reply evaluates only what follows: about a
        hundred tokens instead of a thousand (~3 ms each here)."""
        if not self.engines.llm.reuses_prompt_prefix:
            return  # a server's cache (if any) is not ours to steer
        started = time.monotonic()
        try:
            history, summary = await asyncio.to_thread(self.memory.book.recent, session_id)
            messages = self._prompt(history, summary, "")
            stream = iterate_in_thread(
                self.engines.pools.llm,
                lambda stop: self.engines.llm.stream(
                    messages, max_tokens=1, cancel=stop, session=session_id
                ),
                threading.Event(),
            )
            async for _ in stream:
                pass
        except (EngineError, UnknownSessionError) as exc:  # deleted meanwhile, or a failure
            log.info("prompt cache not primed: %s", type(exc).__name__)
            return
        self.stats.record({"prompt_prime_ms": (time.monotonic() - started) * 1000.0})

    def _prompt(
        self,
        history: Sequence[MessageRecord],
        summary: str,
        user_text: str,
        memories: str = "",
        instructions: str = "",
    ) -> list[ChatMessage]:
        """The persona's prompt around this session's turn: one shape for replies and for
        priming, so that a primed prompt is the start of the next reply's."""
        system = f"{self.persona.prompt}\n\n{instructions}" if instructions else self.persona.prompt
        return build_messages(
            system,
            history,
            user_text,
            self.persona.examples,
            summary=summary,
            memories=memories,
            token_budget=self.prompt_budget,
        )

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> AsyncIterator[str]:
        """The language model's own continuation of ``messages`` as given: no persona, no
        memory, nothing stored (the OpenAI API's plain model). Speech keeps its priority.
        Admitted like any typed turn, each request its own owner (ServerBusyError when Eva
        is full)."""
        ticket = self.gate.admit(turn_owner(None, None), Channel.TYPED)
        async with self.gate.holding(ticket):
            async for delta in self._complete(messages, max_tokens, sampling):
                self.gate.first_output(ticket)
                yield delta

    async def _complete(
        self, messages: Sequence[ChatMessage], max_tokens: int, sampling: Sampling
    ) -> AsyncIterator[str]:
        stream = iterate_in_thread(
            self.engines.pools.llm,
            lambda stop: self.engines.pools.speech.pace(
                self.engines.llm.stream(
                    messages, max_tokens=max_tokens, cancel=stop, sampling=sampling
                )
            ),
            threading.Event(),
        )
        async with contextlib.aclosing(stream):
            async for delta in stream:
                yield delta

    def too_long_for_model(self, text: str) -> str | None:
        """Why ``text`` cannot be answered by the model, or None: a message whose tokens do
        not fit the model's context beside the persona and the reply is the client's error
        (413), not a backend failure."""
        room = message_room(self.persona.prompt, self.persona.examples, self.prompt_budget)
        needed = estimate_tokens(text)
        if needed <= room:
            return None
        return (
            f"the message needs about {needed} tokens and the model has room for {room}: "
            "say it in fewer words"
        )

    async def greeting(self, session_id: str, user_id: str | None) -> str | None:
        return await self.memory.greeting(session_id, user_id)

    async def aclose(self) -> None:
        await self.memory.aclose()

    # --- speech in and out, outside a turn

    def can_spare_transcription(self) -> bool:
        """Whether a transcription nobody waits for (a partial one, to show the words as
        they are spoken) may run now. Not while another is queued or running: the STT
        thread is shared, and a final transcript, which a reply waits for, must not queue
        behind it. Nor while the model writes any turn: the cores are the model's then (a
        partial takes both for 0.4-1.3 s under load, beside a reply's opening)."""
        return self._transcribing == 0 and self.gate.capacity().turns_running == 0

    async def transcribe(self, audio: Float32Audio) -> TimedTranscript:
        started = time.monotonic()
        self._transcribing += 1
        try:
            transcript = await asyncio.get_running_loop().run_in_executor(
                self.engines.pools.stt,
                self.engines.stt.transcribe,
                audio,
                self.settings.language,
            )
        finally:
            self._transcribing -= 1
        elapsed = (time.monotonic() - started) * 1000.0
        self.stats.record({"stt_ms": elapsed})
        return TimedTranscript(transcript, round(elapsed, 2))

    async def transcribe_recording(
        self, audio: Float32Audio, language: str | None, options: TranscriptionOptions
    ) -> DetailedTranscript:
        """A recording's full transcript with its timing (the OpenAI API's files)."""
        started = time.monotonic()
        transcript = await asyncio.get_running_loop().run_in_executor(
            self.engines.pools.stt,
            self.engines.stt.transcribe_detailed,
            audio,
            language,  # None: detected, as OpenAI does (an English-only model says "en")
            options,
        )
        self.stats.record({"stt_file_ms": (time.monotonic() - started) * 1000.0})
        return transcript

    async def speak(
        self, text: str, voice_id: str, control: TurnControl, rate: float = 1.0
    ) -> AsyncGenerator[TurnEvent, None]:
        """Words that are not a reply (the greeting, text an API client sends) said like
        one: clause by clause, in the voice's style, with speech's priority over the LLM.
        ``rate`` scales the speed on top of the style's."""
        voice = self.engines.tts.info(voice_id)
        style = style_for(self.settings.voice_styles, voice.id)
        styled = StyledVoice(self.engines.tts, voice, style)
        chunker = ClauseChunker()
        yield TextDelta(text)
        for clause in [*chunker.push(text), *chunker.flush()]:
            words = speakable(clause.text, self.settings.language)
            chunks = iterate_in_thread(
                self.engines.pools.tts,
                lambda stop, w=words: self.engines.pools.speech.speak(  # type: ignore[misc]
                    styled.synthesize(w, voice.id, stop, rate)
                ),
                control.new_stop(),
            )
            async for pcm in chunks:
                yield AudioChunk(pcm, voice.sample_rate, clause.text)
            if control.cancelled:
                break
        yield TurnDone(text=text, spoken_text=text, interrupted=control.cancelled, timings={})

    async def synthesize(
        self, text: str, voice_id: str | None = None
    ) -> tuple[Int16Audio, int, float]:
        """The whole of ``text`` spoken by one voice: PCM16, its sample rate, and the
        milliseconds to the first chunk."""
        voice = self.engines.tts.info(voice_id)
        words = speakable(text, self.settings.language)
        chunks: list[Int16Audio] = []
        first_chunk_ms = 0.0
        started = time.monotonic()
        stream = iterate_in_thread(
            self.engines.pools.tts,
            lambda stop: self.engines.tts.synthesize(words, voice.id, stop),
            threading.Event(),
        )
        async for pcm in stream:
            if not chunks:
                first_chunk_ms = round((time.monotonic() - started) * 1000, 2)
                self.stats.record({"tts_first_chunk_ms": first_chunk_ms})
            chunks.append(pcm)
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return audio, voice.sample_rate, first_chunk_ms


def _use_persona_voice(persona: Persona, engines: Engines, settings: Settings) -> None:
    """The persona's voice becomes the default, unless the settings name one. A voice that
    is not loaded (its backend switched off) leaves the default as it was."""
    if settings.tts_voice or not persona.voice:
        return
    if any(voice.id == persona.voice for voice in engines.tts.voices()):
        engines.tts.default_voice = persona.voice
    else:
        log.warning(
            "the persona's voice %r is not available; using %r",
            persona.voice,
            engines.tts.default_voice,
        )
