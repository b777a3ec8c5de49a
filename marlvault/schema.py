"""THE recording schema: the one place that names the vault keys, their shapes, dtypes and meanings.

Learner trajectories ``[U, T, B, ...]`` become vault batches ``[B, U*T, ...]``: updates are
folded into *time*, never into rows, so row ``b`` is environment ``b``'s own continuous stream.
Keys follow OG-MARL's layout (see ``docs/RECORDING.md``). Per step, with N agents, O observation
size, A actions (discrete: how many; continuous: the action size) and S global state size:

=====================  ==============  =======  ===================================================
key                    per-step shape  dtype    meaning at step t
=====================  ==============  =======  ===================================================
observations           (N, O)          float32  each agent's observation before acting
actions                (N,) / (N, A)   int32 /  discrete action index / continuous action
                                       float32
rewards                (N,)            float32  reward after the action (team reward repeated)
terminals              (N,)            float32  1 where the episode terminated after this step
truncations            (N,)            float32  1 where the episode was cut after this step
infos.legals           (N, A)          float32  legal-action mask of the observation (discrete)
infos.state            (S,) / (N, S)   float32  global state (where the env has one; per agent
                                                where the env gives each agent its own)
infos.log_prob         (N,)            float32  extra: behaviour log-probability
infos.update           ()              int32    extra: learner update that produced the step
infos.next_obs         (N, O)          float32  extra: true next observation where truncations
                                                is 1, zeros elsewhere
=====================  ==============  =======  ===================================================

Everything else (the example batch for ``Vault.create``, the metadata's key table, the offline
loader's required keys, the tools' key names) is derived from :data:`FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from marlvault.errors import ConfigError
from marlvault.tree import unflatten

if TYPE_CHECKING:  # annotations only: the vault imports the schema without every env package
    from marlvault.envs.base import EnvSpec

OBS = "observations"
ACTIONS = "actions"
REWARDS = "rewards"
TERMINALS = "terminals"
TRUNCATIONS = "truncations"
LEGALS = "infos.legals"
STATE = "infos.state"
LOG_PROB = "infos.log_prob"
UPDATE = "infos.update"
NEXT_OBS = "infos.next_obs"
NEXT_STATE = "infos.next_state"
"""Read, never written: the true next global state at truncations (converted datasets)."""
NEXT_LEGALS = "infos.next_legals"
"""Read, never written: the true next legal-action mask at truncations (converted datasets)."""

REQUIRED = (OBS, ACTIONS, REWARDS, TERMINALS)
"""Keys every dataset must have (OG-MARL's minimum); truncations default to zeros."""
EXTRAS = ("log_prob", "update", "next_obs")
"""Optional extras, recorded under ``infos.<name>`` (``record.extras``)."""


@dataclass(frozen=True)
class Field:
    """One recorded key."""

    key: str
    """Flat dotted vault key, e.g. ``"infos.legals"``."""
    source: str
    """Field of the learner's ``Trajectory`` it comes from."""
    dims: tuple[str, ...]
    """Per-step shape in symbols of :func:`dim_sizes` (``("N", "O")``)."""
    dtype: np.dtype
    """Stored dtype."""
    meaning: str
    """One line: what the value at step t is."""


def _f(key: str, source: str, dims: tuple[str, ...], dtype: Any, meaning: str) -> Field:
    return Field(key, source, dims, np.dtype(dtype), meaning)


FIELDS: tuple[Field, ...] = (
    _f(OBS, "obs", ("N", "O"), np.float32, "each agent's observation before acting"),
    _f(ACTIONS, "action", ("N",), np.int32, "discrete action index taken by each agent"),
    _f(REWARDS, "reward", ("N",), np.float32,
       "reward after the action, team reward repeated per agent"),
    _f(TERMINALS, "terminated", ("N",), np.float32,
       "1 where the episode ended by termination after this step"),
    _f(TRUNCATIONS, "truncated", ("N",), np.float32,
       "1 where the episode was cut (time limit, or a gap in recording) after this step"),
    _f(LEGALS, "legal", ("N", "A"), np.float32, "legal-action mask of the observation"),
    _f(STATE, "state", ("S",), np.float32, "global state before acting"),
    _f(LOG_PROB, "log_prob", ("N",), np.float32, "behaviour log-probability of the action"),
    _f(UPDATE, "update", (), np.int32,
       "index of the learner update whose rollout produced the step"),
    _f(NEXT_OBS, "final_obs", ("N", "O"), np.float32,
       "true next observation where truncations is 1, else zeros"),
)
"""Every key, in vault order, in its discrete form (see :func:`fields` for a given env)."""

CONTINUOUS_ACTIONS = _f(ACTIONS, "action", ("N", "A"), np.float32,
                        "continuous action taken by each agent (bounds in metadata)")
PER_AGENT_STATE = _f(STATE, "state", ("N", "S"), np.float32,
                     "each agent's view of the global state before acting")
BY_KEY = {f.key: f for f in FIELDS}


def check_extras(extras: tuple[str, ...]) -> tuple[str, ...]:
    """Validates ``record.extras``; returns them in canonical order."""
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ConfigError(
            f"record.extras: expected a subset of {list(EXTRAS)}, found unknown {unknown}; "
            "fix: e.g. record.extras=log_prob,update"
        )
    return tuple(e for e in EXTRAS if e in extras)


def fields(spec: EnvSpec, extras: tuple[str, ...] = ()) -> tuple[Field, ...]:
    """The fields recorded for ``spec`` with ``extras``, in vault order."""
    extras = check_extras(extras)
    out = []
    for f in FIELDS:
        if f.key == ACTIONS and spec.continuous:
            f = CONTINUOUS_ACTIONS
        elif f.key == LEGALS and spec.continuous:
            continue
        elif f.key == STATE:
            if not spec.has_state:
                continue
            f = PER_AGENT_STATE if spec.state_per_agent else f
        elif f.key.startswith("infos.") and f.key.split(".", 1)[1] in EXTRAS:
            if f.key.split(".", 1)[1] not in extras:
                continue
        out.append(f)
    return tuple(out)


def dim_sizes(spec: EnvSpec) -> dict[str, int]:
    """Sizes of the symbols used in :attr:`Field.dims`."""
    return {"N": spec.num_agents, "O": spec.obs_dim, "A": spec.action_dim, "S": spec.state_dim}


def step_shape(field: Field, spec: EnvSpec) -> tuple[int, ...]:
    """Concrete per-step shape of ``field`` for ``spec``."""
    sizes = dim_sizes(spec)
    return tuple(sizes[d] for d in field.dims)


def meanings(spec: EnvSpec, extras: tuple[str, ...] = ()) -> dict[str, str]:
    """``{key: "meaning, (B,T,...) dtype"}`` for the vault metadata."""
    return {
        f.key: f"{f.meaning}, (B,T{''.join(',' + d for d in f.dims)}) {f.dtype.name}"
        for f in fields(spec, extras)
    }


def _rows_first(x: np.ndarray) -> np.ndarray:
    """``[U, T, B, ...]`` → ``[B, U*T, ...]`` (contiguous)."""
    u, t, b = x.shape[:3]
    return np.ascontiguousarray(np.moveaxis(x.reshape(u * t, b, *x.shape[3:]), 1, 0))


def _leaf(field: Field, traj: Any, truncated: np.ndarray, num_agents: int) -> np.ndarray:
    """One vault leaf ``[B, U*T, ...]`` of ``field`` from the trajectory."""
    if field.key == TRUNCATIONS:
        flag = truncated
    elif field.key == UPDATE:
        u, t, b = np.shape(traj.terminated)
        upd = np.asarray(traj.update, field.dtype)[:, None, None]
        return _rows_first(np.broadcast_to(upd, (u, t, b)))
    else:
        flag = _rows_first(np.asarray(getattr(traj, field.source)))
    if field.key in (TERMINALS, TRUNCATIONS):  # [B, T] bool -> [B, T, N]
        return np.repeat(flag.astype(field.dtype)[..., None], num_agents, axis=-1)
    if field.key == NEXT_OBS:
        return np.where(truncated[..., None, None], flag.astype(field.dtype), field.dtype.type(0))
    return flag.astype(field.dtype, copy=False)


def trajectory_to_batch(
    traj: Any,
    spec: EnvSpec,
    extras: tuple[str, ...] = (),
    cut_after: bool = False,
) -> dict[str, Any]:
    """Converts host-side learner rollouts into one vault batch.

    Args:
        traj: an ``ippo.Trajectory`` of numpy arrays, every field ``[U, T, B, ...]`` except
            ``update`` ``[U]``.
        spec: the environment's spec (N, sizes, discrete or continuous, global state).
        extras: subset of :data:`EXTRAS` to record.
        cut_after: mark the last step of every row as truncated, because the next recorded step
            does not follow it (a gap in recording); no episode then spans the gap.

    Returns:
        Nested dict, every leaf ``[B, U*T, *step_shape]`` in the dtypes of :func:`fields`.
    """
    truncated = _rows_first(np.asarray(traj.truncated, bool))
    if cut_after:
        truncated = truncated.copy()
        truncated[:, -1] |= ~_rows_first(np.asarray(traj.terminated, bool))[:, -1]
    flat = {f.key: _leaf(f, traj, truncated, spec.num_agents) for f in fields(spec, extras)}
    return unflatten(flat)


def example_batch(spec: EnvSpec, num_rows: int, extras: tuple[str, ...] = ()) -> dict[str, Any]:
    """A zero one-step batch ``[num_rows, 1, ...]``, made by :func:`trajectory_to_batch` itself.

    The learner's trajectory is mimicked by zeros shaped ``[1, 1, B, ...]`` from the same field
    table, so the vault is created with exactly what the conversion produces.
    """
    b = num_rows
    zeros: dict[str, np.ndarray] = {
        "terminated": np.zeros((1, 1, b), bool),
        "truncated": np.zeros((1, 1, b), bool),
        "update": np.zeros((1,), np.int32),
    }
    for f in fields(spec, extras):
        if f.source not in zeros:
            zeros[f.source] = np.zeros((1, 1, b, *step_shape(f, spec)), f.dtype)
    return trajectory_to_batch(SimpleNamespace(**zeros), spec, extras)
