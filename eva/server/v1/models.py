"""``GET /v1/models``: what Eva serves, under ids the OpenAI SDKs and their users know.

The catalogue is the one place that says which ``model`` a request may name on each route:
``eva`` is the companion herself; the language model is also there by its own name, for
plain completions of the messages as given; the recognizer and the voices answer to their
own names and to OpenAI's (``whisper-1``, ``tts-1``), so that a client works unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends

from eva.config import Settings
from eva.conversation.service import Conversation
from eva.server.deps import conversation
from eva.server.errors import ApiError

router = APIRouter()
Service = Annotated[Conversation, Depends(conversation)]

COMPANION = "eva"
OWNER = "eva"
# What OpenAI calls its recognizers and voices: the SDKs' examples and many apps send these.
STT_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# The time the catalogue was made: OpenAI's ``created`` is a model's release, unknown here.
_CREATED = int(time.time())

Kind = Literal["chat", "stt", "tts"]


@dataclass(frozen=True)
class Catalogue:
    companion: str
    language_model: str
    recognizer: str
    voices: str

    @classmethod
    def of(cls, settings: Settings, service: Conversation) -> Catalogue:
        return cls(
            companion=COMPANION,
            language_model=_model_name(settings.llm_model),
            recognizer=f"whisper-{Path(settings.stt_model).name}",
            voices=service.engines.tts.engines[0].name,
        )

    def ids(self, kind: Kind) -> tuple[str, ...]:
        if kind == "chat":
            return (self.companion, self.language_model)
        if kind == "stt":
            return (self.recognizer, *STT_ALIASES)
        return (self.voices, *TTS_ALIASES)

    def all_ids(self) -> list[str]:
        return [*self.ids("chat"), *self.ids("stt"), *self.ids("tts")]

    def check(self, kind: Kind, model: str) -> str:
        """``model`` when this route serves it; else the 404 OpenAI gives."""
        if model not in self.ids(kind):
            served = ", ".join(self.ids(kind))
            raise ApiError(
                404,
                "model_not_found",
                f"the model {model!r} does not exist here; this route serves: {served}",
                param="model",
            )
        return model


def _model_name(configured: str) -> str:
    """A packaged model's name as is; a GGUF path by its file name without ``.gguf``."""
    name = Path(configured).name
    return name.removesuffix(".gguf") if name.endswith(".gguf") else name


def catalogue(service: Service) -> Catalogue:
    return Catalogue.of(service.settings, service)


Models = Annotated[Catalogue, Depends(catalogue)]


def _entry(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": OWNER}


@router.get("/v1/models", summary="The models Eva serves (OpenAI's list)")
async def list_models(models: Models) -> dict[str, Any]:
    return {"object": "list", "data": [_entry(model_id) for model_id in models.all_ids()]}


@router.get("/v1/models/{model_id}", summary="One model (OpenAI's retrieve)")
async def retrieve_model(model_id: str, models: Models) -> dict[str, Any]:
    if model_id not in models.all_ids():
        raise ApiError(404, "model_not_found", f"the model {model_id!r} does not exist here")
    return _entry(model_id)
