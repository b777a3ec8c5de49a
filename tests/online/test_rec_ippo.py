"""Recurrent IPPO/MAPPO: hidden-state resets, BPTT replay, truncation bootstrap, minibatch
partition, 4 devices == 1 device, the CLI runs, recording and ``marlvault record``.

All on matrax (cheapest to compile) with the tiny config of ``helpers.REC_TINY``: 4 envs, 2
minibatches, rollouts of 20 steps, 25-step episodes (every episode ends by truncation).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from marlvault.checkpoint import load_policy
from marlvault.cli import app
from marlvault.envs.registry import make_env
from marlvault.envs.vec import VecEnv
from marlvault.errors import ConfigError
from marlvault.online import rec_ippo
from marlvault.online.losses import network_inputs
from marlvault.schema import example_batch
from marlvault.vault import Vault

from .helpers import REC_TINY, forced_devices_env, tiny_rec_config

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("multi_device_worker.py")
runner = CliRunner()


# --- minibatch partition and config checks (no compilation) ----------------------------------
@pytest.mark.parametrize("m", [2, 4])
def test_env_partition_is_the_same_on_one_and_four_devices(m):
    total, devices = 16, 4
    local = total // devices
    orders = set()
    for seed in range(5):
        key = jax.random.PRNGKey(seed)
        one = np.asarray(rec_ippo.env_partition(key, jnp.arange(total), m))
        four = [np.asarray(rec_ippo.env_partition(key, d * local + jnp.arange(local), m))
                + d * local for d in range(devices)]  # fmt: skip
        assert one.shape == (m, total // m) and all(f.shape == (m, local // m) for f in four)
        for mb in range(m):
            assert set(one[mb]) == set(np.concatenate([f[mb] for f in four]).tolist())
        assert sorted(one.ravel().tolist()) == list(range(total))  # every env once per epoch
        orders.add(tuple(one[:, 0]))
    assert len(orders) > 1  # the epoch key reshuffles the minibatch order


@pytest.mark.parametrize("m", [2, 4])
def test_grouped_minibatches_are_the_partition(m):
    """The envs grouped once per update and reordered per epoch give each epoch exactly the
    minibatches of ``env_partition`` (this device's envs, in the same order)."""
    local = 8
    x = jnp.arange(3 * local).reshape(3, local)  # [T, L]
    batch = rec_ippo.RecBatch(x, x > 0, rec_ippo.Hidden(jnp.arange(local), -jnp.arange(local)))
    grouped = rec_ippo.group_envs(batch, m)
    for seed in range(5):
        key = jax.random.PRNGKey(seed)
        mbs = rec_ippo.env_minibatches(key, grouped, m)
        for d in range(2):  # the same on device 0 and device 1 of 2
            idx = rec_ippo.env_partition(key, d * local + jnp.arange(local), m)  # [M, L/M]
            np.testing.assert_array_equal(mbs.seq, jnp.swapaxes(x[:, idx], 0, 1))
            np.testing.assert_array_equal(mbs.reset, jnp.swapaxes((x > 0)[:, idx], 0, 1))
            np.testing.assert_array_equal(mbs.hidden.critic, -idx)


def test_minibatches_must_split_the_envs_on_each_device():
    with pytest.raises(ConfigError, match=r"system.num_minibatches.*fix: e.g. system.num_mini"):
        tiny_rec_config("arch.num_envs=6", "system.num_minibatches=4")
    cfg = tiny_rec_config("arch.num_envs=4", "system.num_minibatches=4")  # 4 | 4 envs in total
    rec_ippo.check_minibatches(cfg, 4, 1)
    with pytest.raises(ConfigError, match=r"2 envs on each of the 2 devices.*"
                                          r"system.num_minibatches=2 or arch.num_envs=8"):
        rec_ippo.check_minibatches(cfg, 2, 2)


# --- learner ---------------------------------------------------------------------------------
def _two_rollouts():
    """Two rollouts of the learner's rollout function from its initial state: steps 0..19, then
    steps 20..39 (mid-episode start with a carried hidden state; the episode boundary at step
    25 inside), with the second one's Transitions (values included). Only the rollout is
    compiled here; the whole learner runs in the CLI tests below."""
    cfg = tiny_rec_config()
    learner = rec_ippo.make_train(cfg)
    vec = VecEnv(make_env(cfg.env.env_name, cfg.env.scenario), cfg.arch.num_envs)
    rollout = jax.jit(rec_ippo.make_rollout(vec, learner.nets, cfg))
    state = learner.init(jax.random.PRNGKey(3))
    state, _, _ = rollout(state.params, state)
    after, tr, (last, _) = rollout(state.params, state)
    return learner, state, after, tr, last


def test_recurrent_rollout_resets_replays_and_bootstraps():
    """One test over one compiled rollout (so parallel test workers do not each compile it)."""
    learned = _two_rollouts()
    _rollout_shapes_and_carried_hidden(learned)
    _hidden_resets_exactly_at_episode_starts(learned)
    _bptt_replay_reproduces_the_rollout_before_any_update(learned)
    _truncation_bootstraps_from_the_carried_critic_state(learned)
    _sequence_critic_equals_a_step_by_step_critic(learned)


def test_hidden_resets_per_env_when_episodes_end_at_different_steps():
    """SMAX 3m: battles end at different steps in different envs, so each env's GRU state must
    be zeroed on its own step (matrax above ends every episode together)."""
    cfg = tiny_rec_config("env=smax", "scenario=3m", "arch.num_envs=8")
    learner = rec_ippo.make_train(cfg)
    vec = VecEnv(make_env("smax", "3m"), cfg.arch.num_envs)
    rollout = jax.jit(rec_ippo.make_rollout(vec, learner.nets, cfg))
    state = learner.init(jax.random.PRNGKey(5))
    _, tr, _ = rollout(state.params, state)
    first = np.asarray(tr.step_count) == 0  # [T, B]
    staggered = (first.sum(1) > 0) & (first.sum(1) < first.shape[1])
    assert staggered.any() and first[1:].any(), first.astype(int)  # resets at differing steps
    fresh_value = _fresh_critic_values(learner, state, tr)
    value = np.asarray(tr.value)
    later = first.copy()
    later[0] = False  # step 0 of the first rollout is fresh for every env anyway
    np.testing.assert_allclose(value[later], fresh_value[later], rtol=1e-5, atol=1e-6)
    carried = np.abs(value[~first] - fresh_value[~first]) > 1e-5  # a carried state matters
    assert carried.mean() > 0.95, carried.mean()


def _fresh_critic_values(learner, state, tr) -> np.ndarray:
    """``[T, B, N]`` critic values of every rollout step as if each were an episode start (the
    GRU from zeros, reset on)."""
    nets, system = learner.nets, learner.config.system
    b, n = tr.obs.shape[1:3]
    zeros = rec_ippo.initial_hidden(nets, (b, n))

    def fresh(obs, st):
        critic_in = network_inputs(obs, st, system)[1]
        _, v = nets.critic.apply(state.params.critic, zeros,
                                 (critic_in[None], jnp.ones((1, b, n), bool)))  # fmt: skip
        return v[0]

    return np.asarray(jax.jit(jax.vmap(fresh))(tr.obs, tr.state))


def _rollout_shapes_and_carried_hidden(learned):
    learner, state, after, tr, _ = learned
    spec, b, n = learner.spec, 4, learner.spec.num_agents
    assert tr.obs.shape == (20, b, n, spec.obs_dim)
    assert tr.action.shape == tr.log_prob.shape == tr.value.shape == (20, b, n)
    assert state.hidden.actor.shape == state.hidden.critic.shape == (b, n, 16)
    # carried across rollouts: the second starts mid-episode (step 20) from a non-zero state
    assert (np.asarray(state.timestep.step_count) == 20).all()
    np.testing.assert_array_equal(tr.step_count[0], state.timestep.step_count)
    assert np.abs(np.asarray(state.hidden.actor)).max() > 0.01
    assert not np.array_equal(after.hidden.critic, state.hidden.critic)


def _hidden_resets_exactly_at_episode_starts(learned):
    learner, state, _, tr, _ = learned
    first = np.asarray(tr.step_count) == 0  # [T, B]
    assert first.any() and (~first).any() and first[5].all()  # step 25 starts episode 2
    nets, system = learner.nets, learner.config.system
    b, n = tr.obs.shape[1:3]
    zeros = rec_ippo.initial_hidden(nets, (b, n))
    fresh_value = _fresh_critic_values(learner, state, tr)
    value = np.asarray(tr.value)
    # at an episode start the rollout's critic saw exactly a fresh state ...
    np.testing.assert_allclose(value[first], fresh_value[first], rtol=1e-5, atol=1e-6)
    # ... and everywhere else a carried one that matters
    assert np.abs(value[~first] - fresh_value[~first]).min() > 1e-4
    # the policy too: a fresh actor gives the rollout's log-probabilities at episode starts
    policy = rec_ippo.make_policy(nets, system)

    def fresh_logp(obs, legal, action):
        _, out = policy(state.params.actor, zeros, obs, jnp.ones(b, bool))
        return nets.space.distribution(out, legal).log_prob(action)

    logp = np.asarray(jax.jit(jax.vmap(fresh_logp))(tr.obs, tr.legal, tr.action))
    np.testing.assert_allclose(logp[first], np.asarray(tr.log_prob)[first], atol=1e-6)


def _bptt_replay_reproduces_the_rollout_before_any_update(learned):
    learner, state, _, tr, last = learned
    nets, system = learner.nets, learner.config.system

    @jax.jit
    def first_minibatch(params, tr, last, hidden):
        batch = rec_ippo.make_rec_batch(tr, last, hidden, system)
        mbs = rec_ippo.env_minibatches(jax.random.PRNGKey(0), rec_ippo.group_envs(batch, 2), 2)
        mb = jax.tree.map(lambda x: x[0], mbs)  # first epoch's first minibatch: 2 sequences

        def replay(h):
            _, out = nets.actor.apply(params.actor, h.actor, (mb.seq.actor_in, mb.reset))
            _, value = nets.critic.apply(params.critic, h.critic, (mb.seq.critic_in, mb.reset))
            return nets.space.distribution(out, mb.seq.legal).log_prob(mb.seq.action), value

        stats = jnp.array([0.0, 1.0])
        _, info = rec_ippo.recurrent_loss(params, mb, nets, system, stats)
        return mb, replay(mb.hidden), replay(jax.tree.map(jnp.zeros_like, mb.hidden)), info

    mb, (log_prob, value), (_, value0), info = first_minibatch(state.params, tr, last,
                                                                state.hidden)  # fmt: skip
    assert mb.seq.actor_in.shape[:2] == (20, 2) and mb.hidden.actor.shape[0] == 2
    np.testing.assert_allclose(log_prob, mb.seq.log_prob, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, mb.seq.value, rtol=1e-5, atol=1e-5)
    assert float(info.approx_kl) < 1e-8 and float(info.clip_frac) == 0.0  # ratio == 1
    # the stored start state matters: a replay from zeros does not reproduce the rollout
    assert np.abs(np.asarray(value0[0] - mb.seq.value[0])).max() > 1e-3


def _truncation_bootstraps_from_the_carried_critic_state(learned):
    learner, state, _, tr, _ = learned
    system = learner.config.system
    trunc = np.asarray(tr.truncated)
    (t,) = np.nonzero(trunc.all(axis=1))[0]  # step 24: the last of episode 1
    assert trunc.sum() == trunc.shape[1]
    np.testing.assert_array_equal(np.asarray(tr.final_value)[~trunc], 0.0)
    # replay the critic over steps 0..t, then the true next observation without a reset

    @jax.jit
    def replay(params, h, tr):
        critic_in = network_inputs(tr.obs, tr.state, system)[1][: t + 1]
        n, o = tr.final_obs.shape[-2:]
        final_state = tr.final_obs[t].reshape(-1, n * o)  # matrax: state = joint observation
        final_in = network_inputs(tr.final_obs[t], final_state, system)[1]
        x = jnp.concatenate([critic_in, final_in[None]])
        reset = rec_ippo.agent_resets(tr.step_count[: t + 1], n)
        reset = jnp.concatenate([reset, jnp.zeros_like(reset[:1])])
        return learner.nets.critic.apply(params.critic, h, (x, reset))[1]

    value = replay(state.params, state.hidden.critic, tr)
    np.testing.assert_allclose(value[t + 1], tr.final_value[t], rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(tr.final_value[t])).max() > 0


def _sequence_critic_equals_a_step_by_step_critic(learned):
    """The rollout's critic reads the whole rollout in one sequence pass after the actor and
    the envs stepped; a critic stepped along with them (as the rollout ran it before) gives
    the same values, truncation bootstraps, last value and carried state."""
    learner, state, after, tr, last = learned
    nets, system = learner.nets, learner.config.system
    n = learner.spec.num_agents

    def critic(params, h, obs, st, reset):
        x = network_inputs(obs, st, system)[1]
        h, v = nets.critic.apply(params, h, (x[None], reset[None]))
        return h, v[0]

    @jax.jit
    def stepwise(params, h, tr, next_ts):
        def step(h, x):
            obs, st, count, final_obs, truncated = x
            h, value = critic(params, h, obs, st, rec_ippo.agent_resets(count, n))
            # IPPO's critic reads observations only, so the state argument is not used here
            no_reset = jnp.zeros((count.shape[0], n), bool)  # the episode goes on
            _, final = critic(params, h, final_obs, st, no_reset)
            return h, (value, jnp.where(truncated[:, None], final, 0.0))

        xs = (tr.obs, tr.state, tr.step_count, tr.final_obs, tr.truncated)
        h, (value, final) = jax.lax.scan(step, h, xs)
        _, last = critic(params, h, next_ts.obs, next_ts.state,
                         rec_ippo.agent_resets(next_ts.step_count, n))  # fmt: skip
        return value, final, last, h

    assert not system.centralised_critic and np.asarray(tr.truncated).any()
    value, final, want_last, h = stepwise(state.params.critic, state.hidden.critic, tr,
                                          after.timestep)  # fmt: skip
    tight = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tr.value, value, **tight)
    np.testing.assert_allclose(tr.final_value, final, **tight)
    np.testing.assert_allclose(last, want_last, **tight)
    np.testing.assert_allclose(after.hidden.critic, h, **tight)


