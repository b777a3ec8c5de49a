"""Episode windows: vault pytrees -> per-step arrays -> windows of one episode each.

Pure array code shared by both dataset modes (numpy on the host, ``jnp`` inside ``jit``); the
vault itself is opened only by :mod:`marlvault.offline.dataset`.

**Windows never cross an episode boundary.** Every window starts at the first step of an episode
or at a multiple of ``stride`` steps after it, and covers ``seq_len`` steps; steps after the
episode's last step (or past the end of the row) are padding with ``mask == 0``. We chose this
over windows that start anywhere and mask the foreign part because (a) a recurrent network then
never needs a reset inside a window — the only reset is at the window start, which for the first
window of an episode *is* the true initial state, and (b) padding steps are cheap to spot in a
mask, whereas a window holding two episodes silently trains the second on the first's hidden
state (one of OG-MARL's faults). Transitions are windows of length one started at every step.
Steps at or beyond a row's valid length (``Vault.row_lengths``: the zero padding ``combine`` and
``subsample`` write) are absent like steps past the end of the row: no window starts there and
no window's mask covers them.

**Bootstrapping.** Each window also carries the observation *after* each step: position ``i + 1``
of ``obs`` is the next observation of step ``i``. Inside an episode it is the next recorded step.
At a truncation it is the recorded ``infos.next_obs`` (and ``infos.next_state``,
``infos.next_legals``) when the vault has them. ``discount = 1 - terminal``: a terminal stops the
bootstrap, a truncation does not. ``target_mask`` is 0 where the next observation is unknown — a
truncation without a recorded next observation, or the last recorded step of a row whose episode
is still running — so those TD targets are left out instead of being bootstrapped from the next
episode's first observation.

**Observation statistics** (TD3+BC's normalisation): per-agent moments of the raw observations
over the valid steps (``present``), merged block by block, so both dataset modes compute the same
:class:`ObsStats`; :func:`normalise_obs` applies them and leaves the agent ids alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from marlvault.errors import DatasetError
from marlvault.schema import (
    ACTIONS,
    LEGALS,
    NEXT_LEGALS,
    NEXT_OBS,
    NEXT_STATE,
    OBS,
    REQUIRED,
    REWARDS,
    STATE,
    TERMINALS,
    TRUNCATIONS,
)


@dataclass(frozen=True)
class DataSpec:
    """Static facts about a dataset, known before any batch is drawn."""

    num_rows: int
    """B, rows (parallel environment streams) in the vault."""
    num_steps: int
    """T, committed time steps per row."""
    num_agents: int
    """N, agents."""
    obs_dim: int
    """O, raw per-agent observation size (without agent ids)."""
    action_dim: int
    """A, discrete actions per agent (from ``infos.legals``, else ``max(actions) + 1``);
    continuous: the size of each agent's action vector."""
    state_dim: int
    """S, global state size; 0 when the vault has no ``infos.state``."""
    has_legals: bool
    """The vault records legal-action masks (else every action is legal)."""
    has_next_obs: bool
    """The vault records the real next observation at truncations."""
    add_agent_ids: bool
    """Batches carry one-hot agent ids appended to the observations."""
    bootstrap_truncations: bool = False
    """Truncated steps keep their TD target: the vault records ``infos.next_obs`` (and
    ``infos.next_state`` when the state is needed)."""
    continuous: bool = False
    """Actions are ``(B, T, N, A)`` float vectors (no legal masks; ``legal`` is all ones)."""
    action_low: float = -1.0
    """Continuous: lower bound of every action component."""
    action_high: float = 1.0
    """Continuous: upper bound of every action component."""
    bounds_assumed: bool = False
    """Continuous: the vault's metadata gives no bounds, ``[-1, 1]`` is assumed."""
    next_step: bool = True
    """Windows carry ``obs``, ``legal`` and ``state`` at position ``L`` too (each window step's
    next one, for TD targets): ``[L+1, K, ...]``; False: ``[L, K, ...]``."""
    obs_stats: ObsStats | None = field(default=None, compare=False, repr=False)
    """Per-agent mean and std of the raw observations over the valid steps
    (:meth:`~marlvault.offline.dataset.OfflineDataset.obs_stats`), for algorithms that
    normalise observations (``DataNeeds.obs_stats``); None when not computed."""

    @property
    def input_dim(self) -> int:
        """Per-agent observation size the networks see (``O + N`` with agent ids)."""
        return self.obs_dim + (self.num_agents if self.add_agent_ids else 0)

    @property
    def has_state(self) -> bool:
        return self.state_dim > 0


