"""`eva doctor`: the machine, the build, the models, disk, memory, port and engine checks."""

from __future__ import annotations

import socket
from pathlib import Path

from eva.config import Settings
from eva.native import doctor, llama


def _report(settings: Settings) -> tuple[int, str]:
    lines: list[str] = []
    status = doctor.run(settings, say=lines.append, checks=["llm", "vad-silero"])
    return status, "\n".join(lines)


def test_doctor_reports_cpu_build_models_resources_and_engine_checks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", port=0)
    status, text = _report(settings)
    assert status == 0, text
    name, flags = doctor.cpu_description()
    assert f"CPU: {name}" in text
    feature_line = next(line for line in text.splitlines() if "features:" in line)
    for feature in doctor.CPU_FEATURES:
        assert (feature if feature in flags else f"-{feature}") in feature_line.split()
    assert f"CPU variants shipped: {' '.join(llama.shipped_variants())}" in text
    assert "llama-server: present" in text
    assert "language model (smollm2): /" in text and "MiB)" in text
    assert "speech recognition (tiny.en): /" in text
    assert "free disk for data" in text and "GiB" in text
    assert "MiB available of" in text
    assert "ok    language model (llama.cpp in-process)" in text and "cpu_variant" in text
    assert "ok    voice activity (Silero on onnxruntime)" in text


def test_doctor_says_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not doctor.port_is_free("127.0.0.1", port)
        lines: list[str] = []
        doctor.run(Settings(data_dir=tmp_path, port=port), say=lines.append, checks=["vad-silero"])
    assert f"port 127.0.0.1:{port}: in use" in "\n".join(lines)
    assert doctor.port_is_free("127.0.0.1", port)