# --- runs through the CLI ----------------------------------------------------------------------
def _cli_train(system: str, tmp_path: Path, *extra: str):
    args = ["train", system, *REC_TINY, f"logger.base_dir={tmp_path}", "logger.console=false",
            "logger.tensorboard=false", *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "final eval return" in result.output and system in result.output
    return tmp_path / f"{system}_matrax_penalty-0-stateful_seed42"


def test_rec_mappo_cli_run_matches_four_devices(tmp_path):
    sizes = ["arch.num_envs=8", "system.total_timesteps=320"]  # 2 envs per device on 4 devices
    # the same run on 4 forced CPU devices (each minibatch takes 1 env from every device), in a
    # subprocess running alongside the 1-device run through the CLI
    out = tmp_path / "four.npz"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(out), "--recurrent", "system.centralised_critic=true",
         *sizes],
        cwd=REPO, env=forced_devices_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        run_dir = _cli_train("rec-mappo", tmp_path, *sizes)
    finally:
        _, stderr = proc.communicate(timeout=300)
    data = json.loads((run_dir / "metrics.json").read_text())
    run = data["matrax"]["penalty-0-stateful"]["rec-mappo"]["seed_42"]
    assert run["step_0"]["step_count"] == 320 and "absolute_metrics" in run
    config, params = load_policy(run_dir / "checkpoints" / "last")
    assert isinstance(config, rec_ippo.Config) and config.system.centralised_critic
    spec = make_env("matrax", "penalty-0-stateful").spec
    kernel = params["critic"]["params"]["MLPTorso_0"]["Dense_0"]["kernel"]
    assert kernel.shape == (spec.state_dim + spec.num_agents, 16)
    assert proc.returncode == 0, stderr[-3000:]
    four = np.load(out)
    assert int(four["devices"]) == 4
    leaves = jax.tree.leaves({"actor": params["actor"], "critic": params["critic"]})
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(four[f"param_{i}"], leaf, rtol=1e-4, atol=1e-5)
    lengths = four["eval_lengths"]
    assert lengths.shape == (8,) and ((lengths >= 1) & (lengths <= four["time_limit"])).all()


