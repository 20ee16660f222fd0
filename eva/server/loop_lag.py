"""How late the event loop runs what is due: the ``event_loop_lag`` stage of ``/stats``.

Everything a conversation does between model calls (reading frames, voice activity,
telling a refused turn "busy", pacing audio) waits for the one event loop; anything that
holds it (a long garbage collection, a slow call made on it by mistake) delays them all by
as much. A sleeper that measures how late it wakes shows that delay to an operator, on
``/metrics`` as ``eva_stage_seconds{stage="event_loop_lag"}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from eva.stats import LatencyStats

# Ten probes a second: a stall of 100 ms (the refusal target) is seen most times it
# happens, and ten wake-ups a second cost well under a millisecond of the loop.
LAG_PROBE_PERIOD_S = 0.1
STAGE = "event_loop_lag"


async def watch_loop_lag(
    stats: LatencyStats,
    period_s: float = LAG_PROBE_PERIOD_S,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    """Record, until cancelled, how much later than asked each sleep of ``period_s`` ends."""
    while True:
        asked = clock()
        await asyncio.sleep(period_s)
        late_s = clock() - asked - period_s
        stats.record({STAGE: max(0.0, late_s) * 1000})
