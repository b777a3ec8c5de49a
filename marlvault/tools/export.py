"""Export a vault for code that does not read marlvault vaults directly.

The destination's suffix picks the format: ``.h5``/``.hdf5`` (HDF5, via h5py), ``.npz`` (numpy)
or anything else: a new vault (``.../NAME.vlt/UID``).

Layouts (``layout=``):

- ``"rows"`` (default for files): the arrays exactly as stored, ``[B, T, ...]``, padding
  included, with ``row_lengths`` (``[B]`` valid steps of each row) so readers can skip the padding
  and nothing is lost. Incomplete episodes stay in the data and in the episode arrays
  (``complete == False``). A vault in this layout would be a copy of the source, so a vault
  destination needs ``"og-marl"``.
- ``"og-marl"``: one row (``B == 1``) holding the *complete* episodes of the source laid end to
  end, with no padding. The order is the episode table's: by the step an episode ends at, then
  by source row (the order one streaming pass over the source finds them in, so the export needs
  one pass and memory for one chunk plus the open episode of each source row). Every episode is
  copied exactly, all keys, so its last step keeps the flag it ended with (``terminals`` or
  ``truncations``). Incomplete episodes (no end flag before the row's valid end) are dropped and
  counted. This is the layout OG-MARL's code assumes: it reads ``B == 1`` and treats every step
  as data.

A vault destination's ``metadata["marlvault"]`` keeps the source's section (without the engine's
own keys and ``row_lengths``) and adds ``provenance``: tool, source, layout, episodes and
transitions exported, incomplete episodes dropped.

File contents (``KEY`` = a vault key as a dotted path, e.g. ``infos.legals``):

==================  ===========================================  ==============================
what                HDF5                                         npz
==================  ===========================================  ==============================
data ``[B, T, ..]`` dataset at ``KEY`` with dots as groups       array ``KEY``
                    (``infos/legals``)
valid steps ``[B]`` dataset ``row_lengths``                      array ``row_lengths``
episodes ``[E]``    datasets ``episodes/row``, ``start``,        arrays ``episodes.row``, ...
                    ``length``, ``return``, ``terminated``,
                    ``truncated``, ``complete``
source metadata     file attribute ``metadata`` (JSON text)      ``metadata``: 1-element str
                                                                 array holding the JSON text
provenance          file attribute ``provenance`` (JSON text)    ``provenance`` (same form)
==================  ===========================================  ==============================

The episode arrays describe the file's own layout (for ``"rows"`` they equal ``Vault.episodes``).
HDF5 is written chunk by chunk into preallocated datasets (memory: one read window). npz cannot
be streamed by numpy, so the whole export is held in memory; it is refused above
``max_memory_mb`` with the fix (export to ``.h5``). Files are written under a temporary name
and renamed at the end, so a failed export leaves nothing at the destination.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple

import numpy as np

from marlvault.errors import ConfigError, VaultExistsError
from marlvault.tools._common import derived_metadata, iter_flat_chunks, open_vault, step_specs
from marlvault.tools.index import EpisodeTable, episode_table
from marlvault.tools.subsample import copy_episodes
from marlvault.tools.writer import PackedWriter, create_like
from marlvault.tree import flatten

LAYOUTS = ("rows", "og-marl")
"""Layouts :func:`export` writes."""
SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".npz": "npz"}
"""Destination suffixes that select a file format (anything else is a vault)."""
EPISODE_FIELDS = ("row", "start", "length", "return", "terminated", "truncated", "complete")
RESERVED = ("episodes", "row_lengths", "metadata", "provenance")
"""Top-level names the files use themselves (a vault key may not start with them)."""


def export_format(dst: str) -> str:
    """``"hdf5"``, ``"npz"`` or ``"vault"``, from the destination's suffix."""
    return SUFFIXES.get(os.path.splitext(str(dst).rstrip("/"))[1].lower(), "vault")


def export(
    src: Any, dst: str, layout: str | None = None, progress: bool = False,
    max_memory_mb: float = 1024.0,
) -> dict[str, Any]:
    """Export vault ``src`` to ``dst`` in ``layout`` (see the module docstring).

    Args:
        src: path/URL of the source vault, or an open vault.
        dst: new file (``.h5``, ``.hdf5``, ``.npz``) or new vault path/URL; must not exist.
        layout: one of :data:`LAYOUTS`; default ``"rows"`` for files. A vault needs ``"og-marl"``.
        progress: show a progress bar on stderr.
        max_memory_mb: largest npz export (MiB of array data), which is built in memory.

    Returns:
        The summary, also stored as ``provenance``: ``format``, ``layout``, ``episodes`` and
        ``transitions`` (complete episodes and valid steps written), ``dropped_incomplete``
        episodes and their ``dropped_steps`` (og-marl), ``incomplete_kept`` (rows).

    Raises:
        ConfigError: unknown or unsupported layout, npz over ``max_memory_mb``, a vault key that
            clashes with a file's own names.
        VaultExistsError: something already exists at ``dst`` (nothing is touched).
        VaultNotFoundError, NotAVaultError: ``src`` is not a vault.
    """
    kind = export_format(dst)
    layout = _check_layout(dst, kind, layout)
    _refuse_existing(dst)
    with open_vault(src) as v:
        table = episode_table(v, progress=progress)
        prov = _provenance(v, dst, kind, layout, table)
        chosen = table.select(np.flatnonzero(table.complete))
        if kind == "vault":
            with create_like(dst, step_specs(v), 1, derived_metadata(v, prov)) as out:
                _write_flat_row(v, chosen, out, progress)
        else:
            _export_file(v, dst, kind, layout, chosen, prov, progress, max_memory_mb)
        return prov


