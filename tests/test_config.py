"""Settings from the environment and from a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from eva.config import Settings


def test_defaults_are_the_offline_embedded_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVA_LLM_MODEL", raising=False)  # the suite's fast brain
    monkeypatch.delenv("EVA_LLM_BACKENDS", raising=False)
    settings = Settings()
    assert settings.llm_backends == ["llamaserver"]
    assert settings.llm_model == "qwen2.5-coder-1.5b" and settings.llm_slots == 4
    assert settings.stt_model == "tiny.en" and settings.tts_backends == ["piper", "espeak"]
    assert settings.host == "127.0.0.1"


def test_environment_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVA_LLM_BACKENDS", "openai, llamacpp")
    monkeypatch.setenv("EVA_PORT", "9001")
    settings = Settings()
    assert settings.llm_backends == ["openai", "llamacpp"] and settings.port == 9001


def test_a_toml_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "eva.toml"
    config.write_text('language = "fr"\nstt_model = "base"\nport = 7000\n')
    monkeypatch.setenv("EVA_CONFIG", str(config))
    monkeypatch.setenv("EVA_PORT", "7001")
    settings = Settings()
    assert (settings.language, settings.stt_model, settings.port) == ("fr", "base", 7001)


def test_french_persona_is_chosen_by_language() -> None:
    from eva.conversation.persona import load_persona

    assert "Tu es Eva" in load_persona(Settings(language="fr-FR")).prompt
    assert "You are Eva" in load_persona(Settings()).prompt


def test_a_persona_file_replaces_the_packaged_one(tmp_path: Path) -> None:
    from eva.conversation.persona import load_persona

    persona = tmp_path / "me.toml"
    persona.write_text('name = "Ada"\nprompt = "You are Ada."\n')
    loaded = load_persona(Settings(persona_file=persona))
    assert (loaded.name, loaded.prompt) == ("Ada", "You are Ada.")


def test_a_model_server_niceness_that_would_raise_its_priority_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVA_LLM_NICE", "-5")  # would need CAP_SYS_NICE: the server would not start
    with pytest.raises(ValidationError, match="llm_nice"):
        Settings()
