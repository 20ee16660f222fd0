"""scripts/patch_llama_cmake.py: the variant subset and -O1 off the token path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "patch_llama_cmake.py"

_GGML_EXCERPT = """\
    if (GGML_SYSTEM_ARCH STREQUAL "x86")
        ggml_add_cpu_backend_variant(x64)
        ggml_add_cpu_backend_variant(sse42              SSE42)
        ggml_add_cpu_backend_variant(haswell            SSE42 AVX F16C FMA AVX2 BMI2)
            ggml_add_cpu_backend_variant(sapphirerapids SSE42 AVX AMX_TILE AMX_INT8)
            ggml_add_cpu_backend_variant(armv8.2_1    DOTPROD)
"""


@pytest.fixture(scope="module")
def patch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patch_llama_cmake", _SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_chosen_variants_stay_and_the_rest_become_comments(patch: ModuleType) -> None:
    text, kept = patch.keep_variants(_GGML_EXCERPT, {"x64", "haswell"})
    assert kept == {"x64", "haswell"}
    active = [line.strip() for line in text.splitlines() if line.strip().startswith("ggml_add")]
    assert active == [
        "ggml_add_cpu_backend_variant(x64)",
        "ggml_add_cpu_backend_variant(haswell            SSE42 AVX F16C FMA AVX2 BMI2)",
    ]
    assert "# eva: not built # ggml_add_cpu_backend_variant(sapphirerapids" in text
    assert "# eva: not built # ggml_add_cpu_backend_variant(armv8.2_1" in text


def test_an_unknown_variant_name_is_an_error(patch: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "ggml" / "src").mkdir(parents=True)
    (tmp_path / "ggml" / "src" / "CMakeLists.txt").write_text(_GGML_EXCERPT)
    (tmp_path / "CMakeLists.txt").write_text("project(llama.cpp)\n")
    assert patch.main(["patch", str(tmp_path), "x64", "zen9"]) == 2
    assert patch.main(["patch", str(tmp_path), "x64"]) == 0
    top = (tmp_path / "CMakeLists.txt").read_text()
    assert "target_compile_options(${eva_target} PRIVATE -O1)" in top
    assert "llama-common" in top and "ggml" not in top.split("foreach(eva_target")[1].split(")")[0]
