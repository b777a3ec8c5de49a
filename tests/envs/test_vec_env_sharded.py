"""VecEnv inside ``shard_map`` over 4 forced CPU devices equals the unsharded batch (slow: runs a
subprocess, because forcing devices must happen before JAX starts)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    from marlvault.envs import VecEnv, make_env

    assert len(jax.devices()) == 4, jax.devices()
    env = make_env("lbf", "8x8-2p-2f-coop", time_limit=3)
    full, local = VecEnv(env, 8), VecEnv(env, 2)
    vs, _ = jax.jit(full.reset)(jax.random.PRNGKey(0))
    counts = jnp.array([2, 0, 0, 1, 2, 2, 0, 1], jnp.int32)  # shard dones: 1, 0, 2, 0
    vs = vs._replace(env_state=vs.env_state.replace(step_count=counts))
    actions = jnp.zeros((8, 2), jnp.int32)
    mesh = Mesh(np.array(jax.devices()), ("env",))
    # check_vma=False: jumanji's LBF generator scans with an unvarying carry (as anakin does).
    sharded = jax.jit(jax.shard_map(
        local.step, mesh=mesh, in_specs=(P("env"), P("env")), out_specs=(P("env"), P("env")),
        check_vma=False,
    ))
    got = sharded(vs, actions)
    want = jax.jit(full.step)(vs, actions)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert got[1].metrics.done.tolist() == [True, False, False, False, True, True, False, False]
    print("SHARDED_OK")
    """
)


@pytest.mark.slow
def test_vec_env_in_shard_map_matches_global(multi_device_env):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=multi_device_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SHARDED_OK" in result.stdout
