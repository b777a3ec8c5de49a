"""Each algorithm runs a few hundred updates on a tiny dataset and its loss goes down."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from marlvault.errors import DatasetError
from marlvault.offline import bc, iql_cql, qmix_cql, value
from marlvault.offline import dataset as ds
from marlvault.offline.common import make_scan_train
from marlvault.offline.train import ALGORITHMS

from .helpers import synthetic_tree

TINY = {"hidden": (32,), "rnn_size": 16, "seq_len": 6, "batch_size": 16, "num_updates": 200}


def _run(module, config, tree):
    spec = ds.spec_from_tree(tree, "<test>", tree["observations"].shape[1], True)
    algo = module.make_algorithm(config, spec)
    dconf = ds.DatasetConfig(seq_len=algo.seq_len, stride=algo.stride)
    data = ds.make_device_data(ds.steps_from_tree(tree, spec), dconf)
    sample = ds.make_sampler(spec, algo.seq_len, algo.batch_size)
    twenty = jax.jit(make_scan_train(algo, sample, 20))  # one program for every call
    state = algo.init(jax.random.key(0))
    state, m0 = twenty(state, data, jax.random.key(1))
    for i in range(config.num_updates // 20):
        state, _ = twenty(state, data, jax.random.key(100 + i))
    state, m1 = twenty(state, data, jax.random.key(3))
    return algo, state, m0, m1


@pytest.mark.parametrize("recurrent", [False, True])
def test_bc_loss_decreases(recurrent):
    config = bc.Config(recurrent=recurrent, **{**TINY, "lr": 3e-3})
    tree = synthetic_tree()
    algo, state, m0, m1 = _run(bc, config, tree)
    assert float(m1["loss"]) < 0.7 * float(m0["loss"])
    assert float(m1["accuracy"]) > 0.7
    assert float(m1["illegal_actions"]) == 0.0
    # greedy acting never picks the illegal last action
    obs = np.random.default_rng(1).normal(size=(5, 2, algo_input(tree))).astype(np.float32)
    legal = np.ones((5, 2, 4), np.float32)
    legal[..., 3] = 0
    hidden = algo.init_hidden(5)
    for _ in range(2):
        hidden, act = algo.act(algo.params(state), hidden, obs, legal, np.ones(5, bool))
        assert act.shape == (5, 2) and int(act.max()) < 3
    # sampled acting (evaluation with arch.eval_greedy=false) never picks it either
    for seed in range(20):
        _, act = algo.act(algo.params(state), algo.init_hidden(5), obs, legal, np.ones(5, bool),
                          jax.random.key(seed))  # fmt: skip
        assert act.shape == (5, 2) and int(act.max()) < 3


def algo_input(tree):
    """Per-agent network input size: the tree's raw observation size plus N agent ids."""
    _, _, n, o = tree["observations"].shape
    assert ds.spec_from_tree(tree, "<test>", 1, True).input_dim == o + n
    return o + n


def test_iql_cql_loss_decreases():
    config = iql_cql.Config(**TINY, lr=3e-3, cql_weight=1.0)
    _, _, m0, m1 = _run(iql_cql, config, synthetic_tree())
    assert float(m1["loss"]) < 0.7 * float(m0["loss"])
    assert np.isfinite(float(m1["mean_q"]))


def test_qmix_cql_loss_decreases_and_needs_state():
    config = qmix_cql.Config(**TINY, lr=3e-3, cql_weight=1.0)
    _, _, m0, m1 = _run(qmix_cql, config, synthetic_tree())
    assert float(m1["loss"]) < 0.7 * float(m0["loss"])
    tree = synthetic_tree()
    del tree["infos"]["state"]
    spec = ds.spec_from_tree(tree, "<test>", 48, True)
    with pytest.raises(DatasetError, match="infos.state"):
        qmix_cql.make_algorithm(config, spec)


def test_cql_penalty_ignores_illegal_actions():
    q = np.array([[1.0, 2.0, 100.0]], np.float32)
    legal = np.array([[1.0, 1.0, 0.0]], np.float32)
    pen = value.cql_penalty(q, legal, np.array([1]))
    np.testing.assert_allclose(pen, np.log(np.exp(1.0) + np.exp(2.0)) - 2.0, rtol=1e-5)
    # the double-Q arg-max skips the illegal action too
    v = value.double_q_next(q, q * 10, legal)
    np.testing.assert_allclose(v, [20.0])


@pytest.mark.parametrize("name", ["bc", "qmix-cql", "omar"])  # one of each network family
def test_jitted_init_equals_eager_init(name):
    """The trainer initialises under ``jit`` (eagerly, every op is compiled on its own); the
    state is the same, bit for bit."""
    entry = ALGORITHMS[name]
    fields = {f.name for f in dataclasses.fields(entry.config)}
    config = entry.config(**{k: v for k, v in TINY.items() if k in fields})
    tree = synthetic_tree()
    if not entry.data_needs(config).discrete_ok:  # continuous actions in [-1, 1], no legals
        rng = np.random.default_rng(0)
        tree["actions"] = rng.uniform(-1, 1, tree["infos"].pop("legals").shape).astype(np.float32)
    needs = entry.data_needs(config)
    spec = ds.spec_from_tree(tree, "<test>", tree["observations"].shape[1], True,
                             needs.need_state, continuous_ok=needs.continuous_ok)
    algo = entry.make(config, spec)
    eager, jitted = algo.init(jax.random.key(0)), jax.jit(algo.init)(jax.random.key(0))
    assert jax.tree.structure(eager) == jax.tree.structure(jitted)
    def plain(x):  # typed PRNG keys (OMAR's search key) compare by their bits
        return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_array_equal(np.asarray(plain(a)), np.asarray(plain(b)))


@pytest.mark.parametrize("recurrent", [False, True])
def test_bc_ignores_the_next_step(recurrent):
    """BC trains on windows without the step past their end (``DataNeeds.next_step``); from
    windows that carry it, it leaves it out: the same update either way."""
    config = bc.Config(recurrent=recurrent, **TINY)
    assert not bc.data_needs(config).next_step
    tree = synthetic_tree()
    states = []
    for next_step in (True, False):
        spec = ds.spec_from_tree(tree, "<test>", tree["observations"].shape[1], True,
                                 next_step=next_step)
        algo = bc.make_algorithm(config, spec)
        data = ds.make_device_data(ds.steps_from_tree(tree, spec), ds.DatasetConfig(
            seq_len=algo.seq_len, stride=algo.stride))
        sample = ds.make_sampler(spec, algo.seq_len, algo.batch_size)
        batch = jax.jit(sample)(data, jax.random.key(5))
        assert batch.obs.shape[0] == algo.seq_len + next_step
        states.append(jax.jit(algo.update)(algo.init(jax.random.key(0)), batch)[0])
    for a, b in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
