"""Where one recurrent IPPO update's time goes: its pieces jitted and timed separately.

Usage: ``python bench/rec_ippo_breakdown.py [--env smax --scenario 3m] [--num-envs 32]
[--rounds 8]``

At the preset hyperparameters (``configs/rec_ippo.yaml``: rollout 128, 4 epochs, 2 minibatches,
MLP 128 -> GRU 128 -> MLP 128), one device, each piece compiled once and timed in
``--rounds`` interleaved rounds; the best time of each is printed (ms):

* **update**: a learner call of 2 updates, halved (what ``bench/ippo_sps.py`` calls train SPS);
* **rollout**: the rollout alone (per-step actor and envs, then the critic's sequence pass);
* **env alone**: ``bench/env_sps.py``'s random-action stepping of as many steps;
* **critic sequence pass**: the critic over the whole rollout (part of the rollout);
* **minibatch gradient**: the gradient of the PPO loss on one minibatch (the update takes
  epochs x minibatches of them), and of the actor's and the critic's replay alone, and the
  critic's forward pass alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from env_sps import measure_env_sps  # noqa: E402

from marlvault import config  # noqa: E402
from marlvault.envs.registry import make_env  # noqa: E402
from marlvault.envs.vec import VecEnv  # noqa: E402
from marlvault.online import rec_ippo  # noqa: E402


def pieces(cfg: rec_ippo.Config) -> tuple[dict, tuple]:
    """``({name: (jitted fn, args)}, (learn, state))`` for one device."""
    learner = rec_ippo.make_train(cfg, updates_per_call=2)
    nets, system, m = learner.nets, cfg.system, cfg.system.num_minibatches
    vec = VecEnv(make_env(cfg.env.env_name, cfg.env.scenario), cfg.arch.num_envs)
    state = learner.init(jax.random.PRNGKey(0))
    rollout = jax.jit(rec_ippo.make_rollout(vec, nets, cfg))
    _, traj, (last, _) = rollout(state.params, state)
    batch = rec_ippo.make_rec_batch(traj, last, state.hidden, system)
    grouped = rec_ippo.group_envs(batch, m)
    mb = jax.tree.map(lambda x: x[0], rec_ippo.env_minibatches(jax.random.PRNGKey(0), grouped, m))
    stats = jnp.array([0.0, 1.0])

    def loss(params, mb):
        return rec_ippo.recurrent_loss(params, mb, nets, system, stats)[0]

    def actor(params, mb):
        _, out = nets.actor.apply(params, mb.hidden.actor, (mb.seq.actor_in, mb.reset))
        return nets.space.distribution(out, mb.seq.legal).log_prob(mb.seq.action).sum()

    def critic(params, mb):
        return nets.critic.apply(params, mb.hidden.critic, (mb.seq.critic_in, mb.reset))[1].sum()

    def critic_pass(params, batch):
        return nets.critic.apply(params, batch.hidden.critic, (batch.seq.critic_in, batch.reset))

    p = state.params
    fns = {
        "rollout": (rollout, (p, state)),
        "critic sequence pass (whole rollout)": (jax.jit(critic_pass), (p.critic, batch)),
        "minibatch gradient (PPO loss)": (jax.jit(jax.grad(loss)), (p, mb)),
        "  actor replay, forward + backward": (jax.jit(jax.grad(actor)), (p.actor, mb)),
        "  critic replay, forward + backward": (jax.jit(jax.grad(critic)), (p.critic, mb)),
        "  critic replay, forward only": (jax.jit(critic), (p.critic, mb)),
    }
    learn = learner.learn.lower(state).compile()  # donates its argument: its own state
    return fns, (learn, learner.init(jax.random.PRNGKey(1)))



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="smax")
    parser.add_argument("--scenario", default="3m")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    cfg = config.load(rec_ippo.Config, "rec_ippo", [f"env={args.env}", f"scenario={args.scenario}",
                                                    f"arch.num_envs={args.num_envs}"])  # fmt: skip
    fns, (learn, state) = pieces(cfg)
    state = jax.block_until_ready(learn(state))[0]
    for fn, fn_args in fns.values():
        jax.block_until_ready(fn(*fn_args))
    best = {"update (learner call of 2, halved)": float("inf")} | {k: float("inf") for k in fns}
    for _ in range(args.rounds):
        start = time.perf_counter()
        state = jax.block_until_ready(learn(state))[0]
        best["update (learner call of 2, halved)"] = min(
            best["update (learner call of 2, halved)"], (time.perf_counter() - start) / 2)
        for name, (fn, fn_args) in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*fn_args))
            best[name] = min(best[name], time.perf_counter() - start)
    steps = cfg.system.rollout_length
    env = measure_env_sps(args.env, args.scenario, args.num_envs, steps * 2, "fast", 3)
    best["env alone (same steps, random actions)"] = steps * args.num_envs / env
    print(f"rec-ippo {args.env}/{args.scenario}, {args.num_envs} envs, best of {args.rounds}\n")
    print("| piece | ms |\n|---|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds * 1e3:.1f} |")


if __name__ == "__main__":
    main()
