"""Episode-aligned subsampling of a vault into a new vault.

Selection works on the episode table (complete episodes only) in two stages:

1. *Filters* keep episodes whose return lies in ``return_range`` (inclusive) and/or all of whose
   steps have an update index (key ``update_key``, default ``"infos.update"``) in
   ``update_range`` (inclusive).
2. *One count rule* then draws from the survivors, uniformly at random with ``seed``:
   ``episodes`` (exactly that many), ``transitions`` (the smallest random set of whole episodes
   whose steps reach the number; it overshoots by less than one episode), or a *target return
   distribution* (``target_edges`` + ``target_counts``: exactly ``counts[i]`` episodes with return
   in ``[edges[i], edges[i+1])``, the last bin closed). Without a count rule every survivor is kept.

Layout of the output: the selected episodes keep their source order (by end step, then row) and
are packed back to back into ``rows`` output rows (default 1), each new episode going to the
currently shortest row. Every output episode is exactly a source episode (all keys, boundary
flags included); no step of a neighbour leaks in. With ``rows > 1`` the shorter rows are padded
at the end with zero steps; ``metadata["marlvault"]["row_lengths"]`` holds each row's valid
length, so the episode index, offline samplers and tools skip the padding.

``layout="og-marl"`` writes the layout OG-MARL's code reads (the one ``export --layout og-marl``
writes): one row, the chosen episodes end to end in the same order, no padding and no
``row_lengths`` entry; it needs ``rows == 1``. The data equal those of ``rows=1``; the metadata
record the layout (``provenance["layout"] == "og-marl"``) so readers can rely on it.

The output's ``metadata["marlvault"]`` keeps the source's section and adds ``"provenance"``:
tool, source path, method, parameters, seed, number of episodes and transitions, row lengths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from marlvault.errors import ConfigError, DatasetError
from marlvault.schema import UPDATE as UPDATE_KEY
from marlvault.tools._common import (
    check_output_layout,
    derived_metadata,
    iter_flat_chunks,
    open_vault,
    step_specs,
)
from marlvault.tools.index import EpisodeTable, episode_table
from marlvault.tools.writer import PackedWriter, create_like


@dataclass(frozen=True)
class SubsampleSpec:
    """How to choose episodes. See the module docstring for the semantics."""

    episodes: int | None = None
    """Exact number of episodes to draw."""
    transitions: int | None = None
    """Minimum number of steps to draw (whole episodes, overshoot < one episode)."""
    return_range: tuple[float, float] | None = None
    """Keep episodes with ``lo <= return <= hi``."""
    target_edges: tuple[float, ...] | None = None
    """Bin edges (ascending, K+1 values) of a target return distribution."""
    target_counts: tuple[int, ...] | None = None
    """Episodes wanted per bin (K values)."""
    update_range: tuple[int, int] | None = None
    """Keep episodes whose steps all have ``lo <= update index <= hi``."""
    update_key: str = UPDATE_KEY
    """Key of the per-step update index."""
    seed: int = 0
    """Seed of the random draw."""
    rows: int = 1
    """Rows of the output vault."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the provenance."""

    def __post_init__(self) -> None:
        counts = [x is not None for x in (self.episodes, self.transitions, self.target_counts)]
        if sum(counts) > 1:
            raise ConfigError(
                "subsample: expected at most one of episodes, transitions, target distribution; "
                f"found {sum(counts)}; pass only one count rule"
            )
        for name in ("episodes", "transitions", "rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"subsample: expected {name} >= 1, found {value}")
        for name in ("return_range", "update_range"):
            rng = getattr(self, name)
            if rng is not None and not rng[0] <= rng[1]:
                raise ConfigError(f"subsample: expected {name} lo <= hi, found {tuple(rng)}")
        self._check_target()

    def _check_target(self) -> None:
        edges, counts = self.target_edges, self.target_counts
        if (edges is None) != (counts is None):
            raise ConfigError(
                "subsample: a target distribution needs both bin edges and counts; "
                f"found edges={edges}, counts={counts}"
            )
        if edges is None:
            return
        if len(edges) != len(counts) + 1 or np.any(np.diff(edges) <= 0):
            raise ConfigError(
                f"subsample: expected K+1 ascending bin edges for K counts, found "
                f"{len(edges)} edges {list(edges)} and {len(counts)} counts"
            )
        if any(c < 0 for c in counts) or sum(counts) == 0:
            raise ConfigError(f"subsample: expected non-negative counts with a positive sum, "
                              f"found {list(counts)}")

    @property
    def methods(self) -> list[str]:
        """The names of the rules in use, for the provenance record."""
        names = {"return_range": self.return_range, "update_range": self.update_range,
                 "episodes": self.episodes, "transitions": self.transitions,
                 "target_distribution": self.target_counts}
        return [k for k, v in names.items() if v is not None] or ["all"]


def select_episodes(table: EpisodeTable, spec: SubsampleSpec, where: str = "vault") -> np.ndarray:
    """Indices into ``table`` of the chosen episodes, ascending (source order).

    Raises:
        DatasetError: fewer episodes than asked for, or the update index is missing.
    """
    cand = np.flatnonzero(table.complete)
    if spec.return_range is not None:
        lo, hi = spec.return_range
        cand = cand[(table.ret[cand] >= lo) & (table.ret[cand] <= hi)]
    if spec.update_range is not None:
        if table.update_min is None:
            raise DatasetError(f"{where}: update_range needs the table's update index")
        lo, hi = spec.update_range
        cand = cand[(table.update_min[cand] >= lo) & (table.update_max[cand] <= hi)]
    rng = np.random.default_rng(spec.seed)
    if spec.episodes is not None:
        _need(where, spec.episodes, cand.size, "episodes")
        cand = rng.choice(cand, size=spec.episodes, replace=False)
    elif spec.transitions is not None:
        cand = rng.permutation(cand)
        total = np.cumsum(table.length[cand])
        _need(where, spec.transitions, int(total[-1]) if total.size else 0, "transitions")
        cand = cand[: int(np.searchsorted(total, spec.transitions)) + 1]
    elif spec.target_counts is not None:
        cand = _draw_target(table, cand, spec, rng, where)
    return np.sort(cand)


def _draw_target(
    table: EpisodeTable, cand: np.ndarray, spec: SubsampleSpec, rng: np.random.Generator, where: str
) -> np.ndarray:
    """Draw ``counts[i]`` episodes from each return bin ``[edges[i], edges[i+1])``."""
    edges = np.asarray(spec.target_edges, np.float64)
    rets = table.ret[cand]
    idx = np.searchsorted(edges, rets, side="right") - 1
    idx[rets == edges[-1]] = len(edges) - 2  # last bin is closed
    chosen = []
    for i, want in enumerate(spec.target_counts):
        pool = cand[idx == i]
        _need(where, want, pool.size, f"episodes with return in bin {i} "
              f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == len(edges) - 2 else ')'}")
        chosen.append(rng.choice(pool, size=want, replace=False))
    return np.concatenate(chosen)


def _need(where: str, want: int, have: int, what: str) -> None:
    if have < want:
        raise DatasetError(
            f"{where}: asked for {want} {what}, found only {have} among the eligible complete "
            "episodes; ask for fewer or widen the filters"
        )


def pack_rows(lengths: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign episodes (in order) to the currently shortest of ``rows`` rows.

    Args:
        lengths: [E] int, episode lengths in output order.
        rows: number of output rows.

    Returns:
        ``(row [E], start [E], row_lengths [rows])`` of the output layout.
    """
    fill = np.zeros(rows, np.int64)
    out_row = np.zeros(len(lengths), np.int64)
    out_start = np.zeros(len(lengths), np.int64)
    for i, n in enumerate(lengths):
        r = int(np.argmin(fill))
        out_row[i], out_start[i] = r, fill[r]
        fill[r] += int(n)
    return out_row, out_start, fill


def subsample(
    src: Any, dst: str, spec: SubsampleSpec, progress: bool = False,
    table: EpisodeTable | None = None, layout: str = "rows",
) -> dict[str, Any]:
    """Write the episodes ``spec`` chooses from vault ``src`` into a new vault at ``dst``.

    Streams the source once for the episode table (unless ``table`` is given) and once for the
    data; memory holds one source chunk plus the open episode of each source row.

    Args:
        layout: ``"rows"`` (``spec.rows`` rows, padded) or ``"og-marl"`` (one row, no padding;
            see the module docstring).

    Returns:
        The provenance record written to ``metadata["marlvault"]["provenance"]``.

    Raises:
        ConfigError: unknown layout, or ``"og-marl"`` with ``spec.rows != 1``.
    """
    check_output_layout("subsample", layout)
    og_marl = layout == "og-marl"
    if og_marl and spec.rows != 1:
        raise ConfigError(
            f"subsample: --layout og-marl expected --rows 1 (one row is the layout), found "
            f"--rows {spec.rows}; fix: drop --rows, or use --layout rows for several rows"
        )
    with open_vault(src) as v:
        needs_update = spec.update_range is not None
        if table is None:
            table = episode_table(v, update_key=spec.update_key if needs_update else None,
                                  progress=progress)
        chosen = table.select(select_episodes(table, spec, where=str(v.path)))
        out_row, out_start, row_lengths = pack_rows(chosen.length, spec.rows)
        params = {k: v_ for k, v_ in asdict(spec).items() if v_ is not None and k != "extra"}
        prov = {
            "tool": "subsample", "sources": [str(v.path)], "method": spec.methods,
            "params": params, "seed": spec.seed, "episodes": chosen.num,
            "transitions": int(chosen.length.sum()), "layout": f"packed episodes, rows={spec.rows}",
            "row_lengths": row_lengths.tolist(), **spec.extra,
        }
        if og_marl:
            prov.update(layout="og-marl", order="by end step, then source row",
                        terminated=int(chosen.terminated.sum()),
                        truncated=int(chosen.truncated.sum()))
        meta = derived_metadata(v, prov)
        if not og_marl:  # one unpadded row: its valid length is num_steps
            meta["marlvault"]["row_lengths"] = row_lengths.tolist()
        with create_like(dst, step_specs(v), spec.rows, meta) as out:
            writer = PackedWriter(out, row_lengths)
            copy_episodes(v, chosen, out_row, writer, progress)
            writer.finish()
        return prov


def copy_episodes(
    v: Any, chosen: EpisodeTable, out_row: np.ndarray, writer: PackedWriter, progress: bool,
    label: str = "subsample",
) -> None:
    """Stream the source and hand each chosen episode, complete, to the writer in table order
    (by end step, then row). Also used by :mod:`marlvault.tools.export`."""
    by_start = np.argsort(chosen.start, kind="stable")
    nxt, active = 0, {}  # active: episode index -> list of flat pieces
    for t0, chunk in iter_flat_chunks(v, progress=label if progress else None):
        t1 = t0 + next(iter(chunk.values())).shape[1]
        while nxt < chosen.num and chosen.start[by_start[nxt]] < t1:
            active[int(by_start[nxt])] = []
            nxt += 1
        finished = []
        for e, pieces in active.items():
            b, a, z = chosen.row[e], max(chosen.start[e], t0) - t0, min(chosen.stop[e], t1) - t0
            pieces.append({k: x[b, a:z].copy() for k, x in chunk.items()})  # not a view: the
            # chunk must be freed while the episode waits in the writer
            if chosen.stop[e] <= t1:
                finished.append(e)
        for e in sorted(finished):  # table order = (stop, row) = output order
            pieces = active.pop(e)
            writer.add(int(out_row[e]), {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]})
