"""The conversation service under load: what it sheds first, with the real models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eva.conversation.admission import Channel
from eva.conversation.service import Conversation
from eva.conversation.turn import SHARED_REPLY_TOKENS, TurnDone
from eva.engines.runtime import Engines
from eva.stats import LatencyStats
from eva.store.sqlite import Store
from tests.conversation.test_memory_conversation import Recording
from tests.support import make_settings


@pytest.fixture
def service(tmp_path: Path, engines: Engines) -> Iterator[Conversation]:
    settings = make_settings(tmp_path)
    store = Store(settings.db_path)
    yield Conversation(settings, engines, store, LatencyStats())
    store.close()


async def test_a_partial_transcription_is_spared_only_while_the_stt_is_free(
    service: Conversation,
) -> None:
    assert service.can_spare_transcription()
    speech = (0.1 * np.sin(np.linspace(0, 2000 * np.pi, 3 * 16000))).astype(np.float32)
    final = asyncio.create_task(service.transcribe(speech))
    await asyncio.sleep(0)  # queued on the STT thread: a final transcript goes first
    assert not service.can_spare_transcription()
    await final
    assert service.can_spare_transcription()


async def test_a_partial_transcription_is_not_spared_while_the_model_writes_any_turn(
    service: Conversation,
) -> None:
    gate = service.gate
    ticket = gate.admit("person", Channel.TYPED)
    assert gate.capacity().turns_running == 1
    assert not service.can_spare_transcription()  # the cores are the model's
    gate.release(ticket)
    assert service.can_spare_transcription()


async def test_a_reply_written_while_others_share_the_model_is_kept_short(
    tmp_path: Path, engines: Engines
) -> None:
    llm = Recording(engines.llm)
    settings = make_settings(tmp_path, memory_model_extraction=False)  # no other LLM calls
    store = Store(settings.db_path)
    service = Conversation(settings, replace(engines, llm=llm), store, LatencyStats())
    session = (await service.open_session(None)).id
    try:
        alone = [e async for e in service.reply(session, "Hello there.", audio=False)]
        other = service.gate.admit("someone else", Channel.TYPED)  # holds a slot meanwhile
        shared = [e async for e in service.reply(session, "How are you?", audio=False)]
        service.gate.release(other)
    finally:
        store.close()
    assert isinstance(alone[-1], TurnDone) and isinstance(shared[-1], TurnDone)
    assert llm.max_tokens == [settings.max_reply_tokens, SHARED_REPLY_TOKENS]
    assert settings.max_reply_tokens > SHARED_REPLY_TOKENS
