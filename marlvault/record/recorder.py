"""Background recording of experience from a jitted training loop into a vault.

The learner produces trajectories on the device; :meth:`Recorder.add` starts their device→host
copy without waiting for it and puts them on a bounded queue. One writer thread takes them off,
converts them to the vault layout ``[row, time, ...]`` and appends them. The learner therefore
only waits for disk when the queue is full (back-pressure); nothing is ever dropped. Errors in the
writer thread are re-raised in the learner's thread on the next ``add`` or on ``close``.

Example::

    with Recorder.create("vaults/demo.vlt", example_batch, metadata={...}) as rec:
        for _ in range(num_calls):
            learner_state, traj = learner_step(learner_state)   # jitted
            rec.add(traj)                                       # returns at once
    # leaving the block flushes and commits everything added
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from marlvault.errors import RecorderError

_STOP = object()


@dataclass(frozen=True)
class RecordStats:
    """What a recorder did, for logs and summaries."""

    path: str
    calls: int
    """Number of ``add`` calls written."""
    num_steps: int
    """Committed time steps per row in the vault."""
    num_rows: int
    wait_s: float
    """Seconds the learner spent blocked on a full queue (back-pressure)."""
    write_s: float
    """Seconds the writer thread spent converting and appending."""


def _start_host_copy(tree: Any) -> Any:
    """Starts the device→host copy of every jax array leaf without blocking."""

    def start(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array):
            try:
                leaf.copy_to_host_async()
            except (AttributeError, RuntimeError):  # already on host / deleted: nothing to start
                pass
        return leaf

    return jax.tree_util.tree_map(start, tree)


class Recorder:
    """Appends trajectories to an open vault from a background thread, with back-pressure.

    Args:
        vault: a vault opened for appending (``Vault.create`` or ``Vault.open(..., mode="a")``).
            The recorder closes it on :meth:`close`.
        to_batch: converts one host-side (numpy) item given to :meth:`add` into the vault's pytree,
            every leaf ``[B, T, ...]``. Defaults to the identity.
        queue_size: items that may wait for the writer before ``add`` blocks.
    """

    def __init__(
        self,
        vault: Any,
        to_batch: Callable[[Any], Any] | None = None,
        queue_size: int = 4,
    ) -> None:
        if queue_size < 1:
            raise RecorderError(f"queue_size must be >= 1, got {queue_size}")
        self.vault = vault
        self._to_batch = to_batch or (lambda item: item)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._calls = 0
        self._wait_s = 0.0
        self._write_s = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="marlvault-recorder", daemon=True)
        self._thread.start()

    @classmethod
    def create(
        cls,
        path: str,
        example_batch: Any,
        *,
        metadata: dict | None = None,
        to_batch: Callable[[Any], Any] | None = None,
        queue_size: int = 4,
        **vault_kwargs: Any,
    ) -> Recorder:
        """Creates a new vault at ``path`` shaped like ``example_batch`` and records into it."""
        from marlvault.vault import Vault

        vault = Vault.create(path, example_batch, metadata=metadata, **vault_kwargs)
        return cls(vault, to_batch=to_batch, queue_size=queue_size)

    # ------------------------------------------------------------------ producer side
    def add(self, item: Any) -> None:
        """Queues ``item`` (a pytree of device or host arrays) for writing.

        Returns as soon as the item is queued; blocks only while the queue is full.

        Raises:
            RecorderError: the writer thread failed earlier, or the recorder is closed.
        """
        self._raise_if_failed()
        if self._closed:
            raise RecorderError(f"recorder for {self.vault.path} is closed; create a new one")
        item = _start_host_copy(item)
        start = time.perf_counter()
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                break
            except queue.Full:
                self._raise_if_failed()
        self._wait_s += time.perf_counter() - start

    def close(self) -> RecordStats:
        """Writes everything queued, commits it, closes the vault and returns the stats.

        Raises:
            RecorderError: the writer failed; the message says what was committed.
        """
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
            try:
                self.vault.close()
            except Exception as err:  # any failure: reported with context below
                if self._error is None:
                    self._error = err
        self._raise_if_failed()
        return self.stats()

    def stats(self) -> RecordStats:
        return RecordStats(
            path=str(self.vault.path),
            calls=self._calls,
            num_steps=int(self.vault.num_steps),
            num_rows=int(self.vault.num_rows),
            wait_s=self._wait_s,
            write_s=self._write_s,
        )

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ writer side
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # keep draining so the producer never blocks forever
            try:
                start = time.perf_counter()
                host = jax.tree_util.tree_map(np.asarray, item)
                del item
                self.vault.append(self._to_batch(host))
                self._write_s += time.perf_counter() - start
                self._calls += 1
            except BaseException as err:  # any failure: re-raised in the learner's thread
                self._error = err

    def _raise_if_failed(self) -> None:
        if self._error is None:
            return
        err = self._error
        committed = getattr(self.vault, "num_steps", "?")
        raise RecorderError(
            f"recording to {getattr(self.vault, 'path', '?')} failed after {self._calls} writes "
            f"({committed} steps per row committed and readable): {type(err).__name__}: {err}"
        ) from err
