"""Graceful stop on Ctrl-C / SIGTERM: the learner finishes its current call (online) or block of
updates (offline), then everything produced so far is saved before the process exits.

A second signal while stopping raises ``KeyboardInterrupt`` at once (the recorder's ``close`` in a
``finally`` block still commits what was already handed to it).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopFlag:
    """Set by the first SIGINT/SIGTERM; read by the training loop between learner calls."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None


@contextmanager
def graceful_stop(
    then: str = "finishing the current learner call, then flushing the vault",
) -> Iterator[StopFlag]:
    """Installs the handlers (main thread only) for the duration of the block.

    Args:
        then: what the process does before it stops, printed when the first signal arrives.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame) -> None:  # signature fixed by the signal API
        if flag.signal is not None:
            raise KeyboardInterrupt
        flag.signal = signum
        print(f"\n{signal.Signals(signum).name} received: {then} (send again to stop at once)",
              flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
