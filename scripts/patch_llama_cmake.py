"""Adjust the vendored llama.cpp's CMake files before scripts/build_llama.sh builds them.

Two changes llama.cpp has no option for, each to cut the build time on 2 cores:

- Only the chosen CPU backend variants: ggml builds all fourteen x86-64 ones under
  GGML_CPU_ALL_VARIANTS, each a full compile of the CPU backend. The others' lines are
  commented out; an unknown name is an error, never a silent omission.
- -O1 for the code that is not on the token path: llama-common (argument parsing, chat
  templates and parsers, JSON), the server's HTTP and request code, the multimodal helper
  and cpp-httplib. They are half the build and compile about 40 % faster at -O1 than -O3
  (arg.cpp: 13 s against 22 s). ggml's kernels and libllama stay at -O3.

    python patch_llama_cmake.py path/to/llama.cpp x64 haswell ...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_VARIANT_LINE = re.compile(r"^(\s*)ggml_add_cpu_backend_variant\((\w[\w.]*)\b")
OFF_TOKEN_PATH_TARGETS = (
    "llama-common", "llama-common-base", "server-context", "llama-server-impl",
    "llama-server", "mtmd", "cpp-httplib",
)  # fmt: skip
_LOWER_OPTIMISATION = """
# eva: -O1 for code off the token path (scripts/patch_llama_cmake.py)
foreach(eva_target {targets})
    if (TARGET ${{eva_target}})
        target_compile_options(${{eva_target}} PRIVATE -O1)
    endif()
endforeach()
"""


def keep_variants(text: str, wanted: set[str]) -> tuple[str, set[str]]:
    """Return the text with other variant lines commented out, and the names kept."""
    kept: set[str] = set()
    lines = []
    for line in text.splitlines(keepends=True):
        match = _VARIANT_LINE.match(line)
        if match and match.group(2) in wanted:
            kept.add(match.group(2))
        elif match:
            line = f"{match.group(1)}# eva: not built # {line.lstrip()}"
        lines.append(line)
    return "".join(lines), kept


def lower_optimisation(text: str) -> str:
    """The top-level CMakeLists.txt with -O1 for the targets off the token path."""
    return text + _LOWER_OPTIMISATION.format(targets=" ".join(OFF_TOKEN_PATH_TARGETS))


def main(argv: list[str]) -> int:
    source, wanted = Path(argv[1]), set(argv[2:])
    ggml_cmake = source / "ggml" / "src" / "CMakeLists.txt"
    text, kept = keep_variants(ggml_cmake.read_text(), wanted)
    if kept != wanted:
        print(f"unknown CPU variants: {sorted(wanted - kept)}", file=sys.stderr)
        return 2
    ggml_cmake.write_text(text)
    top = source / "CMakeLists.txt"
    top.write_text(lower_optimisation(top.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