def test_rec_ippo_cli_records_and_record_replays_the_hidden_state(tmp_path):
    vault = tmp_path / "train.vlt"
    run_dir = _cli_train("rec-ippo", tmp_path, f"record.path={vault}")
    spec = make_env("matrax", "penalty-0-stateful").spec
    # the same keys and per-step shapes as IPPO's recording
    want = jax.tree.map(lambda x: (x.shape[0], *x.shape[2:], x.dtype), example_batch(spec, 4))
    with Vault.open(str(vault)) as v:
        data = v.read()
        assert v.num_rows == 4 and v.num_steps == 40
    got = jax.tree.map(lambda x: (x.shape[0], *x.shape[2:], x.dtype), data)
    assert got == want
    # `marlvault record` from the recurrent checkpoint: 2 episodes per row, sampled
    best = run_dir / "checkpoints" / "best"
    out = tmp_path / "rec.vlt"
    res = runner.invoke(app, ["record", str(best), "episodes=8", "num_envs=4", "mode=sampled",
                              "extras=log_prob", "chunk_steps=64", f"path={out}"])
    assert res.exit_code == 0, res.output
    with Vault.open(str(out)) as v:
        assert int(v.episodes["complete"].sum()) == 8
        rec = v.read()
    # replay the saved actor over each row from a zero state, reset after every episode end:
    # it gives the recorded behaviour log-probabilities, so the rollout carried and reset alike
    config, params = load_policy(best)
    nets = rec_ippo.make_networks(spec, config)
    obs = jnp.swapaxes(jnp.asarray(rec["observations"]), 0, 1)  # [T, B, N, O]
    done = (rec["terminals"] + rec["truncations"])[:, :, 0] > 0  # [B, T]
    first = np.concatenate([np.ones((4, 1), bool), done[:, :-1]], axis=1).T
    assert first[1:].any()  # an episode starts inside every row
    x = network_inputs(obs, jnp.zeros(obs.shape[:2] + (1,)), config.system)[0]
    reset = rec_ippo.agent_resets(jnp.where(first, 0, 1), spec.num_agents)
    h0 = rec_ippo.initial_hidden(nets, (4, spec.num_agents))
    _, out_ = nets.actor.apply(params["actor"], h0, (x, reset))
    legal = jnp.swapaxes(jnp.asarray(rec["infos"]["legals"]), 0, 1)
    action = jnp.swapaxes(jnp.asarray(rec["actions"]), 0, 1)
    logp = nets.space.distribution(out_, legal).log_prob(action)
    np.testing.assert_allclose(np.swapaxes(np.asarray(logp), 0, 1), rec["infos"]["log_prob"],
                               rtol=1e-5, atol=1e-5)  # fmt: skip
