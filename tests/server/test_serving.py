"""``eva serve`` and EVA_API_KEYS as an operator meets them: malformed keys and an exposed
host without keys are refused at start with a clear message; the first line says where Eva
listens and whether a key is needed."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from eva.config import Settings
from eva.server.auth import ApiKeys, parse_api_keys
from eva.server.serving import (
    ExposureError,
    check_exposure,
    freeze_what_was_loaded,
    is_loopback,
    startup_line,
)
from tests.support import free_port

KEY = "k3y-0123456789abcdef"


def _serve(*args: str, env: dict[str, str], data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "eva.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "EVA_DATA_DIR": str(data_dir), "HOME": str(data_dir), **env},
    )


def test_serve_refuses_a_non_loopback_host_without_keys(tmp_path: Path) -> None:
    process = _serve("--host", "0.0.0.0", env={}, data_dir=tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "refusing to listen on 0.0.0.0 without API keys" in err
    assert "EVA_ALLOW_UNAUTHENTICATED" in err and "Traceback" not in err


def test_serve_refuses_malformed_keys_without_printing_them(tmp_path: Path) -> None:
    process = _serve(env={"EVA_API_KEYS": f"alice:{KEY},bob{KEY}"}, data_dir=tmp_path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "EVA_API_KEYS pair 2 is not of the form owner:key" in err
    assert KEY not in err + out


def test_serve_says_first_where_it_listens_and_that_keys_are_required(tmp_path: Path) -> None:
    port = free_port()
    process = _serve("--port", str(port), env={"EVA_API_KEYS": f"alice:{KEY}"}, data_dir=tmp_path)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert first == f"Eva listens on http://127.0.0.1:{port}; API keys required (1 keys, 1 owners)"


def test_exposure_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("eva.example")
    check_exposure(Settings(host="127.0.0.1"))
    check_exposure(Settings(host="0.0.0.0", api_keys=f"a:{KEY}"))  # type: ignore[arg-type]
    check_exposure(Settings(host="0.0.0.0", allow_unauthenticated=True))
    with pytest.raises(ExposureError):
        check_exposure(Settings(host="192.168.1.20"))
    assert "this machine only" in startup_line(Settings())
    assert "UNAUTHENTICATED" in startup_line(Settings(host="0.0.0.0", allow_unauthenticated=True))


def test_keys_come_from_the_environment_as_owner_key_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVA_API_KEYS", f" alice:{KEY} , bob:{KEY}-2,alice:{KEY}-3")
    monkeypatch.setenv("EVA_ALLOWED_ORIGINS", "https://a.example,https://b.example")
    settings = Settings()
    pairs = [pair.get_secret_value() for pair in settings.api_keys]
    assert parse_api_keys(pairs) == {KEY: "alice", f"{KEY}-2": "bob", f"{KEY}-3": "alice"}
    assert KEY not in repr(settings)  # secrets stay out of reprs and tracebacks
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    "value,message",
    [
        (f"alice{KEY}", "pair 1 is not of the form owner:key"),
        (f"alice:{KEY},:{KEY}x", "pair 2 is not of the form owner:key"),
        (f"al ice:{KEY}", "pair 1: the owner must be"),
        ("alice:short", "pair 1 (alice): the key is shorter than 16"),
        (f"alice:{KEY},bob:{KEY}", "pair 2 (bob) repeats the key of alice"),
    ],
)
def test_malformed_or_duplicate_keys_are_refused_clearly(value: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(api_keys=value)  # type: ignore[arg-type]
    assert message in str(refused.value)
    assert KEY not in str(refused.value)


def test_key_lookup_finds_the_owner_of_exact_keys_only() -> None:
    keys = ApiKeys({KEY: "alice", f"{KEY}-2": "bob"})
    assert keys.required and not ApiKeys({}).required
    assert keys.owner(KEY) == "alice" and keys.owner(f"{KEY}-2") == "bob"
    assert keys.owner(KEY[:-1]) is None and keys.owner(KEY + "x") is None
    assert keys.owner("") is None and keys.owner(None) is None


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_what_was_loaded_is_left_out_of_later_collections_and_its_garbage_collected() -> None:
    loaded = [[index] for index in range(10_000)]  # stands for what the engines made
    _Cycle()  # garbage from start-up, only a collection frees it
    try:
        freeze_what_was_loaded()
        assert not any(isinstance(thing, _Cycle) for thing in gc.get_objects())
        full_collections_walk = {id(thing) for thing in gc.get_objects(generation=2)}
        assert id(loaded[0]) not in full_collections_walk
        made_later = [[0] for _ in range(1_000)]
        gc.collect()
        assert id(made_later[0]) in {id(thing) for thing in gc.get_objects(generation=2)}
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