class ObsStats(NamedTuple):
    """Mean and standard deviation of every raw observation feature of every agent, over the
    valid steps of a dataset (numpy on the host, jax arrays in a train state)."""

    mean: Any  # [N, O] float32
    std: Any  # [N, O] float32, population std (ddof 0, as numpy's and TD3+BC's)


class StepArrays(NamedTuple):
    """Per-step arrays of a block of rows, ``[row, time, ...]`` (numpy or jax)."""

    obs: Any  # [B, T, N, O] float32
    actions: Any  # [B, T, N] int32, or [B, T, N, A] float32 (continuous)
    rewards: Any  # [B, T, N] float32
    terminal: Any  # [B, T] float32, 1 where the episode terminated after this step
    truncated: Any  # [B, T] float32, 1 where it was cut (and did not terminate)
    legal: Any  # [B, T, N, A] float32
    state: Any  # [B, T, S] float32 (S may be 0)
    next_obs: Any  # [B, T, N, O] float32 or None: real next observation at truncations
    next_state: Any  # [B, T, S] float32 or None
    next_legal: Any  # [B, T, N, A] float32 or None
    present: Any  # [B, T] float32, 1 for recorded steps, 0 for padding


class SequenceBatch(NamedTuple):
    """A batch of K windows of L steps, time-major. Position ``i + 1`` is step ``i``'s next."""

    obs: Any  # [L+1, K, N, O'] float32 (O' = O + N with agent ids); [L, ...] without next_step
    legal: Any  # [L+1, K, N, A] float32 ([L, ...] without ``DataSpec.next_step``)
    state: Any  # [L+1, K, S] float32 ([L, ...] without ``DataSpec.next_step``)
    actions: Any  # [L, K, N] int32, or [L, K, N, A] float32 (continuous)
    rewards: Any  # [L, K, N] float32
    terminal: Any  # [L, K] float32
    truncated: Any  # [L, K] float32
    mask: Any  # [L, K] float32, 1 where the step belongs to the window's episode
    target_mask: Any  # [L, K] float32, 1 where the step's TD target is known

