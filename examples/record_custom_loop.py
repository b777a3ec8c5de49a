"""Recording from your own jitted loop with :class:`marlvault.record.Recorder`.

Any code that produces experience on the device can hand it to a ``Recorder``: ``add`` returns at
once (the copy to the host and the write happen on a background thread) and only blocks when the
writer falls ``queue_size`` items behind. Leaving the ``with`` block flushes and commits.

Run: ``python examples/record_custom_loop.py /tmp/random-lbf.vlt``
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from marlvault.envs.registry import make_env
from marlvault.envs.vec import VecEnv
from marlvault.record import Recorder
from marlvault.vault import Vault

NUM_ENVS, STEPS_PER_CALL, CALLS = 8, 64, 4


def make_rollout(vec: VecEnv):
    """A jitted random-policy rollout: ``(vstate, ts, key) -> (..., dict of [T, B, ...])``."""

    def step(carry, _):
        vstate, ts, key = carry
        key, k = jax.random.split(key)
        logits = jnp.where(ts.legal, 0.0, -jnp.inf)  # uniform over legal actions
        action = jax.random.categorical(k, logits).astype(jnp.int32)
        vstate, out = vec.step(vstate, action)
        nts = out.timestep
        flag = lambda x: jnp.repeat(x[:, None], vec.spec.num_agents, 1).astype(jnp.float32)  # noqa: E731
        row = {
            "observations": ts.obs, "actions": action, "rewards": nts.reward,
            "terminals": flag(nts.terminated), "truncations": flag(nts.truncated),
            "infos": {"legals": ts.legal.astype(jnp.float32)},
        }  # fmt: skip
        return (vstate, nts, key), row

    @jax.jit
    def rollout(vstate, ts, key):
        return jax.lax.scan(step, (vstate, ts, key), None, STEPS_PER_CALL)

    return rollout


def to_vault_layout(item):
    """``[T, B, ...]`` (time-major, as ``lax.scan`` stacks) → the vault's ``[B, T, ...]``."""
    return jax.tree_util.tree_map(lambda x: np.swapaxes(x, 0, 1), item)


def main(path: str) -> int:
    vec = VecEnv(make_env("lbf", "8x8-2p-2f-coop"), NUM_ENVS)
    rollout = make_rollout(vec)
    vstate, ts = jax.jit(vec.reset)(jax.random.PRNGKey(0))  # jitted: one program, not one per op
    carry = (vstate, ts, jax.random.PRNGKey(1))
    _, first = rollout(*carry)  # shapes for the vault: one call's worth, in vault layout
    example = to_vault_layout(jax.device_get(first))
    with Recorder.create(path, example, to_batch=to_vault_layout,
                         metadata={"marlvault": {"env_name": "lbf", "scenario": "8x8-2p-2f-coop"}}
                         ) as recorder:  # fmt: skip
        for _ in range(CALLS):
            carry, traj = rollout(*carry)
            recorder.add(traj)  # returns at once; device arrays are fine
    with Vault.open(path) as vault:
        print(f"{path}: {vault.num_rows} rows x {vault.num_steps} steps, "
              f"{int(vault.episodes['complete'].sum())} complete episodes")  # fmt: skip
        return vault.num_steps


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "vaults/examples/random-lbf.vlt")