def _check_layout(dst: str, kind: str, layout: str | None) -> str:
    if layout is None and kind == "vault":
        raise ConfigError(
            f"export {dst}: a vault destination expected --layout og-marl, found no layout "
            "(the stored layout would be a plain copy of the source); fix: pass --layout "
            "og-marl, or end DEST in .h5 or .npz for a file"
        )
    layout = "rows" if layout is None else layout
    if layout not in LAYOUTS:
        raise ConfigError(
            f"export {dst}: --layout expected one of {', '.join(LAYOUTS)}, found {layout!r}; "
            "fix: pass --layout rows (arrays as stored) or --layout og-marl (one row, no padding)"
        )
    if kind == "vault" and layout != "og-marl":
        raise ConfigError(
            f"export {dst}: a vault destination expected --layout og-marl, found {layout!r} (a "
            "vault in the stored layout is a copy of the source); fix: copy the vault folder, or "
            "end DEST in .h5 or .npz for a file"
        )
    return layout


def _write_flat_row(v: Any, chosen: EpisodeTable, sink: Any, progress: bool) -> None:
    """Stream the ``chosen`` episodes of ``v`` (table order) end to end into row 0 of ``sink``."""
    writer = PackedWriter(sink, np.array([int(chosen.length.sum())], np.int64))
    copy_episodes(v, chosen, np.zeros(chosen.num, np.int64), writer, progress, label="export")
    writer.finish()


def _provenance(v: Any, dst: str, kind: str, layout: str, table: EpisodeTable) -> dict[str, Any]:
    done = table.complete
    prov = {
        "tool": "export", "sources": [str(v.path)], "destination": str(dst), "format": kind,
        "layout": layout, "episodes": int(done.sum()),
        "transitions": int(table.length[done].sum()),
        "terminated": int(table.terminated[done].sum()),
        "truncated": int(table.truncated[done].sum()),
    }
    if layout == "og-marl":
        prov["order"] = "by end step, then source row"
        prov["dropped_incomplete"] = int((~done).sum())
        prov["dropped_steps"] = int(table.length[~done].sum())
    else:
        prov["transitions"] = int(table.length.sum())
        prov["incomplete_kept"] = int((~done).sum())
    return prov


def _refuse_existing(dst: str) -> None:
    """Raise :class:`VaultExistsError` if a local ``dst`` exists (URLs: the engine checks)."""
    if "://" in str(dst) or not os.path.lexists(dst):
        return
    kind = "a folder" if os.path.isdir(dst) else "a file"
    raise VaultExistsError(
        f"{dst}: expected nothing at the export destination, found {kind}; fix: pick a new "
        "path or delete the old export first (export never overwrites)"
    )


