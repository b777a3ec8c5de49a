"""One vault, several writer processes: row ranges, per-process progress, the coordinator.

A *writer group* is the ``P`` processes of one multi-process run recording into one vault. They
write its single OCDBT database concurrently through tensorstore's own
``tensorstore.ocdbt.DistributedCoordinatorServer``, which process 0 (the *leader*) runs:

- **Rows.** With ``B`` rows, process ``i`` owns rows ``[i * B/P, (i + 1) * B/P)``: the
  environments it simulates. Leaf arrays are chunked by ``B/P`` rows, so no two processes ever
  write the same chunk.
- **Progress.** A coordinated commit cannot span several keys, so a block is written as its data
  chunks first, and only when they are durable does the process write its progress object
  ``__marlvault__/progress/<i>`` (``{"group", "steps"}``; a plain file or object beside
  ``metadata.json``, outside the OCDBT database): every row's data exists at least as far as its
  progress says.
- **Index.** The leader alone writes ``vault_index``: the smallest progress of the group
  (entries of another group, i.e. an earlier run, count as the length the vault had when this
  group opened it). flashbax, OG-MARL and marlvault read up to it, so they always see a prefix
  that every row has reached.
- **Lock.** ``marlvault.lock`` names the group; a process of another run is refused.

Readers need none of this: a vault written by a group is an ordinary vault.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from marlvault.errors import VaultError
from marlvault.vault import format as fmt
from marlvault.vault.store import Store

PROGRESS_PREFIX = "__marlvault__/progress/"
WRITERS_KEY = "writers"
"""Key under ``metadata["marlvault"]``: ``{"processes": P, "rows_per_process": B/P}``."""


@dataclass(frozen=True)
class WriterGroup:
    """This process's place in a writer group.

    Attributes:
        process_id: ``i`` in ``0 .. num_processes - 1``; 0 is the leader.
        num_processes: ``P``.
        group_id: the same string in every process of one run, different between runs.
        coordinator: ``HOST:PORT`` of the leader's OCDBT coordinator server.
        wait_s: how long the leader waits at close for the others' last commits.
    """

    process_id: int
    num_processes: int
    group_id: str
    coordinator: str
    wait_s: float = 60.0

    @property
    def is_leader(self) -> bool:
        return self.process_id == 0

    def rows(self, num_rows: int) -> tuple[int, int]:
        """``[start, stop)`` of this process's rows in a vault of ``num_rows`` rows.

        Raises:
            VaultError: ``num_rows`` does not split evenly over the processes.
        """
        if num_rows % self.num_processes:
            raise VaultError(
                f"writer group: expected the vault's rows to split evenly over "
                f"{self.num_processes} processes, found {num_rows} rows; fix: use a number of "
                f"environments that is a multiple of {self.num_processes}"
            )
        per = num_rows // self.num_processes
        return self.process_id * per, (self.process_id + 1) * per


def writers_section(num_processes: int, num_rows: int) -> dict[str, int]:
    """The ``metadata["marlvault"]["writers"]`` value of a vault written by a group."""
    return {"processes": num_processes, "rows_per_process": num_rows // num_processes}


def start_coordinator(host: str = "localhost") -> tuple[Any, str]:
    """Start an OCDBT coordinator server on ``host`` (a free port).

    Returns:
        (the server, which must stay referenced while the group writes; its ``HOST:PORT``).
    """
    import tensorstore as ts

    server = ts.ocdbt.DistributedCoordinatorServer({"bind_addresses": [f"{host}:0"]})
    return server, f"{host}:{server.port}"


def _key(process_id: int) -> str:
    return f"{PROGRESS_PREFIX}{process_id}"


def write_progress(store: Store, group: WriterGroup, steps: int) -> None:
    """Record that this process's rows are durable up to ``steps`` (call after the data)."""
    value = json.dumps({"group": group.group_id, "steps": int(steps)}).encode()
    store.write_key(_key(group.process_id), value)


def _progress(store: Store, process_id: int) -> tuple[str | None, int | None]:
    """``(group, steps)`` of one process's progress object; None where absent or malformed."""
    raw = store.read_key(_key(process_id))
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        return None, None
    steps = doc.get("steps")
    return doc.get("group"), steps if type(steps) is int and steps >= 0 else None


def read_progress(store: Store, group: WriterGroup, base: int) -> np.ndarray:
    """``[P]`` committed steps of every process of ``group``; ``base`` for those that have not
    written any yet (absent key, or one left by another group)."""
    out = np.full(group.num_processes, base, np.int64)
    for i in range(group.num_processes):
        owner, steps = _progress(store, i)
        if owner == group.group_id and steps is not None and steps >= base:
            out[i] = steps
    return out


def last_progress(store: Store, num_processes: int) -> list[int | None]:
    """Committed steps each process last recorded, whatever its group (None: never wrote)."""
    return [_progress(store, i)[1] for i in range(num_processes)]


def settle_index(store: Store, group: WriterGroup, base: int, written: int) -> int:
    """Leader: write ``vault_index`` = the group's smallest progress when it grew past
    ``written``. Returns the index now stored."""
    low = int(read_progress(store, group, base).min())
    if low > written:
        store.write_many([(fmt.INDEX_ARRAY, slice(None), np.array([low], np.int32))])[0].result()
        return low
    return written


def wait_for_group(store: Store, group: WriterGroup, base: int, steps: int) -> bool:
    """Leader at close: wait up to ``group.wait_s`` until every process reached ``steps``.

    Returns:
        whether they all did (False: some process stopped early, e.g. it was killed).
    """
    deadline = time.monotonic() + group.wait_s
    while True:
        if int(read_progress(store, group, base).min()) >= steps:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
