"""OpenAI's API under ``/v1``, with the same keys, limits and error shape as Eva's own
routes (docs/openai.md: what is honoured, what is ignored and why, what is refused)."""

from fastapi import APIRouter

from eva.server.v1 import chat, client_secrets, models, speech, transcription

router = APIRouter(tags=["OpenAI API"])
router.include_router(models.router)
router.include_router(chat.router)
router.include_router(speech.router)
router.include_router(transcription.router)
router.include_router(client_secrets.router)