# --- files ---------------------------------------------------------------------------------------
class _Leaf(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype


class _ArraySink:
    """Preallocated ``[rows, steps, ...]`` arrays (numpy or h5py datasets) filled in time order.

    Has the two members :class:`PackedWriter` uses of a vault: ``flat_structure`` and ``append``.
    """

    def __init__(self, arrays: dict[str, Any]) -> None:
        self.arrays = arrays
        self.flat_structure = {
            k: _Leaf(tuple(a.shape[2:]), np.dtype(a.dtype)) for k, a in arrays.items()
        }
        self.written = 0

    def append(self, tree: Any) -> None:
        self.append_flat({k: np.asarray(x) for k, x in flatten(tree).items()})

    def append_flat(self, flat: dict[str, np.ndarray]) -> None:
        n = next(iter(flat.values())).shape[1]
        for k, x in flat.items():
            self.arrays[k][:, self.written : self.written + n] = x
        self.written += n


def _export_file(
    v: Any, dst: str, kind: str, layout: str, chosen: EpisodeTable, prov: dict[str, Any],
    progress: bool, max_memory_mb: float,
) -> None:
    specs = step_specs(v)
    clash = [k for k in specs if k.split(".")[0] in RESERVED]
    if clash:
        raise ConfigError(
            f"export {dst}: expected vault keys other than {', '.join(RESERVED)} (the file's own "
            f"names), found {clash}; fix: export to a vault with --layout og-marl instead"
        )
    if layout == "og-marl":
        rows, steps, lengths = 1, int(chosen.length.sum()), np.array([chosen.length.sum()])
        episodes = _flat_episodes(chosen)
    else:
        rows, steps, lengths = int(v.num_rows), int(v.num_steps), np.asarray(v.row_lengths)
        index = np.asarray(v.episodes)
        episodes = {f: index[f] for f in EPISODE_FIELDS}
    extras = {
        "row_lengths": np.asarray(lengths, np.int64),
        "metadata": json.dumps(v.metadata), "provenance": json.dumps(prov),
        "episodes": episodes,
    }
    tmp = f"{dst}.partial-{os.getpid()}"
    try:
        if kind == "hdf5":
            _write_hdf5(v, tmp, specs, rows, steps, layout, chosen, extras, progress)
        else:
            mib = rows * steps * sum(math.prod(s) * d.itemsize for s, d in specs.values()) / 2**20
            if mib > max_memory_mb:
                raise ConfigError(
                    f"export {dst}: an npz export is built in memory and expected at most "
                    f"{max_memory_mb:g} MiB of arrays (--max-memory-mb), found {mib:.1f} MiB; fix: "
                    f"export to a .h5 file (streamed), or raise --max-memory-mb to {math.ceil(mib)}"
                )
            _write_npz(v, tmp, specs, rows, steps, layout, chosen, extras, progress)
        os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def _flat_episodes(chosen: EpisodeTable) -> dict[str, np.ndarray]:
    """Episode arrays of the og-marl layout: ``chosen`` end to end in row 0."""
    ends = np.cumsum(chosen.length).astype(np.int64)
    return {
        "row": np.zeros(chosen.num, np.int32), "start": ends - chosen.length,
        "length": chosen.length.astype(np.int64), "return": chosen.ret.astype(np.float64),
        "terminated": chosen.terminated.astype(bool), "truncated": chosen.truncated.astype(bool),
        "complete": np.ones(chosen.num, bool),
    }


def _fill(v: Any, sink: _ArraySink, layout: str, chosen: EpisodeTable, progress: bool) -> None:
    if layout == "og-marl":
        _write_flat_row(v, chosen, sink, progress)
    else:
        for _, chunk in iter_flat_chunks(v, progress="export" if progress else None):
            sink.append_flat(chunk)


H5_CHUNK_BYTES = 1 << 20
"""Target size of one HDF5 chunk (uncompressed)."""
H5_CACHE_BYTES = 256 << 20
"""h5py's chunk cache per dataset: partial chunks of a window stay in memory until filled."""


def _h5_storage(rows: int, steps: int, shape: tuple[int, ...], dtype: Any) -> dict[str, Any]:
    """Chunked, byte-shuffled gzip level 1 (readable by every HDF5 reader; the recorded data
    compresses ~10-40x), chunks ``(rows, t, *shape)`` of about :data:`H5_CHUNK_BYTES`."""
    if steps == 0 or rows == 0:
        return {}
    per_step = rows * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    t = int(max(1, min(steps, H5_CHUNK_BYTES // max(per_step, 1))))
    return {"chunks": (rows, t, *shape), "compression": "gzip", "compression_opts": 1,
            "shuffle": True}


def _write_hdf5(v, path, specs, rows, steps, layout, chosen, extras, progress) -> None:
    import h5py

    with h5py.File(path, "w", rdcc_nbytes=H5_CACHE_BYTES) as f:
        arrays = {
            k: f.create_dataset(k.replace(".", "/"), shape=(rows, steps, *shape), dtype=dtype,
                                **_h5_storage(rows, steps, shape, dtype))
            for k, (shape, dtype) in specs.items()
        }
        _fill(v, _ArraySink(arrays), layout, chosen, progress)
        f.create_dataset("row_lengths", data=extras["row_lengths"])
        for name, x in extras["episodes"].items():
            f.create_dataset(f"episodes/{name}", data=x)
        f.attrs["metadata"] = extras["metadata"]
        f.attrs["provenance"] = extras["provenance"]


def _write_npz(v, path, specs, rows, steps, layout, chosen, extras, progress) -> None:
    arrays = {k: np.zeros((rows, steps, *shape), dtype) for k, (shape, dtype) in specs.items()}
    _fill(v, _ArraySink(arrays), layout, chosen, progress)
    arrays["row_lengths"] = extras["row_lengths"]
    arrays.update({f"episodes.{name}": x for name, x in extras["episodes"].items()})
    arrays["metadata"] = np.array([extras["metadata"]])
    arrays["provenance"] = np.array([extras["provenance"]])
    with open(path, "wb") as fh:  # a file object: savez adds no ".npz" to the temporary name
        np.savez(fh, **arrays)
