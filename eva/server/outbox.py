"""Everything a /ws session sends, serialised, bounded, and with a deadline.

The send buffer of one connection is bounded by the server's transport: once uvicorn's
write buffer is over its high-water mark (64 KiB) and the kernel's socket buffer is full, a
send waits until the client reads. A client that does not read for ``stall_s`` is dropped:
its session ends (its reply is cancelled, its engine work released) and a close frame
with ``CLOSE_SLOW_CLIENT`` is queued behind the data already buffered, so a client that
reads again learns why. Nothing a slow client does holds the engines or other sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.types import Message

from eva.engines.base import Int16Audio

log = logging.getLogger("eva.ws")

# A private close code: the client did not read what it was sent for too long, and its send
# buffer stayed full (by analogy with HTTP 507, Insufficient Storage).
CLOSE_SLOW_CLIENT = 4507
# How long the close frame of a dropped client may wait for its buffer to drain: a client
# that reads again gets it; one that never reads does not hold the session any longer.
_CLOSE_GRACE_S = 10.0


class Outbox:
    """All sends to one socket, serialised; a vanished or stalled client makes them no-ops."""

    def __init__(self, socket: WebSocket, stall_s: float) -> None:
        self.socket = socket
        self.stall_s = stall_s
        self.open = True
        self.dropped = asyncio.Event()  # set once the client stalled and was dropped
        self._lock = asyncio.Lock()
        self._drop_wait: asyncio.Task[bool] | None = None
        self._closer: asyncio.Task[None] | None = None

    async def json(self, data: dict[str, Any]) -> None:
        await self._send(text=json.dumps(data, ensure_ascii=False))

    async def audio(self, pcm: Int16Audio) -> None:
        await self._send(data=pcm.astype("<i2").tobytes())

    async def receive(self) -> Message | None:
        """The client's next ASGI message, or None once it was dropped for not reading."""
        if self.dropped.is_set():
            return None
        if self._drop_wait is None:
            self._drop_wait = asyncio.create_task(self.dropped.wait())
        receiving = asyncio.ensure_future(self.socket.receive())
        await asyncio.wait({receiving, self._drop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if receiving.done():
            return receiving.result()
        receiving.cancel()  # uvicorn's receive is a queue read: safe to abandon
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await receiving
        return None

    async def close(self) -> None:
        """Release what the outbox holds; a dropped client's close frame gets its grace."""
        if self._drop_wait is not None:
            self._drop_wait.cancel()
            await asyncio.gather(self._drop_wait, return_exceptions=True)
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)

    async def _send(self, text: str | None = None, data: bytes | None = None) -> None:
        if not self.open:
            return
        async with self._lock:
            if not self.open:
                return
            try:
                if text is not None:
                    sending = self.socket.send_text(text)
                else:
                    sending = self.socket.send_bytes(data or b"")
                await asyncio.wait_for(sending, self.stall_s)
            except TimeoutError:
                self._drop()
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.open = False

    def _drop(self) -> None:
        log.warning("dropping a client that did not read for %.0f s", self.stall_s)
        self.open = False
        self.dropped.set()
        self._closer = asyncio.create_task(self._close_slow())

    async def _close_slow(self) -> None:
        try:
            await asyncio.wait_for(
                self.socket.close(CLOSE_SLOW_CLIENT, "the client did not read for too long"),
                _CLOSE_GRACE_S,
            )
        except (TimeoutError, Exception) as exc:  # it never read again, or it left
            log.debug("the close frame to a dropped client was not sent: %r", exc)