# --- reading vault pytrees -----------------------------------------------------------------------
def _leaf(tree: Any, dotted: str) -> Any:
    """The leaf at ``a.b.c`` of a nested dict (or None)."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _team_flag(flag: Any, path: str, key: str, shape: tuple) -> np.ndarray:
    """``[B, T, N]`` or ``[B, T]`` flags -> ``[B, T]`` float32 (any agent)."""
    flag = np.asarray(flag, dtype=np.float32)
    if flag.ndim == 3:
        return flag.max(axis=2)
    if flag.ndim == 2:
        return flag
    raise DatasetError(
        f"{path}: '{key}' expected shape (B, T, N) or (B, T) matching {shape}, got {flag.shape}; "
        "re-record the vault with the OG-MARL schema"
    )


def _continuous_bounds(metadata: dict | None, path: str, size: int) -> tuple[tuple, bool]:
    """``((low, high), assumed)`` of continuous actions from ``metadata["action_space"]``
    (the ``"marlvault"`` section); ``[-1, 1]`` (MaMuJoCo's, as in OG-MARL's vaults) when absent."""
    space = (metadata or {}).get("action_space")
    if not isinstance(space, dict) or space.get("kind") != "continuous":
        return (-1.0, 1.0), True
    try:
        low, high = float(space["low"]), float(space["high"])
    except (KeyError, TypeError, ValueError):
        low, high = math.nan, math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high) or space.get(
            "size", size) != size:
        raise DatasetError(
            f"{path}: metadata action_space {space} does not describe the recorded continuous "
            f"actions (size {size}, finite low < high); fix: correct the vault's metadata"
        )
    return (low, high), False


def spec_from_tree(
    tree: Any, path: str, num_steps: int, add_agent_ids: bool, need_state: bool = False, *,
    continuous_ok: bool = False, metadata: dict | None = None, algorithm: str = "",
    next_step: bool = True,
) -> DataSpec:
    """Checks a vault pytree (``[B, T, ...]`` leaves) and describes it.

    Continuous actions (``(B, T, N, A)``) are refused with a :class:`DatasetError` unless
    ``continuous_ok`` (the algorithm ``algorithm`` learns from them); their bounds come from
    ``metadata`` (the vault's ``"marlvault"`` section), ``[-1, 1]`` when it gives none.
    """
    for key in REQUIRED:
        if _leaf(tree, key) is None:
            raise DatasetError(
                f"{path}: missing key '{key}'; expected the OG-MARL schema ({', '.join(REQUIRED)}"
                ", optional truncations, infos.legals, infos.state); record or convert the vault "
                "with that layout"
            )
    obs = _leaf(tree, OBS)
    if obs.ndim != 4:
        raise DatasetError(
            f"{path}: '{OBS}' expected shape (B, T, N, O), got {obs.shape}; flatten "
            "observations per agent before recording"
        )
    legals, state = _leaf(tree, LEGALS), _leaf(tree, STATE)
    actions = _leaf(tree, ACTIONS)
    bounds, assumed = (-1.0, 1.0), False
    if actions.ndim == 4:
        if not continuous_ok:
            raise DatasetError(
                f"{path}: '{ACTIONS}' has shape (B, T, N, A) with (N, A) = "
                f"{tuple(actions.shape[2:])}: continuous actions, which "
                f"{algorithm or 'this algorithm'} cannot learn from (it takes "
                "discrete actions (B, T, N)); fix: train `bc` on this vault (Gaussian behaviour "
                "cloning), or a continuous-action offline algorithm (iddpg-bc, iddpg-cql, "
                "maddpg-cql, omar)"
            )
        legals = None  # every action vector is allowed (a recorded all-ones mask is ignored)
        bounds, assumed = _continuous_bounds(metadata, path, int(actions.shape[3]))
        action_dim = int(actions.shape[3])
    elif actions.ndim != 3:
        raise DatasetError(
            f"{path}: '{ACTIONS}' expected discrete actions (B, T, N) or continuous actions "
            f"(B, T, N, A), found {actions.ndim} axes ({tuple(actions.shape[2:])} after B, T); "
            "fix: re-record the vault with "
            "the OG-MARL schema"
        )
    elif legals is not None:
        action_dim = int(legals.shape[-1])
    else:
        action_dim = int(np.max(actions, initial=0)) + 1
    if need_state and state is None:
        raise DatasetError(
            f"{path}: {algorithm or 'QMIX'} needs the global state '{STATE}' (B, T, S), but the "
            "vault has none; record with an environment that provides a state, or use an "
            "independent learner (iql-cql; iddpg-cql for continuous actions)"
        )
    return DataSpec(
        num_rows=int(obs.shape[0]),
        num_steps=int(num_steps),
        num_agents=int(obs.shape[2]),
        obs_dim=int(obs.shape[3]),
        action_dim=action_dim,
        state_dim=0 if state is None else int(np.prod(state.shape[2:])),
        has_legals=legals is not None,
        has_next_obs=_leaf(tree, NEXT_OBS) is not None,
        add_agent_ids=add_agent_ids,
        bootstrap_truncations=_leaf(tree, NEXT_OBS) is not None
        and (not need_state or _leaf(tree, NEXT_STATE) is not None),
        continuous=actions.ndim == 4,
        action_low=bounds[0],
        action_high=bounds[1],
        bounds_assumed=assumed,
        next_step=next_step,
    )


def steps_from_tree(tree: Any, spec: DataSpec, path: str = "<vault>") -> StepArrays:
    """Converts a vault pytree block (``[B, T', ...]`` numpy) to :class:`StepArrays`."""
    obs = np.asarray(_leaf(tree, OBS), dtype=np.float32)
    b, t = obs.shape[:2]
    shape = (b, t)
    terminal = _team_flag(_leaf(tree, TERMINALS), path, TERMINALS, shape)
    trunc = _leaf(tree, TRUNCATIONS)
    truncated = np.zeros(shape, np.float32) if trunc is None else _team_flag(
        trunc, path, TRUNCATIONS, shape)
    truncated = truncated * (1.0 - terminal)  # a step that terminates is never "cut"
    legals = None if spec.continuous else _leaf(tree, LEGALS)
    if legals is None:
        legals = np.ones((b, t, spec.num_agents, spec.action_dim), np.float32)
    state = _leaf(tree, STATE)
    state = np.zeros((b, t, 0), np.float32) if state is None else np.asarray(
        state, np.float32).reshape(b, t, -1)

    if spec.continuous:
        actions = np.asarray(_leaf(tree, ACTIONS), np.float32).reshape(b, t, spec.num_agents, -1)
        tol = 1e-5 * (spec.action_high - spec.action_low)
        if actions.size and not (actions.min() >= spec.action_low - tol
                                 and actions.max() <= spec.action_high + tol):
            where = "assumed" if spec.bounds_assumed else "recorded in the metadata"
            raise DatasetError(
                f"{path}: continuous '{ACTIONS}' range over [{actions.min():.4g}, "
                f"{actions.max():.4g}], outside the bounds [{spec.action_low}, "
                f"{spec.action_high}] {where}; fix: set metadata['marlvault']['action_space'] "
                "= {'kind': 'continuous', 'size': A, 'low': LO, 'high': HI}"
            )
    else:
        actions = np.asarray(_leaf(tree, ACTIONS)).astype(np.int32).reshape(b, t, -1)

    def optional(key: str, dims: int) -> Any:
        leaf = _leaf(tree, key)
        return None if leaf is None else np.asarray(leaf, np.float32).reshape(b, t, *dims)

    return StepArrays(
        obs=obs,
        actions=actions,
        rewards=np.asarray(_leaf(tree, REWARDS), np.float32).reshape(b, t, -1),
        terminal=terminal,
        truncated=truncated,
        legal=np.asarray(legals, np.float32),
        state=state,
        next_obs=optional(NEXT_OBS, obs.shape[2:]),
        next_state=optional(NEXT_STATE, state.shape[2:]) if spec.has_state else None,
        next_legal=None if spec.continuous else optional(NEXT_LEGALS,
                                                         (spec.num_agents, spec.action_dim)),
        present=np.ones(shape, np.float32),
    )


def mark_padding(steps: StepArrays, row_lengths: Any, start: int = 0) -> StepArrays:
    """Marks steps at or beyond each row's valid length as absent (``present == 0``).

    Args:
        steps: a block of steps whose first step is time step ``start`` of every row.
        row_lengths: ``[B]`` int valid steps per row (``Vault.row_lengths``), or None (all valid).
        start: time step of the block's first step.
    """
    if row_lengths is None:
        return steps
    valid = valid_steps(row_lengths, start, steps.present.shape[1])
    return steps._replace(present=steps.present * valid.astype(np.float32))


def valid_steps(row_lengths: Any, start: int, length: int) -> np.ndarray:
    """``[B, length]`` bool: time steps ``start .. start + length - 1`` of each row lie inside its
    valid length (``row_lengths`` ``[B]`` int)."""
    return (start + np.arange(length))[None, :] < np.asarray(row_lengths)[:, None]


def pad_steps(steps: StepArrays, pad: int) -> StepArrays:
    """Appends ``pad`` absent steps (zeros, ``present == 0``) to every row."""

    def one(x: Any) -> Any:
        if x is None:
            return None
        widths = [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)
        return np.pad(x, widths)

    return StepArrays(*(one(x) for x in steps))


def concat_steps(a: StepArrays, b: StepArrays) -> StepArrays:
    """Joins two blocks along time."""
    return StepArrays(*(
        None if x is None else np.concatenate([x, y], axis=1) for x, y in zip(a, b, strict=True)
    ))


def slice_steps(steps: StepArrays, start: int, stop: int | None = None) -> StepArrays:
    """The steps from ``start`` up to ``stop`` (a view)."""
    return StepArrays(*(None if x is None else x[:, start:stop] for x in steps))


# --- observation statistics ----------------------------------------------------------------------
OBS_NORM_EPS = 1e-3
"""TD3+BC's ``epsilon`` in ``(o - mean) / (std + epsilon)``."""


class ObsMoments(NamedTuple):
    """Running moments of the raw observations (Chan et al.'s parallel form), float64."""

    count: int  # valid steps seen (every agent has one observation per step)
    mean: np.ndarray  # [N, O] float64
    m2: np.ndarray  # [N, O] float64 sum of squared deviations from ``mean``


def obs_moments(obs: np.ndarray, present: np.ndarray) -> ObsMoments:
    """Moments of one block's observations over its valid steps.

    Args:
        obs: [B, T, N, O] raw observations (no agent ids).
        present: [B, T] 1 for recorded steps inside the row's valid length, 0 for padding.
    """
    x = np.asarray(obs, np.float64)[np.asarray(present) > 0]  # [V, N, O]
    if not x.shape[0]:
        return ObsMoments(0, np.zeros(x.shape[1:]), np.zeros(x.shape[1:]))
    mean = x.mean(axis=0)
    return ObsMoments(int(x.shape[0]), mean, np.square(x - mean).sum(axis=0))


def merge_moments(a: ObsMoments, b: ObsMoments) -> ObsMoments:
    """The moments of two blocks together (exact up to rounding, in any order)."""
    if not b.count:
        return a
    if not a.count:
        return b
    n = a.count + b.count
    delta = b.mean - a.mean
    return ObsMoments(n, a.mean + delta * (b.count / n),
                      a.m2 + b.m2 + np.square(delta) * (a.count * b.count / n))


def stats_from_moments(moments: ObsMoments, path: str = "<vault>") -> ObsStats:
    """:class:`ObsStats` (float32) of accumulated moments.

    Raises:
        DatasetError: no valid step was seen.
    """
    if moments.count < 1:
        raise DatasetError(
            f"{path}: expected at least one valid step to compute observation statistics, found "
            "none (every step is padding); fix: record data into the vault first"
        )
    std = np.sqrt(moments.m2 / moments.count)
    return ObsStats(moments.mean.astype(np.float32), std.astype(np.float32))


def normalise_obs(obs: Any, stats: ObsStats, xp: Any = jnp) -> Any:
    """TD3+BC's ``(o - mean) / (std + 1e-3)`` on the raw features; appended agent ids stay 0/1.

    Args:
        obs: [..., N, O'] observations (``O' = O + N`` with agent ids).
        stats: mean and std, each [N, O].
    """
    o = stats.mean.shape[-1]
    raw = (obs[..., :o] - stats.mean) / (stats.std + OBS_NORM_EPS)
    return xp.concatenate([raw, obs[..., o:]], axis=-1)


# --- windows -------------------------------------------------------------------------------------
def episode_positions(ended: np.ndarray, pos_before: np.ndarray, ended_before: np.ndarray):
    """Each step's index inside its episode.

    Args:
        ended: ``[B, T]`` bool, the episode ends after this step (terminal or truncated).
        pos_before: ``[B]`` int, position of the step just before this block (-1 if none).
        ended_before: ``[B]`` bool, that step ended its episode.

    Returns:
        ``[B, T]`` int64 positions (0 at each episode's first step).
    """
    b, t = ended.shape
    steps = np.broadcast_to(np.arange(t), (b, t))
    is_start = np.zeros((b, t), bool)
    is_start[:, 1:] = ended[:, :-1]
    is_start[:, 0] = ended_before | (pos_before < 0)
    init = np.where(is_start, steps, -(10**12))
    init[:, 0] = np.where(is_start[:, 0], 0, -(pos_before + 1))
    return steps - np.maximum.accumulate(init, axis=1)


def window_starts(positions: np.ndarray, present: np.ndarray, stride: int, limit: int):
    """Rows and start steps of every window whose start is at most ``limit``.

    Returns:
        ``(rows, t0)``, two ``[K]`` int32 arrays.
    """
    ok = (positions % stride == 0) & (present > 0)
    ok[:, limit + 1 :] = False
    rows, t0 = np.nonzero(ok)
    return rows.astype(np.int32), t0.astype(np.int32)


def one_hot_ids(num_agents: int, xp: Any = np) -> Any:
    """``[N, N]`` float32 identity."""
    return xp.eye(num_agents, dtype=xp.float32)


def _with_ids(obs: Any, spec: DataSpec, xp: Any) -> Any:
    if not spec.add_agent_ids:
        return obs
    ids = xp.broadcast_to(one_hot_ids(spec.num_agents, xp), (*obs.shape[:-2], spec.num_agents,
                                                               spec.num_agents))
    return xp.concatenate([obs, ids], axis=-1)


def _replace_at_trunc(seq: Any, nxt: Any, trunc: Any, xp: Any) -> Any:
    """Positions ``1..P-1`` of ``seq`` ``[K, P, ...]`` take ``nxt[:, i]`` where step ``i`` was
    truncated (``nxt``, ``trunc``: ``[K, L, ...]``, ``P`` is ``L + 1`` or ``L``)."""
    if nxt is None:
        return seq
    n = seq.shape[1] - 1
    cond = trunc[:, :n].reshape(*trunc[:, :n].shape, *([1] * (seq.ndim - 2))) > 0
    tail = xp.where(cond, nxt[:, :n], seq[:, 1:])
    return xp.concatenate([seq[:, :1], tail], axis=1)


def gather_windows(steps: StepArrays, rows: Any, t0: Any, seq_len: int, spec: DataSpec,
                   xp: Any = np, agent_ids: bool = True) -> SequenceBatch:
    """Cuts K windows out of padded steps, batch-major (``[K, L(+1), ...]``).

    ``steps`` must hold at least ``max(t0) + seq_len + 1`` steps per row (see :func:`pad_steps`).
    Works on numpy (``xp=np``) and inside ``jit`` (``xp=jnp``). ``agent_ids=False`` leaves the
    observations raw even when ``spec.add_agent_ids`` (the caller appends them). Without
    ``spec.next_step`` the inputs (obs, legal, state) stop at position ``L - 1``.
    """
    idx = t0[:, None] + xp.arange(seq_len + 1)[None, :]  # [K, L+1]
    r = rows[:, None]
    step_idx = idx[:, :-1]
    inputs_idx = idx if spec.next_step else step_idx  # [K, L+1] or [K, L]
    terminal, truncated = steps.terminal[r, step_idx], steps.truncated[r, step_idx]  # [K, L]
    ended = xp.maximum(terminal, truncated)
    present = steps.present[r, idx]  # [K, L+1]
    alive = xp.cumprod(1.0 - ended, axis=1)  # 1 while no earlier step of the window ended
    mask = present[:, :-1] * xp.concatenate([xp.ones_like(alive[:, :1]), alive[:, :-1]], axis=1)
    next_known = (1.0 - ended) * present[:, 1:]
    if spec.bootstrap_truncations:
        next_known = next_known + truncated
    target_mask = mask * xp.clip(terminal + next_known, 0.0, 1.0)
    obs = _replace_at_trunc(steps.obs[r, inputs_idx], _take(steps.next_obs, r, step_idx),
                            truncated, xp)
    next_legal = _take(steps.next_legal, r, step_idx)
    if next_legal is None and spec.has_next_obs:  # next observation known, its mask not
        next_legal = xp.ones_like(steps.legal[r, step_idx])
    legal = _replace_at_trunc(steps.legal[r, inputs_idx], next_legal, truncated, xp)
    state = _replace_at_trunc(steps.state[r, inputs_idx], _take(steps.next_state, r, step_idx),
                              truncated, xp)
    return SequenceBatch(
        obs=_with_ids(obs, spec, xp) if agent_ids else obs,
        legal=legal,
        state=state,
        actions=steps.actions[r, step_idx],
        rewards=steps.rewards[r, step_idx],
        terminal=terminal,
        truncated=truncated,
        mask=mask,
        target_mask=target_mask,
    )


def _take(x: Any, r: Any, idx: Any) -> Any:
    return None if x is None else x[r, idx]


def time_major(batch: SequenceBatch, xp: Any = jnp) -> SequenceBatch:
    """``[K, L, ...]`` -> ``[L, K, ...]`` for every field."""
    return SequenceBatch(*(xp.swapaxes(x, 0, 1) for x in batch))
