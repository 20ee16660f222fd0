"""Eva's own llama.cpp build: where it is, loading it, and which CPU variant runs.

``scripts/build_llama.sh`` builds llama.cpp portably (no ``-march=native``) with one CPU
backend per x86-64 level, ``libggml-cpu-<variant>.so``; ``scripts/install.sh`` copies the
build into ``.venv/llama.cpp``. ggml scores every variant file against this CPU's features
and loads the best one it can run, so the same files run on any x86-64 machine.

llama-cpp-python is installed without a llama.cpp of its own: it is pointed at this build
through ``LLAMA_CPP_LIB_PATH`` before its first import, and the CPU backends are loaded
from this directory explicitly (ggml alone would look beside the Python executable).
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

DIR_ENV = "EVA_LLAMA_CPP_DIR"
# In the build directory: the CPU variants that crashed on this machine, one name a line.
# `eva selfcheck --repair` writes it; scripts/install.sh keeps it (and keeps those variant
# files out) when it copies a new build into the venv.
DISABLED_VARIANTS_FILE = "DISABLED_CPU_VARIANTS"
_VARIANT_FILE = re.compile(r"libggml-cpu-([\w.]+)\.so$")

_load_lock = threading.Lock()
_loaded: ModuleType | None = None
_ggml: ctypes.CDLL | None = None  # libggml of the loaded build, for the registry calls


class NativeBuildMissing(RuntimeError):
    pass


def llama_cpp_dir() -> Path:
    """The directory of the build: ``$EVA_LLAMA_CPP_DIR``, else ``<venv>/llama.cpp``."""
    configured = os.environ.get(DIR_ENV)
    return Path(configured) if configured else Path(sys.prefix) / "llama.cpp"


def disabled_variants(directory: Path | None = None) -> list[str]:
    path = (directory or llama_cpp_dir()) / DISABLED_VARIANTS_FILE
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def server_binary(directory: Path | None = None) -> Path:
    return (directory or llama_cpp_dir()) / "llama-server"


def server_command(
    model: Path, port: int, *, threads: int, ctx_size: int, directory: Path | None = None
) -> list[str]:
    """llama-server serving ``model`` on a loopback port."""
    return [
        str(server_binary(directory)), "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--threads", str(threads), "--ctx-size", str(ctx_size),
    ]  # fmt: skip


def shipped_variants(directory: Path | None = None) -> list[str]:
    """The CPU variants present in the build directory, by name."""
    directory = directory or llama_cpp_dir()
    found = (_VARIANT_FILE.search(path.name) for path in directory.glob("libggml-cpu-*.so"))
    return sorted(match.group(1) for match in found if match)


def best_cpu_variant(directory: Path | None = None) -> str | None:
    """The variant ggml will load: the highest ``ggml_backend_score()`` among the files.

    The same choice ggml makes (ggml-backend-reg.cpp), computed before the backend is
    initialised, so that a crash in it can be blamed on the right file.
    """
    directory = directory or llama_cpp_dir()
    best, best_score = None, 0
    for variant in shipped_variants(directory):
        library = ctypes.CDLL(str(directory / f"libggml-cpu-{variant}.so"))
        try:
            score_function = library.ggml_backend_score
            score_function.restype = ctypes.c_int
            score = int(score_function())
        except AttributeError:
            score = 0
        finally:
            _ctypes.dlclose(library._handle)  # as ggml does with the variants it passes over
        if score > best_score:
            best, best_score = variant, score
    return best


def _mapped_paths(pid: int | None = None) -> list[str]:
    """The files a process (this one by default) has mapped, from Linux's /proc/PID/maps."""
    try:
        maps = Path(f"/proc/{pid or 'self'}/maps").read_text()
    except OSError:
        return []
    return sorted({line.split()[-1] for line in maps.splitlines() if "/" in line})


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def loaded_cpu_variant(pid: int | None = None) -> str | None:
    """The CPU variant ggml is using, in this process or in another one (llama-server).

    Here: the file that holds ggml's registered CPU backend (dladdr), since the first
    variant scored stays mapped even when passed over. Another process: its mapped files,
    where ggml's own scoring leaves only the chosen variant.
    """
    if pid is not None:
        found = (_VARIANT_FILE.search(path) for path in _mapped_paths(pid))
        return next((match.group(1) for match in found if match), None)
    if _ggml is None:
        return None
    _ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    _ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    registered = _ggml.ggml_backend_reg_by_name(b"CPU")
    info = _DlInfo()
    if not registered or not ctypes.CDLL(None).dladdr(
        ctypes.c_void_p(registered), ctypes.byref(info)
    ):
        return None
    match = _VARIANT_FILE.search(os.fsdecode(info.dli_fname or b""))
    return match.group(1) if match else None


def loaded_library(name: str) -> Path | None:
    """Where this process loaded ``lib<name>.so`` from (proves which build is in use)."""
    pattern = re.compile(rf"/lib{re.escape(name)}\.so(\.[\d.]+)?$")
    for path in _mapped_paths():
        if pattern.search(path):
            return Path(path)
    return None


def load_llama_cpp() -> ModuleType:
    """Import ``llama_cpp`` bound to Eva's build, with the CPU backends loaded. Idempotent."""
    global _loaded, _ggml
    with _load_lock:
        if _loaded is not None:
            return _loaded
        directory = llama_cpp_dir()
        if not (directory / "libllama.so").is_file():
            raise NativeBuildMissing(
                f"Eva's llama.cpp build is missing from {directory}: run scripts/install.sh "
                f"(or point {DIR_ENV} at a directory made by scripts/build_llama.sh)"
            )
        os.environ["LLAMA_CPP_LIB_PATH"] = str(directory)
        os.environ["MTMD_CPP_LIB"] = str(directory)
        import llama_cpp

        ggml = ctypes.CDLL(str(directory / "libggml.so"))
        ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
        if ggml.ggml_backend_reg_count() == 0:
            ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
            ggml.ggml_backend_load_all_from_path(os.fsencode(directory))
        if ggml.ggml_backend_reg_count() == 0:
            raise NativeBuildMissing(f"no llama.cpp CPU backend in {directory} runs on this CPU")
        _loaded, _ggml = llama_cpp, ggml
        return llama_cpp
