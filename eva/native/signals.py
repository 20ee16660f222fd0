"""What a child process's death by a signal means, in words a person can act on."""

from __future__ import annotations

import signal

_SIGNAL_MEANING = {
    signal.SIGILL: "the CPU met an instruction it cannot run (a library built for another CPU)",
    signal.SIGSEGV: "a memory fault inside native code",
    signal.SIGBUS: "a bus error inside native code (often a truncated or corrupt model file)",
    signal.SIGABRT: "native code aborted (an assertion, or memory ran out)",
    signal.SIGKILL: "it was killed (often by the kernel when memory ran out)",
    signal.SIGFPE: "an arithmetic fault inside native code",
}


def signal_meaning(signum: int) -> str:
    try:
        return _SIGNAL_MEANING.get(signal.Signals(signum), "a fatal signal")
    except ValueError:
        return "a fatal signal"


def describe_exit(returncode: int) -> str:
    """``Popen.returncode`` in words: "exit status 1", "SIGKILL (it was killed ...)"."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"{name} ({signal_meaning(-returncode)})"
