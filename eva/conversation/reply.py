"""One thing Eva says (a reply, the greeting, a backchannel, a check-in) and its one state.

    speculative ──commit──▶ committed ──first audio──▶ playing ⇄ paused
         │                      │                          │
         └──discard──▶ discarded └──────interrupt──────────┴──▶ interrupted
                        ▲       │ (retract: the person went on before any of it was heard)
                        └───────┘
                                 (finished whole)──────────────▶ done

A speculative reply is being prepared while the person may still go on; nothing of it
reaches them until it is committed. ``interrupt`` is the one switch that stops a reply: it
cancels the engines (``control``), wakes every worker waiting on the reply, and decides how
it ends. What the person heard is recorded here, from what playback reports, and nowhere
else.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from eva.conversation.turn import TurnControl, TurnTimer, display_text

Purpose = Literal["reply", "greeting", "reengage", "backchannel"]


class ReplyState(StrEnum):
    SPECULATIVE = "speculative"
    COMMITTED = "committed"
    PLAYING = "playing"
    PAUSED = "paused"
    DONE = "done"
    INTERRUPTED = "interrupted"
    DISCARDED = "discarded"


_LIVE = (ReplyState.COMMITTED, ReplyState.PLAYING)  # audio may go out
_OVER = (ReplyState.DONE, ReplyState.INTERRUPTED, ReplyState.DISCARDED)


@dataclass(eq=False)
class ReplyHandle:
    id: str
    purpose: Purpose = "reply"
    user_text: str | None = None  # what it answers, once known (None for Eva's own lines)
    speech_end_at: float | None = None  # when the person stopped speaking (spoken turns)
    turn_ended_at: float | None = None  # when Eva decided their turn had ended
    state: ReplyState = ReplyState.SPECULATIVE
    control: TurnControl = field(default_factory=TurnControl)
    timer: TurnTimer = field(default_factory=TurnTimer)
    heard: list[str] = field(default_factory=list)
    error: str | None = None  # the transcription failed: said once the turn is committed
    # Set while audio may go out, and once the reply is over (so that waiters wake).
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)  # replaced at each change

    # --- transitions (made by the session core; workers only read)

    def commit(self) -> None:
        if self.state is ReplyState.SPECULATIVE:
            self._become(ReplyState.COMMITTED)

    def start_playing(self) -> None:
        if self.state is ReplyState.COMMITTED:
            self._become(ReplyState.PLAYING)

    def pause(self) -> None:
        if self.state in _LIVE:
            self._become(ReplyState.PAUSED)

    def resume(self) -> None:
        if self.state is ReplyState.PAUSED:
            self._become(ReplyState.PLAYING)

    def interrupt(self) -> None:
        """Stop it now: a speculative reply is discarded, any other ends as interrupted."""
        if self.state in _OVER:
            return
        self.control.cancel()
        speculative = self.state is ReplyState.SPECULATIVE
        self._become(ReplyState.DISCARDED if speculative else ReplyState.INTERRUPTED)

    def retract(self) -> None:
        """Take back a committed reply that nobody has heard yet: the person was not done
        after all. It ends as if it had never been committed (nothing is stored)."""
        if self.state is ReplyState.COMMITTED:
            self.control.cancel()
            self._become(ReplyState.DISCARDED)

    def finish(self) -> None:
        if self.state not in _OVER:
            self._become(ReplyState.DONE)

    def _become(self, state: ReplyState) -> None:
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()
        if state in _LIVE or state in _OVER:
            self._flowing.set()
        else:
            self._flowing.clear()

    # --- what workers ask

    @property
    def committed(self) -> bool:
        return self.state not in (ReplyState.SPECULATIVE, ReplyState.DISCARDED)

    @property
    def over(self) -> bool:
        return self.state in _OVER

    @property
    def stopped(self) -> bool:
        return self.state in (ReplyState.INTERRUPTED, ReplyState.DISCARDED)

    async def flowing(self) -> bool:
        """Wait until audio may go out; False once the reply was stopped instead."""
        while True:
            await self._flowing.wait()
            if self.state in _LIVE:
                return True
            if self.state in _OVER:
                return False

    async def changes(self, within_s: float) -> None:
        """Sleep ``within_s`` seconds, or less if the state changes meanwhile."""
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), within_s)

    def record_heard(self, clause: str, fraction: float) -> None:
        """A clause went out whole, or the share of its words matching the share of its
        audio sent before a barge-in, marked as cut off."""
        if fraction <= 0 or self.heard[-1:] == [clause]:
            return
        if fraction >= 1:
            self.heard.append(clause)
            return
        words = clause.split()
        self.heard.append(" ".join(words[: max(1, round(len(words) * fraction))]) + "—")

    @property
    def heard_text(self) -> str:
        return display_text(" ".join(self.heard))
