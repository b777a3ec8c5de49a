"""Small vaults from scripted rollouts, for offline tests, checks and benchmarks.

This is not the recorder (``marlvault/record``): it rolls out any jittable policy in a
:class:`~marlvault.envs.vec.VecEnv` for a fixed number of steps and writes the result in one go,
in the OG-MARL schema (``observations``, ``actions``, ``rewards``, ``terminals``,
``truncations``, ``infos.legals``, ``infos.state``, and ``infos.next_obs``: the real observation
reached at a truncation), with ``env_name``/``scenario`` under ``metadata["marlvault"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.envs.base import Array, MarlEnv
from marlvault.envs.vec import VecEnv

Policy = Callable[[Array, Array, Array], Array]  # (key, obs [E,N,O], legal [E,N,A]) -> [E,N]


def random_policy(key: Array, obs: Array, legal: Array) -> Array:
    """Uniform over legal actions."""
    logits = jnp.where(legal > 0, 0.0, -1e9)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def rollout(env: MarlEnv, policy: Policy, num_envs: int, num_steps: int, key: Array) -> dict:
    """Runs ``policy`` and returns the vault pytree, leaves ``[B, T, ...]`` numpy."""
    vec = VecEnv(env, num_envs)
    n = env.spec.num_agents

    def step(carry: Any, k: Array) -> tuple[Any, dict]:
        vstate, ts = carry
        actions = policy(k, ts.obs, ts.legal.astype(jnp.float32))
        vstate, out = vec.step(vstate, actions)
        flags = out.timestep
        per_agent = lambda f: jnp.broadcast_to(f[:, None], (num_envs, n)).astype(jnp.float32)  # noqa: E731
        row = {
            "observations": ts.obs,
            "actions": actions,
            "rewards": flags.reward.astype(jnp.float32),
            "terminals": per_agent(flags.terminated),
            "truncations": per_agent(flags.truncated & ~flags.terminated),
            "infos": {"legals": ts.legal.astype(jnp.float32), "state": ts.state,
                      "next_obs": jnp.where(flags.truncated[:, None, None], out.final_obs, 0.0)},
        }
        return (vstate, out.timestep), row

    key, reset_key = jax.random.split(key)
    _, rows = jax.jit(lambda k, ks: jax.lax.scan(step, vec.reset(k), ks))(
        reset_key, jax.random.split(key, num_steps))
    return jax.tree.map(lambda x: np.swapaxes(np.asarray(x), 0, 1), rows)


def write_vault(path: str, tree: dict, env: MarlEnv, extra: dict | None = None) -> str:
    """Writes ``tree`` (``[B, T, ...]``) as a new vault with env metadata; returns the path."""
    from marlvault.vault.vault import Vault

    meta = {"marlvault": {"env_name": env.spec.env_name, "scenario": env.spec.scenario,
                          **(extra or {})}}
    with Vault.create(path, tree, metadata=meta) as vault:
        vault.append(tree)
        vault.flush()
    return str(path)
