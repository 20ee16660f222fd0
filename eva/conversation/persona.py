"""Who Eva is: a name and a system prompt, read from a TOML file the user can replace."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from eva.config import Settings
from eva.engines.voices import primary_language


@dataclass(frozen=True)
class Persona:
    name: str
    prompt: str
    language: str


def _packaged(language: str) -> str:
    folder = resources.files("eva.conversation") / "personas"
    wanted = folder / f"{primary_language(language)}.toml"
    return (wanted if wanted.is_file() else folder / "en.toml").read_text(encoding="utf-8")


def load_persona(settings: Settings) -> Persona:
    if settings.persona_file is not None:
        text = Path(settings.persona_file).expanduser().read_text(encoding="utf-8")
    else:
        text = _packaged(settings.language)
    data = tomllib.loads(text)
    prompt = settings.system_prompt or str(data["prompt"]).strip()
    return Persona(
        name=str(data.get("name", "Eva")),
        prompt=prompt,
        language=str(data.get("language", settings.language)),
    )
