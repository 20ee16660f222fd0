"""The backend registry: names to modules, lazily, with clear failures."""

from __future__ import annotations

import sys

import pytest

from eva.config import Settings
from eva.engines import registry
from eva.engines.base import EngineError, MissingDependencyError


def test_every_registered_module_has_a_create_function() -> None:
    import importlib

    for (kind, name), module_name in registry.BACKENDS.items():
        if name == "pysilero":
            continue  # importing it is fine, but loading it beside llama.cpp is not
        assert callable(importlib.import_module(module_name).create), (kind, name)


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(EngineError, match="known: llamaserver, llamacpp, openai"):
        registry.create("llm", "gpt9", Settings())


def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BACKENDS, ("tts", "ghost"), "eva.engines.tts_ghost_backend")
    monkeypatch.setitem(sys.modules, "eva.engines.tts_ghost_backend", None)
    with pytest.raises(MissingDependencyError, match="pip install"):
        registry.create("tts", "ghost", Settings())
