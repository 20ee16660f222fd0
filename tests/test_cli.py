"""The eva command as a user runs it: a separate process, real models."""

from __future__ import annotations

import io
import subprocess
import sys
import wave
from pathlib import Path


def _eva(*args: str, stdin: str = "", data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eva.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "EVA_DATA_DIR": str(data_dir), "HOME": str(data_dir)},
        check=False,
    )


def test_say_writes_a_wav_of_the_sentence(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = _eva("say", "Hello, it is 3:30.", "-o", str(out), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    with wave.open(io.BytesIO(out.read_bytes())) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    assert 1.0 < seconds < 5.0


def test_say_with_an_unknown_voice_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = _eva("say", "Hi.", "--voice", "nobody", data_dir=tmp_path)
    assert result.returncode == 1
    assert "unknown voice 'nobody'" in result.stderr and "Traceback" not in result.stderr


def test_chat_prints_each_reply_and_its_latency(tmp_path: Path) -> None:
    result = _eva("chat", stdin="Hi Eva, I just got a new puppy!\n\n", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    reply_line = next(line for line in result.stdout.splitlines() if "eva> " in line)
    assert len(reply_line.split("eva> ", 1)[1].strip()) > 3
    assert "first audio" in result.stdout and "total" in result.stdout
