"""The model server dies under a running Eva: the person gets an error event, Eva stays up,
and the next turn is answered by the restarted server."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx

from eva.engines.llm_llamaserver import LlamaServerLLM
from eva.engines.runtime import Engines
from tests.server.ws_client import VoiceClient
from tests.support import ServerThread

_RESTART_WITHIN_S = 60.0


async def _until(condition: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_killed_model_server_is_an_error_event_and_the_next_turn_is_answered(
    server: ServerThread, engines: Engines
) -> None:
    llm = engines.llm
    assert isinstance(llm, LlamaServerLLM)  # the default engine, with the fast brain
    client = await VoiceClient.connect(server.base_url)
    await client.wait_for("session.created")
    pid = llm.server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: not llm.server.ready.is_set(), 5, "the death went unnoticed")
    await client.send_json({"type": "text", "text": "Hello, are you there?"})
    error = await client.wait_for("error", within=10)
    assert error["code"] == "backend_unavailable" and "restarting" in error["message"]
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/health")).status_code == 200  # Eva herself never went down
    await _until(
        lambda: llm.server.ready.is_set() and llm.server.pid not in (None, pid),
        _RESTART_WITHIN_S,
        f"the model server was not restarted:\n{llm.server.log_tail()}",
    )
    await client.send_json({"type": "text", "text": "And now, can you hear me?"})
    done = await client.wait_for("response.done", within=60)
    assert done["text"].strip() and not done["interrupted"]
    await client.close()
