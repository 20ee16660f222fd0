"""The one table of backends. Adding a backend means one module and one line here.

Each entry names a module with a ``create(settings) -> engine`` function. Modules are
imported only when their backend is chosen, so an optional package that is missing fails
with a message naming what to install instead of breaking every other backend.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from eva.config import Settings
from eva.engines.base import EngineError, MissingDependencyError

Kind = Literal["stt", "llm", "tts", "vad", "turn"]

BACKENDS: dict[tuple[Kind, str], str] = {
    ("stt", "whisper"): "eva.engines.stt_whisper",
    ("llm", "llamaserver"): "eva.engines.llm_llamaserver",
    ("llm", "llamacpp"): "eva.engines.llm_llamacpp",
    ("llm", "openai"): "eva.engines.llm_openai",
    ("tts", "piper"): "eva.engines.tts_piper",
    ("tts", "espeak"): "eva.engines.tts_espeak",
    ("vad", "silero"): "eva.engines.vad_silero",
    ("vad", "pysilero"): "eva.engines.vad_pysilero",
    ("turn", "smart_turn"): "eva.engines.turn_smart",
}


def backend_names(kind: Kind) -> list[str]:
    return [name for (k, name) in BACKENDS if k == kind]


def create(kind: Kind, name: str, settings: Settings) -> Any:
    module_name = BACKENDS.get((kind, name))
    if module_name is None:
        known = ", ".join(backend_names(kind))
        raise EngineError(f"unknown {kind} backend {name!r}; known: {known}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"the {kind} backend {name!r} needs the Python package {exc.name!r}: "
            f"pip install {exc.name}"
        ) from exc
    return module.create(settings)
