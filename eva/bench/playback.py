"""What a listener hears of a reply as its audio arrives: the gaps in its speech.

Eva sends reply audio at real time plus a lead (``AUDIO_LEAD_S``, eva/server/audio_out.py)
and the page's player (``Player`` in eva/web/audio.js) butts each chunk against the one
before, starting ``JITTER_BUFFER_S`` after the first. A chunk that arrives after the player
ran dry is heard as a gap: the voice stops mid-reply, and the player starts again with a
fresh cushion. Under load this is what a reply that gives way to others' openings
(eva/engines/opening_priority.py) would cost if its speech were not written far enough
ahead; the load test counts it from the arrival times alone (sans-I/O, no clock of its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eva.conversation.turn import AUDIBLE_GAP_S  # the gap the pipeline itself counts

# The page's cushion at the start of a reply and after a gap (JITTER_BUFFER_S in audio.js).
JITTER_BUFFER_S = 0.08


@dataclass
class PlaybackGaps:
    """The gaps a player would make in one reply, fed each chunk's arrival and length."""

    rate: int  # samples a second of the 16-bit mono audio
    gaps_s: list[float] = field(default_factory=list)  # the audible ones
    gaps_after_s: list[float] = field(default_factory=list)  # speech heard before each
    _next_start: float | None = None  # when the player starts the next chunk
    _heard_s: float = 0.0  # the reply's audio received so far

    def arrived(self, at: float, pcm_bytes: int) -> None:
        seconds = pcm_bytes / 2 / self.rate
        if self._next_start is None:
            self._next_start = at + JITTER_BUFFER_S
        elif at > self._next_start:  # the player ran dry before this chunk came
            restart = at + JITTER_BUFFER_S
            if restart - self._next_start >= AUDIBLE_GAP_S:
                self.gaps_s.append(restart - self._next_start)
                self.gaps_after_s.append(self._heard_s)
            self._next_start = restart
        self._next_start += seconds
        self._heard_s += seconds
