"""The user API: open, append, read and stream a vault (creation: :mod:`.create`).

Axis order of every leaf: ``[row, time, ...]`` (``(B, T, ...)``). Rows are independent streams
of continuous experience. Leaves are addressed by flat dotted keys (``"infos.legals"``); the
pytree form is nested dicts. On disk (see ``docs/FORMAT.md``)::

    vault/
      metadata.json         version 1.2, structure_shape/_dtype, ..., "marlvault": {...}
      marlvault.lock        while a writer holds it
      manifest.ocdbt, d/    OCDBT: "<key>." zarr arrays, vault_index, __marlvault__/...

Writes buffer on the host until a chunk along time is full, then write whole chunks of every
leaf concurrently; only then does ``vault_index`` advance (together with the episode index, in
one atomic commit). Readers see ``vault_index`` first, then data: always a consistent prefix.
All storage access goes through :class:`marlvault.vault.store.Store`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from marlvault.errors import (
    SchemaMismatchError,
    VaultCorruptError,
    VaultError,
    VaultExistsError,
    VaultRangeError,
    VaultReadOnlyError,
)
from marlvault.tree import flatten, unflatten
from marlvault.vault import create as cr
from marlvault.vault import episodes as ep
from marlvault.vault import format as fmt
from marlvault.vault import guard, shared
from marlvault.vault.create import CODECS
from marlvault.vault.episode_log import EpisodeLog
from marlvault.vault.lock import WriterLock
from marlvault.vault.shared import WriterGroup
from marlvault.vault.store import PendingRead, StepRead, Store, raise_storage

__all__ = ["CODECS", "Vault"]


class Vault:
    """A flashbax-compatible vault. Use :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(
        self,
        store: Store,
        meta: fmt.VaultMeta,
        mode: str,
        lock: WriterLock | None,
        group: WriterGroup | None = None,
    ):
        self._store = store
        self._meta = meta
        self._mode = mode
        self._lock = lock
        self._group = group if mode == "a" else None
        self._failed: BaseException | None = None
        self._leaves = {leaf.key: leaf for leaf in meta.leaves}
        self._open_arrays()
        keys = ep.find_keys(list(self._leaves))
        self._log = EpisodeLog(store, meta.num_rows, keys, self._chunk_steps)
        self._rows = self._group.rows(meta.num_rows) if self._group else (0, meta.num_rows)
        self._base = self._committed  # vault_index when opened (a writer group's resume point)
        self._index = self._committed  # vault_index as last stored by this process
        self._buffers: dict[str, np.ndarray] | None = None
        self._buf_start = self._committed
        self._buf_len = 0
        self._issued = self._committed  # steps handed to storage (committed or in flight)
        self._inflight: tuple[Any, int] | None = None  # (commit future, its vault_index)
        self._executor: ThreadPoolExecutor | None = None
        step_bytes = self._local_rows * sum(leaf.step_bytes for leaf in meta.leaves)
        self._max_block_steps = max(self._chunk_steps, (256 << 20) // max(step_bytes, 1))
        if mode == "a":
            try:
                if self._group is None:
                    self._catch_up_episodes()  # in memory; stored with the next block
                self._load_tail()
            except BaseException:
                self.release()
                raise

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path_or_url: Any,
        example_or_structure: Any,
        *,
        metadata: dict[str, Any] | None = None,
        compression: Any = None,
        chunks: int | None = None,
        exist_ok: bool = False,
        break_lock: bool = False,
        group: WriterGroup | None = None,
    ) -> Vault:
        """Create a vault and open it for appending (see :mod:`marlvault.vault.create`).

        Args:
            path_or_url: local path, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.
            example_or_structure: pytree whose leaves are arrays or ``jax.ShapeDtypeStruct``
                shaped ``(B, T, ...)``; only shapes and dtypes are used, values are not written.
            metadata: free JSON keys stored at the top of ``metadata.json`` (as flashbax does);
                a ``"marlvault"`` sub-dict is merged into our section (env, scenario, config...).
            compression: a name from :data:`CODECS` or a zarr compressor dict; default blosc-zstd.
            chunks: time steps per chunk; default so the largest leaf's chunk is ~4 MiB.
            exist_ok: open an existing vault with the same structure instead of failing.
            break_lock: take over a leftover writer lock.
            group: create it as the leader of a writer group (:mod:`marlvault.vault.shared`);
                the other processes then :meth:`open` it with the same group.

        Raises:
            VaultExistsError, NotAVaultError, SchemaMismatchError, VaultLockedError.
        """
        store = guard.open_store(path_or_url)
        if store.read_key(fmt.METADATA_FILE) is not None:
            if not exist_ok:
                raise VaultExistsError(
                    f"{store.location.display}: expected no vault here, found one; fix: pick a "
                    "new path, open it with Vault.open(path, mode='a'), or pass exist_ok=True"
                )
            vault = cls.open(path_or_url, mode="a", break_lock=break_lock, group=group)
            vault._check_same_structure(example_or_structure)
            return vault
        store, meta, lock = cr.create_vault(
            store, example_or_structure, metadata, compression, chunks, break_lock, group
        )
        if group is not None:
            store = lock.store = store.with_coordinator(group.coordinator)
        return cls(store, meta, "a", lock, group)

    @classmethod
    def open(
        cls,
        path_or_url: Any,
        mode: str = "r",
        *,
        break_lock: bool = False,
        group: WriterGroup | None = None,
    ) -> Vault:
        """Open an existing vault (ours or flashbax's) for reading (``"r"``) or appending (``"a"``).

        With ``group`` (mode ``"a"``), this process writes its rows as part of a writer group
        (:mod:`marlvault.vault.shared`); the vault must have been created by that group's size.

        Raises:
            VaultNotFoundError, NotAVaultError, VaultCorruptError, VaultVersionError,
            VaultLockedError (mode ``"a"`` while another writer holds it).
        """
        if mode not in ("r", "a"):
            raise VaultError(f"{path_or_url}: mode expected 'r' or 'a', found {mode!r}")
        store = guard.open_store(path_or_url)
        raw = store.read_key(fmt.METADATA_FILE)
        if raw is None:
            raise guard.missing_error(store)
        meta = fmt.parse_metadata(store.location.display, raw)
        if mode == "a" and group is not None:
            _check_group_layout(store.location.display, meta, group)
            store = store.with_coordinator(group.coordinator)
        lock = WriterLock.acquire(store, break_lock, group) if mode == "a" else None
        try:
            if lock is not None and group is None:
                store.clear_stale_io_locks()
            return cls(store, meta, mode, lock, group)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def _open_arrays(self) -> None:
        """Open and check the arrays; chunking and ``vault_index`` checked against them."""
        infos = guard.open_arrays(self._store, self._meta)
        self._chunk_steps = guard.chunk_steps(self.path, self._meta, infos)
        self._committed = guard.read_index(self._store, infos)

    def _largest_leaf(self) -> str:
        return max(self._leaves.values(), key=lambda leaf: leaf.step_bytes).key

    def _check_same_structure(self, example: Any) -> None:
        rows, leaves = cr.structure_from_example(self.path, example)
        if rows != self.num_rows or leaves != self._meta.leaves:
            self.release()
            raise SchemaMismatchError(
                f"{self.path}: exist_ok expected the same structure, found B={rows} "
                f"{[(x.key, x.shape, x.dtype.name) for x in leaves]} vs B={self.num_rows} "
                f"{[(x.key, x.shape, x.dtype.name) for x in self._meta.leaves]}; fix: use a new path"
            )

    # --- properties ---------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The vault's path or URL."""
        return self._store.location.display

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def num_rows(self) -> int:
        """B, the number of independent rows."""
        return self._meta.num_rows

    @property
    def rows_written(self) -> tuple[int, int]:
        """``[start, stop)`` of the rows this writer appends (all of them unless in a group)."""
        return self._rows

    @property
    def _local_rows(self) -> int:
        return self._rows[1] - self._rows[0]

    @property
    def num_steps(self) -> int:
        """Time steps per row: committed ones plus (for a writer) those still buffered."""
        return self._buf_start + self._buf_len if self._mode == "a" else self._committed

    @property
    def committed_steps(self) -> int:
        """Time steps durable on storage (the stored ``vault_index``)."""
        return self._committed

    @property
    def chunk_steps(self) -> int:
        return self._chunk_steps

    @property
    def keys(self) -> list[str]:
        """Flat leaf keys, sorted."""
        return list(self._leaves)

    @property
    def flat_structure(self) -> dict[str, jax.ShapeDtypeStruct]:
        """``{"a.b": ShapeDtypeStruct(per-step shape, dtype)}``."""
        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in self._leaves.items()}

    @property
    def structure(self) -> dict[str, Any]:
        """Nested dicts of ``ShapeDtypeStruct`` per time step (no B, T; B is :attr:`num_rows`)."""
        return unflatten(self.flat_structure)

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of ``metadata.json`` (ours under ``"marlvault"``)."""
        return copy.deepcopy(self._meta.raw)

    @property
    def row_lengths(self) -> np.ndarray:
        """``[B]`` int64 valid steps of each row, clipped to :attr:`num_steps`.

        Steps at or beyond a row's valid length are padding (written by ``combine``/``subsample``
        to keep the array dense), not data. From ``metadata["marlvault"]["row_lengths"]``; every
        row is valid up to :attr:`num_steps` when the key is absent (flashbax vaults).

        Raises:
            VaultCorruptError: the stored value is not B integers >= 0.
        """
        stored = fmt.parse_row_lengths(
            self.path, self._meta.ours.get(fmt.ROW_LENGTHS_KEY), self.num_rows
        )
        steps = self.num_steps
        if stored is None:
            return np.full(self.num_rows, steps, np.int64)
        return np.minimum(stored, steps)

    @property
    def writer_progress(self) -> list[int | None] | None:
        """For a vault written by a writer group: the steps each process last committed for
        its rows (``docs/FORMAT.md``, "Several writers"); :attr:`num_steps` is what every row
        reached. None for a vault with one writer."""
        writers = self._meta.ours.get(shared.WRITERS_KEY)
        if not isinstance(writers, dict) or type(writers.get("processes")) is not int:
            return None
        return shared.last_progress(self._store, writers["processes"])

    @property
    def has_padding(self) -> bool:
        """Some row is shorter than :attr:`num_steps` (see :attr:`row_lengths`)."""
        return bool((self.row_lengths < self.num_steps).any())

    @property
    def compression(self) -> dict[str, Any] | None:
        """The zarr compressor of the largest leaf."""
        return self._store.info(fmt.leaf_array_name(self._largest_leaf())).compressor

    def missing_chunks(self) -> list[str]:
        """Problems: leaf chunks below :attr:`committed_steps` that are not stored.

        Lists chunk keys only (no chunk is read); ``open`` checks just the last chunk.
        """
        names = [fmt.leaf_array_name(k) for k in self._leaves]
        found = [guard.missing_chunks(self._store, n, self._committed) for n in names]
        return [p for p in found if p]

    def size_on_disk(self) -> int:
        """Bytes stored at the vault's location."""
        return self._store.size_on_disk()

    def __repr__(self) -> str:
        return f"Vault({self.path!r}, mode={self._mode!r}, B={self.num_rows}, T={self.num_steps})"

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.release()

    # --- writing ------------------------------------------------------------------------------
    def append(self, batch: Any) -> int:
        """Append ``batch`` (pytree, every leaf ``(B, T, ...)``) along time.

        Returns:
            The new :attr:`num_steps`.

        Raises:
            SchemaMismatchError: wrong leaf set, B, shape or dtype (nothing is written).
            StorageFullError: out of space; committed data is unchanged, reopen to continue.
        """
        self._check_writable()
        flat, length = fmt.check_batch(
            self.path, self._meta.leaves, self._local_rows, flatten(batch), self.num_steps
        )
        try:
            self._append_flat(flat, length)
        except Exception as err:
            self._failed = err
            raise_storage(err, self.path, "appending")
        return self.num_steps

    def _append_flat(self, flat: dict[str, np.ndarray], length: int) -> None:
        steps = self._chunk_steps
        off = 0
        while off < length:
            if self._buf_len == 0 and length - off >= steps:
                n = min(length - off, self._max_block_steps) // steps * steps
                block = {k: v[:, off : off + n] for k, v in flat.items()}
                self._write_block(self._buf_start, block)
                self._buf_start += n
                off += n
                continue
            bufs = self._ensure_buffers()
            n = min(steps - self._buf_len, length - off)
            for key, value in flat.items():
                bufs[key][:, self._buf_len : self._buf_len + n] = value[:, off : off + n]
            self._buf_len += n
            off += n
            if self._buf_len == steps:
                self._write_block(self._buf_start, bufs)
                self._buf_start += steps
                self._buf_len = 0

    def flush(self) -> None:
        """Make every appended step durable (writes a partial chunk if one is buffered)."""
        self._check_writable()
        end = self._buf_start + self._buf_len
        try:
            if end > self._issued:
                lo = self._issued - self._buf_start
                block = {k: v[:, lo : self._buf_len] for k, v in self._ensure_buffers().items()}
                self._write_block(self._issued, block)
            self._wait_inflight()
        except Exception as err:
            self._failed = err
            raise_storage(err, self.path, "flushing")

    def close(self) -> None:
        """Flush (writers) and release the lock. Idempotent.

        A writer group's leader first waits (``group.wait_s`` at most) for the other processes
        to commit as far as it did, then stores the index every row has reached.
        """
        try:
            if self._mode == "a" and self._lock is not None and not self._lock.released:
                if self._failed is None:
                    self.flush()
                    if self._group is not None and self._group.is_leader:
                        self._settle_group()
        finally:
            self.release()
            if self._executor is not None:
                self._executor.shutdown(wait=False)

    def _settle_group(self) -> None:
        group = self._group
        try:
            shared.wait_for_group(self._store, group, self._base, self._committed)
            self._index = shared.settle_index(self._store, group, self._base, self._index)
        except Exception as err:
            raise_storage(err, self.path, "storing the group's vault_index")

    def release(self) -> None:
        """Release the writer lock without flushing: steps still buffered are dropped.

        For cleanup paths (errors, finalizers); :meth:`close` is the normal way out.
        """
        if self._lock is not None:
            self._lock.release()

    def cut_tail(self) -> int:
        """Writer: end every open episode at the last committed step, before appending more.

        For appending experience that does not continue the stored one (a restarted run): the
        last committed step of each of this writer's rows is marked truncated where no episode
        ends there, so no episode spans the restart. A stored episode index is dropped first and
        rebuilt from the data (a crash in between leaves a vault whose index readers recompute).

        Returns:
            The number of rows whose open episode was cut.

        Raises:
            VaultError: steps were appended since opening, or the vault has no truncation leaf.
        """
        self._check_writable()
        if self.num_steps != self._committed or self._issued != self._committed:
            raise VaultError(
                f"{self.path}: cut_tail expected no steps appended since opening, found "
                f"{self.num_steps - self._committed}; fix: call it right after Vault.open"
            )
        keys = self._log.keys
        if self._committed == 0:
            return 0
        if keys.truncations is None:
            raise VaultError(
                f"{self.path}: cut_tail expected a truncation leaf ({fmt.TRUNCATION_KEYS}), "
                f"found {self.keys}; fix: record into a new vault instead"
            )
        last = self._committed - 1
        names = [k for k in (keys.terminals, keys.truncations) if k]
        flags = self._read(last, last + 1, self._own_rows(), names)
        ended = np.zeros(self._local_rows, bool)
        for value in flags.values():
            ended |= value.reshape(self._local_rows, -1).astype(bool).any(axis=1)
        if ended.all():
            return 0
        trunc = flags[keys.truncations].copy()
        trunc[~ended] = 1
        name = fmt.leaf_array_name(keys.truncations)
        index = (slice(*self._rows), slice(last, last + 1))
        try:
            if self._group is None:
                for array in (fmt.EPISODES_ARRAY, fmt.CURSOR_ARRAY):
                    self._store.delete_array(array)
                self._store.atomic_write([(name, index, trunc)])
            else:
                self._store.write_many([(name, index, trunc)])[0].result()
        except Exception as err:
            self._failed = err
            raise_storage(err, self.path, "marking the cut")
        if last >= self._buf_start and self._buffers is not None:
            self._buffers[keys.truncations][:, last - self._buf_start] = trunc[:, 0]
        if self._group is None:
            self._log.reset()
            self._catch_up_episodes()
        return int((~ended).sum())

    def _check_writable(self) -> None:
        if self._mode != "a":
            raise VaultReadOnlyError(
                f"{self.path}: expected a vault opened with mode='a', found mode='r'; fix: "
                "Vault.open(path, mode='a')"
            )
        if self._lock is None or self._lock.released:
            raise VaultError(f"{self.path}: the vault is closed; fix: reopen it with mode='a'")
        if self._failed is not None:
            raise VaultError(
                f"{self.path}: an earlier write failed ({self._failed}); committed steps: "
                f"{self._committed}; fix: reopen with mode='a' to continue from there"
            )

    def _ensure_buffers(self) -> dict[str, np.ndarray]:
        if self._buffers is None:
            self._buffers = {
                k: np.zeros((self._local_rows, self._chunk_steps, *v.shape), v.dtype)
                for k, v in self._leaves.items()
            }
        return self._buffers

    def _own_rows(self) -> Any:
        """Row selection of this writer's rows for :meth:`_read` (None: every row)."""
        if self._group is None:
            return None
        return np.arange(*self._rows, dtype=np.int64)

    def _load_tail(self) -> None:
        """Writer reopening mid-chunk: load the committed part of the last chunk into the buffer."""
        self._buf_start = self._committed // self._chunk_steps * self._chunk_steps
        self._buf_len = self._committed - self._buf_start
        if self._buf_len:
            bufs = self._ensure_buffers()
            tail = self._read(self._buf_start, self._committed, self._own_rows(), list(bufs))
            for key, value in tail.items():
                bufs[key][:, : self._buf_len] = value

    def _write_block(self, start: int, block: dict[str, np.ndarray]) -> None:
        """Write ``block`` (each ``(B, n, ...)``) at ``start`` and advance the index.

        Data chunks, episode rows, the episode cursor and ``vault_index`` go into one atomic
        OCDBT commit: the manifest that makes the new index visible is written only after the
        data files it references are durable. The commit runs in the background while the caller
        goes on; the next block (or ``flush``/``close``) waits for it first, so at most one block
        is in flight and a failure surfaces at that next call.
        """
        self._wait_inflight()
        n = next(iter(block.values())).shape[1]
        if self._group is not None:
            self._write_group_block(start, n, block)
            return
        self._log.extend(start, block)
        writes = [
            (fmt.leaf_array_name(k), (slice(None), slice(start, start + n)), v)
            for k, v in block.items()
        ]
        writes.append((fmt.INDEX_ARRAY, slice(None), np.array([start + n], np.int32)))
        writes += self._log.pending_writes()
        future = self._store.atomic_write(writes, wait=False)
        self._log.mark_stored()
        self._issued = start + n
        self._inflight = (future, start + n)

    def _write_group_block(self, start: int, n: int, block: dict[str, np.ndarray]) -> None:
        """A writer group's block: this process's row chunks, then (once they are durable) its
        progress, then (leader) ``vault_index``; in the background like a single writer's."""
        rows = slice(*self._rows)
        writes = [
            (fmt.leaf_array_name(k), (rows, slice(start, start + n)), v) for k, v in block.items()
        ]
        futures = self._store.write_many(writes)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="marlvault-group")
        self._issued = start + n
        self._inflight = (self._executor.submit(self._finish_group_block, futures, start + n),
                          start + n)  # fmt: skip

    def _finish_group_block(self, futures: list[Any], steps: int) -> None:
        for future in futures:
            future.result()
        shared.write_progress(self._store, self._group, steps)
        if self._group.is_leader:
            self._index = shared.settle_index(self._store, self._group, self._base, self._index)

    def _wait_inflight(self) -> None:
        """Wait for the background commit of the previous block; then it counts as committed."""
        if self._inflight is not None:
            future, steps = self._inflight
            self._inflight = None
            future.result()
            self._committed = steps

    # --- reading ------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Reader: see the writer's newer commits. Returns :attr:`num_steps`."""
        if self._mode == "a":
            return self.num_steps
        self._store.refresh()
        self._open_arrays()
        self._log.reset()
        return self.num_steps

    def _range(self, start: int | None, stop: int | None) -> tuple[int, int]:
        if self._mode == "a" and self.num_steps > self._committed:
            self.flush()
        start = 0 if start is None else int(start)
        stop = self._committed if stop is None else int(stop)
        if not 0 <= start <= stop <= self._committed:
            raise VaultRangeError(
                f"{self.path}: read expected 0 <= start <= stop <= {self._committed} (steps), "
                f"found start={start}, stop={stop}; fix: stay within Vault.num_steps"
            )
        return start, stop

    def _select(self, rows: Any, keys: Any) -> tuple[Any, list[str]]:
        """Checked row selection (``slice(None)`` or ``[B']`` int64) and leaf keys."""
        picked = fmt.select_rows(self.path, rows, self.num_rows)
        return picked, fmt.select_keys(self.path, keys, list(self._leaves))

    def _issue(self, start: int, stop: int, rows: Any, keys: list[str]) -> PendingRead:
        picked = rows if isinstance(rows, np.ndarray) else None
        reads = [StepRead(fmt.leaf_array_name(k), picked, start, stop) for k in keys]
        return self._store.read_steps(reads)

    def _collect(self, pending: PendingRead, keys: list[str], start: int, stop: int) -> dict:
        try:
            return dict(zip(keys, pending.result(), strict=True))
        except Exception as err:
            raise VaultCorruptError(
                f"{self.path}: reading steps [{start}, {stop}) expected committed chunks, found "
                f"an error: {' '.join(str(err).split())[:400]}; fix: run `marlvault vault verify "
                f"{self.path}`, then restore the vault from a copy"
            ) from None

    def _read(self, start: int, stop: int, rows: Any, keys: list[str]) -> dict[str, np.ndarray]:
        """Read committed steps (no range checks, no flush): ``{key: (B', stop - start, ...)}``."""
        return self._collect(self._issue(start, stop, rows, keys), keys, start, stop)

    def read_flat(self, start=None, stop=None, rows=None, keys=None) -> dict[str, np.ndarray]:
        """Like :meth:`read` but returns ``{"a.b": array}``."""
        start, stop = self._range(start, stop)
        return self._read(start, stop, *self._select(rows, keys))

    def read(self, start=None, stop=None, rows=None, keys=None) -> dict[str, Any]:
        """Read committed steps ``[start, stop)`` as host numpy arrays.

        Args:
            start, stop: time-step range; default all committed steps.
            rows: None, an int, a slice or a sequence of row indices.
            keys: None, a flat key (``"infos.legals"``), a prefix (``"infos"``) or a list of them.

        Returns:
            Nested dicts of numpy arrays shaped ``(B', T', ...)``.
        """
        return unflatten(self.read_flat(start, stop, rows, keys))

    def iter_chunks(
        self,
        steps_per_chunk: int | None = None,
        rows=None,
        keys=None,
        *,
        flat: bool = False,
        start: int | None = None,
        stop: int | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Stream committed steps ``[start, stop)`` (default all) in windows along time, reading
        one window ahead.

        Yields:
            ``(start, tree)`` with each leaf ``(B', n, ...)``; memory stays ~two windows.
        """
        step = int(steps_per_chunk or self._chunk_steps)
        if step < 1:
            raise VaultRangeError(f"{self.path}: steps_per_chunk expected >= 1, found {step}")
        first, end = self._range(start, stop)
        rows, keys = self._select(rows, keys)

        pending = self._issue(first, min(first + step, end), rows, keys) if end > first else None
        for a in range(first, end, step):
            b = min(a + step, end)
            current = pending
            if b < end:
                pending = self._issue(b, min(b + step, end), rows, keys)
            data = self._collect(current, keys, a, b)
            yield a, (data if flat else unflatten(data))

    # --- episodes -----------------------------------------------------------------------------
    @property
    def episode_keys(self) -> ep.EpisodeKeys:
        """The reward / terminal / truncation leaves episodes are segmented by (None: absent)."""
        return self._log.keys

    @property
    def episodes(self) -> np.ndarray:
        """The episode index (:data:`.episodes.EPISODE_DTYPE`), sorted by (row, start).

        Computed from the stored index plus, in memory, the committed steps it does not cover
        (all of them for flashbax-written vaults); never writes.
        """
        self._catch_up_episodes()
        return self.clip_to_row_lengths(self._log.index())

    def clip_to_row_lengths(self, index: np.ndarray) -> np.ndarray:
        """Clip an episode index to :attr:`row_lengths` (padding holds no episodes).

        Episodes that start in a row's padding are dropped; one that crosses into it is cut,
        marked incomplete, and its return recomputed over its valid steps.
        """
        lengths = self.row_lengths
        if len(index) == 0 or (lengths >= (index["start"] + index["length"]).max()).all():
            return index
        reward = self._log.keys.rewards

        def read_rewards(row: int, start: int, stop: int) -> np.ndarray:
            return self._read(start, stop, np.array([row], np.int64), [reward])[reward]

        return ep.clip_to_lengths(index, lengths, read_rewards if reward else None)

    def _catch_up_episodes(self) -> None:
        self._log.catch_up(
            self._committed, lambda a, b, keys: self._read(a, b, None, keys), self.path
        )


def _check_group_layout(where: str, meta: fmt.VaultMeta, group: WriterGroup) -> None:
    """A group may only append to a vault made for the same number of processes."""
    writers = meta.ours.get(shared.WRITERS_KEY)
    found = writers.get("processes") if isinstance(writers, dict) else None
    if found != group.num_processes:
        raise VaultError(
            f"{where}: {group.num_processes} writer processes expected a vault created for "
            f"{group.num_processes} (metadata marlvault.writers.processes), found "
            f"{found if found is not None else 'a single-writer vault'}; fix: record with the "
            "same number of processes as the run that created it, or to a new path"
        )
