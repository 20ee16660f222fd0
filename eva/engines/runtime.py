"""Loading every engine once, warming it up, and holding the worker threads that run it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from eva.config import Settings
from eva.engines import registry
from eva.engines.base import (
    ChatMessage,
    EndOfTurnEngine,
    EngineError,
    LLMEngine,
    STTEngine,
    VADEngine,
)
from eva.engines.llm_fallback import create_chain
from eva.engines.threads import EnginePools
from eva.engines.voices import VoiceCatalog

log = logging.getLogger("eva.engines")

Progress = Callable[[str], None]


def _timed(progress: Progress, label: str, build: Callable[[], Any]) -> Any:
    progress(f"loading {label}...")
    started = time.monotonic()
    engine = build()
    progress(f"loaded {label} in {time.monotonic() - started:.1f}s")
    return engine


def _warm(progress: Progress, engine: Any, **context: Any) -> None:
    warm_up = getattr(engine, "warm_up", None)
    if warm_up is None:
        return
    started = time.monotonic()
    warm_up(**context)
    progress(
        f"warmed up {getattr(engine, 'name', type(engine).__name__)} "
        f"in {time.monotonic() - started:.1f}s"
    )


@dataclass
class Engines:
    stt: STTEngine
    llm: LLMEngine
    tts: VoiceCatalog
    vad: VADEngine
    end_of_turn: EndOfTurnEngine | None = None  # None: the rule on words decides
    pools: EnginePools = field(default_factory=EnginePools)

    @classmethod
    def load(
        cls,
        settings: Settings,
        progress: Progress = log.info,
        prefix: Sequence[ChatMessage] = (),
    ) -> Engines:
        """Load and warm every engine. ``prefix`` (the persona's system prompt and example
        exchanges) warms the LLM's prompt cache, so that a conversation's first turn only
        evaluates what follows it."""
        stt = _timed(
            progress,
            f"speech recognition ({settings.stt_backend}, {settings.stt_model})",
            lambda: registry.create("stt", settings.stt_backend, settings),
        )
        llm = _timed(
            progress,
            f"language model ({' > '.join(settings.llm_backends)}, {settings.llm_model})",
            lambda: create_chain(settings, lambda name: registry.create("llm", name, settings)),
        )
        tts_engines = [
            _timed(progress, f"voices ({name})", partial(registry.create, "tts", name, settings))
            for name in settings.tts_backends
        ]
        tts = VoiceCatalog(tts_engines, settings.tts_voice, settings.language)
        vad = _timed(
            progress,
            f"voice activity detection ({settings.vad_backend})",
            lambda: registry.create("vad", settings.vad_backend, settings),
        )
        end_of_turn: EndOfTurnEngine | None = None
        if settings.end_of_turn_backend:
            try:
                end_of_turn = _timed(
                    progress,
                    f"end of turn ({settings.end_of_turn_backend})",
                    lambda: registry.create("turn", settings.end_of_turn_backend, settings),
                )
            except EngineError as exc:  # Eva still starts: the rule on words decides
                log.warning("end of turn: the rule on words alone, because %s", exc)
        _warm(progress, llm, prefix=prefix)
        for engine in (stt, *tts_engines, vad, end_of_turn):
            if engine is not None:
                _warm(progress, engine)
        return cls(
            stt=stt, llm=llm, tts=tts, vad=vad, end_of_turn=end_of_turn,
            pools=EnginePools.for_llm(llm),
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {
            "stt": self.stt.name,
            "llm": self.llm.name,
            "tts": [engine.name for engine in self.tts.engines],
            "vad": self.vad.name,
            "end_of_turn": self.end_of_turn.name if self.end_of_turn is not None else "words",
            "default_voice": self.tts.default_voice,
        }

    def close(self) -> None:
        self.pools.shutdown()
        self.llm.close()
