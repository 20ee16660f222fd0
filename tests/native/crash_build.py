"""A copy of Eva's llama.cpp build with a CPU variant that dies by SIGILL, made for tests.

A variant built for a CPU feature the machine does not really have (AMX that a VM
advertises but never enabled) crashes exactly so: ggml scores it best, loads it, and the
first instruction it cannot run kills the process. This one is compiled here: it scores
above every real variant and executes an undefined instruction (ud2) when initialised.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from eva.native import llama

_CRASHING_BACKEND_C = """
int ggml_backend_score(void) { return 1 << 30; }
void *ggml_backend_init(void) { __builtin_trap(); return 0; }
"""


def crashing_build(destination: Path, *, keep_real_variants: bool) -> Path:
    """A copy of Eva's llama.cpp build, plus a crashing CPU variant named zzcrash.

    Copied, not linked: llama-server looks for its CPU backends beside its resolved path.
    """
    ignore = shutil.ignore_patterns("wheel", *([] if keep_real_variants else ["libggml-cpu-*"]))
    shutil.copytree(llama.llama_cpp_dir(), destination, symlinks=True, ignore=ignore)
    c_file = destination / "crash.c"
    c_file.write_text(_CRASHING_BACKEND_C)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(destination / "libggml-cpu-zzcrash.so"), str(c_file)],
        check=True,
    )
    return destination
