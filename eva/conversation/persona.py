"""Who Eva is: a TOML file the user can replace (``EVA_PERSONA_FILE``).

It gives her name, the voice she speaks with, who she is and how she speaks (together the
system prompt), and a few example exchanges that go to the LLM before the history: a
135M model imitates examples far better than it follows instructions. Everything here is
paid for in prompt tokens on every turn, so the packaged personas stay short.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eva.config import Settings
from eva.conversation.prompt import prompt_prefix
from eva.engines.base import ChatMessage
from eva.engines.voices import primary_language

# Example exchanges cost prompt tokens on every turn and the context holds 2048 tokens.
MAX_EXAMPLES = 6
# A prompt this long already takes a noticeable share of the context and of the
# first-token time of a small model.
MAX_PROMPT_CHARS = 2000


class PersonaError(ValueError):
    """The persona file is missing, not TOML, or not a persona; the message says where."""


class Exchange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=500)
    assistant: str = Field(min_length=1, max_length=500)


class PersonaFile(BaseModel):
    """The fields of a persona file (see eva/conversation/personas/en.toml)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("Eva", min_length=1, max_length=60)
    language: str | None = None
    voice: str = ""  # a voice id from GET /voices; "" lets the language choose
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    style: str = Field("", max_length=MAX_PROMPT_CHARS)
    examples: list[Exchange] = Field(default_factory=list, max_length=MAX_EXAMPLES)


@dataclass(frozen=True)
class Persona:
    name: str
    prompt: str  # the system prompt: who she is, then how she speaks
    language: str
    voice: str = ""
    examples: tuple[ChatMessage, ...] = ()  # user/assistant pairs, in order

    @property
    def prefix(self) -> tuple[ChatMessage, ...]:
        """What every new conversation's prompt starts with."""
        return prompt_prefix(self.prompt, self.examples)


def _packaged(language: str) -> tuple[str, str]:
    folder = resources.files("eva.conversation") / "personas"
    wanted = folder / f"{primary_language(language)}.toml"
    chosen = wanted if wanted.is_file() else folder / "en.toml"
    return chosen.read_text(encoding="utf-8"), str(chosen)


def parse_persona(text: str, source: str) -> PersonaFile:
    try:
        return PersonaFile.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise PersonaError(f"persona file {source} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(file)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PersonaError(f"persona file {source} is invalid: {problems}") from None


def load_persona(settings: Settings) -> Persona:
    if settings.persona_file is not None:
        path = Path(settings.persona_file).expanduser()
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise PersonaError(f"cannot read persona file {path}: {exc.strerror}") from None
    else:
        text, source = _packaged(settings.language)
    data = parse_persona(text, source)
    prompt = settings.system_prompt or " ".join(
        part.strip() for part in (data.prompt, data.style) if part.strip()
    )
    examples: list[ChatMessage] = []
    # A system prompt set in the settings is a different character: the file's examples
    # would contradict it.
    for exchange in [] if settings.system_prompt else data.examples:
        examples += [
            ChatMessage("user", exchange.user.strip()),
            ChatMessage("assistant", exchange.assistant.strip()),
        ]
    return Persona(
        name=data.name,
        prompt=prompt,
        language=data.language or settings.language,
        voice=data.voice,
        examples=tuple(examples),
    )
