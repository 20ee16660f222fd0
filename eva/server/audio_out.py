"""The one paced audio output of a /ws session: it owns the playhead.

Reply audio is sent at real time plus a small lead, so that a barge-in stops what the
person hears within one lead, and what was sent is what was heard. One thing plays at a
time, in the order asked (an acknowledgement, then the reply it precedes). ``pause`` and
``resume`` follow the client, which holds what it has not played yet when Eva pauses;
``clear`` is a barge-in: the client drops what it holds, and the playhead is now.
"""

from __future__ import annotations

import asyncio
import time

from eva.conversation.reply import ReplyHandle
from eva.engines.base import Int16Audio
from eva.server.outbox import Outbox

# Reply audio goes out in 40 ms frames: small enough to stop promptly, big enough that
# the per-frame overhead is nothing.
AUDIO_FRAME_MS = 40
# How far ahead of real time reply audio is sent: covers network jitter, and bounds what
# the client still plays after a barge-in.
AUDIO_LEAD_S = 0.25


class PacedOutput:
    def __init__(self, out: Outbox) -> None:
        self.out = out
        self.playhead = 0.0  # monotonic time when the client will have played all sent audio
        self._held_s = 0.0  # what the client holds (sent ahead of real time) at a pause
        self._turn = asyncio.Lock()

    async def play(self, reply: ReplyHandle, pcm: Int16Audio, rate: int) -> float:
        """Send one chunk as it would play, while ``reply`` may be heard; the fraction of it
        sent (less than 1 when the reply was stopped part-way)."""
        frame = max(1, rate * AUDIO_FRAME_MS // 1000)
        async with self._turn:
            for start in range(0, len(pcm), frame):
                while True:
                    if not await reply.flowing() or not self.out.open:
                        return start / len(pcm)
                    now = time.monotonic()
                    self.playhead = max(self.playhead, now)
                    ahead = self.playhead - now - AUDIO_LEAD_S
                    if ahead <= 0:
                        break
                    await reply.changes(ahead)  # a stop or a pause wakes it at once
                piece = pcm[start : start + frame]
                await self.out.audio(piece)
                self.playhead += len(piece) / rate
        return 1.0

    def pause(self) -> None:
        self._held_s = max(0.0, self.playhead - time.monotonic())

    def resume(self) -> None:
        self.playhead = time.monotonic() + self._held_s

    def clear(self) -> None:
        self.playhead = time.monotonic()
