"""The recording schema: learner trajectories ``[U, T, B, ...]`` → vault batches ``[B, U*T, ...]``.

Updates are folded into *time*, never into rows: row ``b`` of the vault is environment ``b``'s own
continuous stream, rollout after rollout. Keys follow OG-MARL's layout (see ``docs/FORMAT.md``):

=====================  ===============  =========  ================================================
key                    shape            dtype      meaning at step t
=====================  ===============  =========  ================================================
observations           (B, T, N, O)     float32    each agent's observation before acting
actions                (B, T, N)        int32      action taken
rewards                (B, T, N)        float32    reward after the action (team reward repeated)
terminals              (B, T, N)        float32    1 where the episode terminated after this step
truncations            (B, T, N)        float32    1 where the episode was cut after this step
infos.legals           (B, T, N, A)     float32    legal-action mask of the observation
infos.state            (B, T, S)        float32    global state (only where the env has one)
infos.log_prob         (B, T, N)        float32    extra ``log_prob``: behaviour log-probability
infos.update           (B, T)           int32      extra ``update``: learner update that made it
infos.next_obs         (B, T, N, O)     float32    extra ``next_obs``: true next observation where
                                                   ``truncations`` is 1, zeros elsewhere
=====================  ===============  =========  ================================================
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from marlvault.envs.base import EnvSpec
from marlvault.errors import ConfigError

EXTRAS = ("log_prob", "update", "next_obs")
"""Optional extras, recorded under ``infos.<name>``."""

KEY_MEANINGS: dict[str, str] = {
    "observations": "each agent's observation before acting, (B,T,N,O) float32",
    "actions": "discrete action taken by each agent, (B,T,N) int32",
    "rewards": "reward after the action, team reward repeated per agent, (B,T,N) float32",
    "terminals": "1 where the episode ended by termination after this step, (B,T,N) float32",
    "truncations": "1 where the episode was cut (time limit, or a gap in recording) after this "
    "step, (B,T,N) float32",
    "infos.legals": "legal-action mask of the observation, (B,T,N,A) float32",
    "infos.state": "global state before acting, (B,T,S) float32",
    "infos.log_prob": "behaviour log-probability of the action, (B,T,N) float32",
    "infos.update": "index of the learner update whose rollout produced the step, (B,T) int32",
    "infos.next_obs": "true next observation where truncations is 1, else zeros, (B,T,N,O) float32",
}


def check_extras(extras: tuple[str, ...]) -> tuple[str, ...]:
    """Validates ``record.extras``; returns them in canonical order."""
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ConfigError(
            f"record.extras: unknown extra(s) {unknown}; expected a subset of {list(EXTRAS)}; "
            f"fix: e.g. record.extras=log_prob,update"
        )
    return tuple(e for e in EXTRAS if e in extras)


def _rows_first(x: np.ndarray) -> np.ndarray:
    """``[U, T, B, ...]`` → ``[B, U*T, ...]`` (contiguous)."""
    u, t, b = x.shape[:3]
    return np.ascontiguousarray(np.moveaxis(x.reshape(u * t, b, *x.shape[3:]), 1, 0))


def _per_agent_flag(flag: np.ndarray, num_agents: int) -> np.ndarray:
    """``[B, T]`` bool → ``[B, T, N]`` float32."""
    return np.repeat(flag.astype(np.float32)[..., None], num_agents, axis=-1)


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
        spec: the environment's spec (N, whether it has a global state).
        extras: subset of :data:`EXTRAS` to record.
        cut_after: mark the last step of every row as truncated, because the next recorded step
            does not follow it (a gap in recording); no episode then spans the gap.

    Returns:
        Nested dict, every leaf ``[B, U*T, ...]`` in the dtypes of the module table.
    """
    n = spec.num_agents
    truncated = _rows_first(np.asarray(traj.truncated, bool))
    if cut_after:
        truncated = truncated.copy()
        truncated[:, -1] |= ~_rows_first(np.asarray(traj.terminated, bool))[:, -1]
    infos: dict[str, np.ndarray] = {
        "legals": _rows_first(np.asarray(traj.legal, np.float32)),
    }
    if spec.has_state:
        infos["state"] = _rows_first(np.asarray(traj.state, np.float32))
    if "log_prob" in extras:
        infos["log_prob"] = _rows_first(np.asarray(traj.log_prob, np.float32))
    if "update" in extras:
        u, t, b = np.shape(traj.terminated)
        upd = np.broadcast_to(np.asarray(traj.update, np.int32)[:, None, None], (u, t, b))
        infos["update"] = _rows_first(upd)
    if "next_obs" in extras:
        final = _rows_first(np.asarray(traj.final_obs, np.float32))
        infos["next_obs"] = np.where(truncated[..., None, None], final, np.float32(0))
    return {
        "observations": _rows_first(np.asarray(traj.obs, np.float32)),
        "actions": _rows_first(np.asarray(traj.action, np.int32)),
        "rewards": _rows_first(np.asarray(traj.reward, np.float32)),
        "terminals": _per_agent_flag(_rows_first(np.asarray(traj.terminated, bool)), n),
        "truncations": _per_agent_flag(truncated, n),
        "infos": infos,
    }


def example_batch(spec: EnvSpec, num_rows: int, extras: tuple[str, ...] = ()) -> dict[str, Any]:
    """Shapes and dtypes of a one-step batch (for ``Vault.create``)."""
    n, o, a, s = spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_dim

    def sds(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((num_rows, 1, *shape), np.dtype(dtype))

    infos = {"legals": sds((n, a), np.float32)}
    if spec.has_state:
        infos["state"] = sds((s,), np.float32)
    if "log_prob" in extras:
        infos["log_prob"] = sds((n,), np.float32)
    if "update" in extras:
        infos["update"] = sds((), np.int32)
    if "next_obs" in extras:
        infos["next_obs"] = sds((n, o), np.float32)
    return {
        "observations": sds((n, o), np.float32),
        "actions": sds((n,), np.int32),
        "rewards": sds((n,), np.float32),
        "terminals": sds((n,), np.float32),
        "truncations": sds((n,), np.float32),
        "infos": infos,
    }
