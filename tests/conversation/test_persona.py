"""The persona file: what it holds, how it is checked, and how it reaches the LLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from eva.config import Settings
from eva.conversation.persona import PersonaError, load_persona
from eva.conversation.prompt import build_messages
from eva.engines.base import ChatMessage
from eva.store.sqlite import MessageRecord


def test_the_default_eva_is_warm_curious_brief_and_asks_back() -> None:
    persona = load_persona(Settings())
    assert persona.name == "Eva" and persona.voice == "en_US-joe-medium"
    assert "warm and curious" in persona.prompt and "short question back" in persona.prompt
    roles = [m.role for m in persona.examples]
    assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
    assert all(m.content.endswith("?") for m in persona.examples if m.role == "assistant")
    # Every token here is paid on each turn: the whole persona stays small.
    size = len(persona.prompt) + sum(len(m.content) for m in persona.examples)
    assert size < 600


def test_examples_go_between_the_system_prompt_and_the_history() -> None:
    persona = load_persona(Settings())
    history = [
        MessageRecord(1, "s", "user", "Hi.", 0.0, None, False),
        MessageRecord(2, "s", "assistant", "Hello!", 0.0, None, False),
    ]
    messages = build_messages(persona.prompt, history, "How are you?", persona.examples)
    assert messages[0].role == "system"
    assert messages[1 : 1 + len(persona.examples)] == list(persona.examples)
    assert [m.content for m in messages[-3:]] == ["Hi.", "Hello!", "How are you?"]


def test_a_new_conversations_prompt_begins_with_the_prefix_the_model_server_warms() -> None:
    persona = load_persona(Settings())
    messages = build_messages(persona.prompt, [], "Hello!", persona.examples)
    assert tuple(messages[: len(persona.prefix)]) == persona.prefix
    assert messages[len(persona.prefix) :] == [ChatMessage("user", "Hello!")]


def test_a_user_persona_file_sets_name_voice_style_and_examples(tmp_path: Path) -> None:
    path = tmp_path / "ada.toml"
    path.write_text(
        'name = "Ada"\nvoice = "espeak-en-gb"\nprompt = "You are Ada."\n'
        'style = "Speak like a sea captain."\n'
        '[[examples]]\nuser = "Hello"\nassistant = "Ahoy there! How fares your day?"\n',
        encoding="utf-8",
    )
    persona = load_persona(Settings(persona_file=path))
    assert persona.name == "Ada" and persona.voice == "espeak-en-gb"
    assert persona.prompt == "You are Ada. Speak like a sea captain."
    assert [m.content for m in persona.examples] == ["Hello", "Ahoy there! How fares your day?"]
    # A system prompt in the settings is another character: the file's examples go.
    overridden = load_persona(Settings(persona_file=path, system_prompt="You are Bob."))
    assert overridden.prompt == "You are Bob." and overridden.examples == ()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('name = "Ada"\n', "prompt: Field required"),
        ('prompt = "x"\ncolour = "blue"\n', "colour: Extra inputs are not permitted"),
        ('prompt = "x"\n[[examples]]\nuser = "hi"\n', "examples.0.assistant: Field required"),
        ('prompt = "x"\nexamples = "none"\n', "examples"),
        ("prompt = \n", "not valid TOML"),
    ],
)
def test_a_bad_persona_file_gets_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PersonaError, match=r"bad\.toml") as error:
        load_persona(Settings(persona_file=path))
    assert message in str(error.value)


def test_a_missing_persona_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match=r"cannot read persona file .*nowhere\.toml"):
        load_persona(Settings(persona_file=tmp_path / "nowhere.toml"))
