"""Speech before text: an LLM in another process is paused while speech is synthesized."""

from __future__ import annotations

import threading
import time

from eva.engines.threads import MAX_LLM_PAUSE_S, SpeechPriority


class _Calls:
    def __init__(self) -> None:
        self.log: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def pause(self) -> None:
        with self.lock:
            self.log.append(("pause", time.monotonic()))

    def resume(self) -> None:
        with self.lock:
            self.log.append(("resume", time.monotonic()))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]


def test_overlapping_syntheses_pause_the_llm_once_and_resume_it_when_the_last_ends() -> None:
    calls = _Calls()
    priority = SpeechPriority(calls.pause, calls.resume)
    with priority.speaking():
        with priority.speaking():  # a second session's clause at the same time
            assert calls.kinds() == ["pause"]
        assert calls.kinds() == ["pause"]
    assert calls.kinds() == ["pause", "resume"]
    with priority.speaking():
        pass
    assert calls.kinds() == ["pause", "resume", "pause", "resume"]


def test_a_long_synthesis_resumes_the_llm_after_the_longest_pause() -> None:
    calls = _Calls()
    priority = SpeechPriority(calls.pause, calls.resume)
    with priority.speaking():
        started = time.monotonic()
        while len(calls.log) < 2:
            assert time.monotonic() - started < MAX_LLM_PAUSE_S + 2, "never resumed"
            time.sleep(0.01)
        waited = calls.log[1][1] - calls.log[0][1]
        assert MAX_LLM_PAUSE_S - 0.01 <= waited < MAX_LLM_PAUSE_S + 0.5
    assert calls.kinds() == ["pause", "resume", "resume"]  # the second one is harmless
