"""IQL+BCQ and QMIX+BCQ: the behaviour filter, the restricted target, short training runs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from marlvault.errors import DatasetError
from marlvault.offline import dataset as ds
from marlvault.offline import iql_bcq, qmix_bcq, value
from marlvault.offline.windows import SequenceBatch

from .helpers import synthetic_tree
from .test_algorithms import TINY, _run

G = np.array([0.5, 0.1, 0.3, 0.1], np.float32)


def test_bcq_filter_keeps_likely_legal_actions():
    logits = np.log(G)[None]
    allowed = value.bcq_allowed(logits, np.ones((1, 4), np.float32), 0.5)
    np.testing.assert_array_equal(allowed, [[1, 0, 1, 0]])
    # an illegal action is never allowed, however likely; the ratio is over legal actions
    legal = np.array([[0, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(value.bcq_allowed(logits, legal, 0.5), [[0, 0, 1, 0]])
    # the most likely action is always allowed, even at threshold 1; threshold 0 allows all legal
    np.testing.assert_array_equal(value.bcq_allowed(logits, legal, 1.0), [[0, 0, 1, 0]])
    np.testing.assert_array_equal(value.bcq_allowed(logits, legal, 0.0), legal)
    flat = np.zeros((1, 4), np.float32)  # ties: every legal action is the arg-max
    np.testing.assert_array_equal(value.bcq_allowed(flat, legal, 1.0), legal)


def _one_step_batch(terminal: float) -> SequenceBatch:
    legal = np.ones((2, 1, 1, 4), np.float32)
    legal[..., 3] = 0.0
    return SequenceBatch(
        obs=np.zeros((2, 1, 1, 1), np.float32), legal=legal, state=np.zeros((2, 1, 1), np.float32),
        actions=np.zeros((1, 1, 1), np.int32), rewards=np.ones((1, 1, 1), np.float32),
        terminal=np.full((1, 1), terminal, np.float32), truncated=np.zeros((1, 1), np.float32),
        mask=np.ones((1, 1), np.float32), target_mask=np.ones((1, 1), np.float32))


def test_bcq_target_by_hand():
    q_all = np.zeros((2, 1, 1, 4), np.float32)
    q_all[1, 0, 0] = [1.0, 10.0, 5.0, 50.0]  # online next Q: 1 (disallowed) and 3 (illegal) best
    q_target = np.zeros((2, 1, 1, 4), np.float32)
    q_target[1, 0, 0] = [100.0, 200.0, 300.0, 400.0]
    bc_all = np.broadcast_to(np.log(G), (2, 1, 1, 4)).copy()
    # allowed at o_1 = {0, 2}: a* = 2, y = r + gamma Q_target(o_1, 2) = 1 + 0.5 * 300, Q(o_0, 0) = 0
    _, m = iql_bcq.iql_bcq_loss(q_all, q_target, bc_all, _one_step_batch(0.0), 0.5, 0.5, 1.0)
    np.testing.assert_allclose(m["td_loss"], 151.0**2, rtol=1e-6)
    # threshold 0: every legal action allowed, a* = 1, y = 1 + 0.5 * 200
    _, m = iql_bcq.iql_bcq_loss(q_all, q_target, bc_all, _one_step_batch(0.0), 0.5, 0.0, 1.0)
    np.testing.assert_allclose(m["td_loss"], 101.0**2, rtol=1e-6)
    # a terminal stops the bootstrap; the BC term is the cross-entropy of action 0 over legal ones
    _, m = iql_bcq.iql_bcq_loss(q_all, q_target, bc_all, _one_step_batch(1.0), 0.5, 0.5, 1.0)
    np.testing.assert_allclose(m["td_loss"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["bc_loss"], -np.log(0.5 / 0.9), rtol=1e-5)


@pytest.mark.parametrize("module", [iql_bcq, qmix_bcq])
def test_bcq_trains_and_acts_within_the_filter(module):
    config = module.Config(**TINY, lr=3e-3)
    tree = synthetic_tree()
    algo, state, m0, m1 = _run(module, config, tree)
    assert np.isfinite(float(m1["loss"])) and np.isfinite(float(m1["td_loss"]))
    assert float(m1["bc_loss"]) < 0.7 * float(m0["bc_loss"])
    params = algo.params(state)
    _, _, n, o = tree["observations"].shape
    obs = np.random.default_rng(1).normal(size=(5, n, o + n)).astype(np.float32)
    legal = np.ones((5, n, 4), np.float32)
    legal[..., 3] = 0
    hidden, act = algo.act(params, algo.init_hidden(5), obs, legal, np.ones(5, bool))
    # acting picks from the actions the behaviour network allows
    _, logits = value.q_network(config, _spec(tree)).apply(
        params["bc"], algo.init_hidden(5)[1], (obs[None], np.ones((1, 5, n), bool)))
    allowed = np.asarray(value.bcq_allowed(logits[0], legal, config.threshold))
    assert act.shape == (5, n)
    assert np.all(np.take_along_axis(allowed, np.asarray(act)[..., None], -1) == 1)
    _, act = algo.act(params, hidden, obs, legal, np.zeros(5, bool), jax.random.key(0))
    assert int(act.max()) < 3


def _spec(tree):
    return ds.spec_from_tree(tree, "<test>", tree["observations"].shape[1], True)


def test_qmix_bcq_refuses_a_vault_without_state():
    tree = synthetic_tree()
    del tree["infos"]["state"]
    with pytest.raises(DatasetError, match="infos.state.*iql-bcq"):
        qmix_bcq.make_algorithm(qmix_bcq.Config(**TINY), _spec(tree))
