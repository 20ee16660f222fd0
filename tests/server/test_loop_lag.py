"""The event loop's lag, as /stats and /metrics show it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from eva.server.loop_lag import STAGE, watch_loop_lag
from eva.stats import LatencyStats


async def test_a_loop_held_up_is_recorded_as_lag_and_a_free_one_as_little() -> None:
    stats = LatencyStats()
    watcher = asyncio.create_task(watch_loop_lag(stats, period_s=0.01))
    await asyncio.sleep(0.1)  # free: the probes wake about on time
    free = stats.snapshot()["stages"][STAGE]
    # Something holds the loop for 200 ms, as a full garbage collection did.
    time.sleep(0.2)  # noqa: ASYNC251
    await asyncio.sleep(0.05)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    held = stats.snapshot()["stages"][STAGE]
    assert free["count"] >= 3 and free["p50"] < 50
    assert held["max"] >= 150  # the probe due during the 200 ms hold woke that late
