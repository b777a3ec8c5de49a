"""Training SPS with recording off, with marlvault's recorder, and with the synchronous
flashbax pattern — side by side in one process and one run.

Usage: ``python bench/record_overhead.py [--system ippo|mappo|rec-ippo|rec-mappo] [--env rware
--scenario tiny-2ag] [--num-envs 32] [--updates-per-call 4] [--calls 8] [--rounds 2] [--out DIR]``

Modes, all on the chosen system and environment (default IPPO, RWARE tiny-2ag) with the system's
preset hyperparameters (rollout 128, 4 epochs, 2 minibatches), continuing one training run (the
learner state passes from mode to mode):

* ``off``: the learner compiled *without* trajectory outputs — training with no recording;
* ``marlvault``: each call's rollouts go to :class:`marlvault.record.session.TrainingRecorder`
  (asynchronous host copy, bounded queue, background writer); the time includes the final flush;
* ``flashbax-sync``: what Mava's "store experience" example does — learn, copy the rollouts to the
  host, write them with ``flashbax.vault.Vault.write`` and wait, then continue.

Each round runs the three modes in turn (``--calls`` timed learner calls each, after one warm-up
call); the table reports the best round of each. Prints a Markdown table with SPS and ratios.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from marlvault import config
from marlvault.online import ippo, rec_ippo
from marlvault.record.session import TrainingRecorder
from marlvault.schema import trajectory_to_batch

SYSTEMS = {
    "ippo": (ippo, "ippo", []),
    "mappo": (ippo, "ippo", ["system.centralised_critic=true"]),
    "rec-ippo": (rec_ippo, "rec_ippo", []),
    "rec-mappo": (rec_ippo, "rec_ippo", ["system.centralised_critic=true"]),
}
"""System name -> (learner module, preset, overrides)."""


def _config(args, path: str) -> ippo.Config:
    module, preset, extra = SYSTEMS[args.system]
    steps = args.num_envs * 128 * args.updates_per_call * (args.calls + 1)
    return config.load(module.Config, preset, [
        *extra, f"env={args.env}", f"scenario={args.scenario}",
        f"arch.num_envs={args.num_envs}", f"system.total_timesteps={steps}",
        f"arch.num_evaluation={args.calls + 1}", f"record.path={path}",
    ])  # fmt: skip


def _run_off(learner, state, calls: int):
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics, _ = learner.learn(state)
        jax.block_until_ready(metrics)
    return time.perf_counter() - start, state


def _run_marlvault(learner, state, calls: int, cfg: ippo.Config):
    hook = TrainingRecorder(cfg, learner.spec, cfg.updates_per_call)
    start = time.perf_counter()
    for call in range(calls):
        state, metrics, traj = learner.learn(state)
        jax.block_until_ready(metrics)
        hook(traj, call)
    stats = hook.close()
    return time.perf_counter() - start, state, stats


def _run_flashbax(learner, state, calls: int, path: str):
    from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
    from flashbax.vault import Vault as FbxVault

    root, name = str(Path(path).parent), Path(path).name
    vault = None
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics, traj = learner.learn(state)
        jax.block_until_ready(metrics)
        batch = trajectory_to_batch(jax.device_get(traj), learner.spec)
        t = batch["actions"].shape[1]
        buf = TrajectoryBufferState(experience=batch, current_index=np.int32(t),
                                    is_full=np.bool_(False))  # fmt: skip
        if vault is None:
            vault = FbxVault(vault_name=name, experience_structure=batch, rel_dir=root,
                             vault_uid="run")  # fmt: skip
        vault.write(buf, source_interval=(0, t))
    return time.perf_counter() - start, state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", default="ippo", choices=sorted(SYSTEMS))
    ap.add_argument("--env", default="rware")
    ap.add_argument("--scenario", default="tiny-2ag")
    ap.add_argument("--num-envs", type=int, default=32)
    ap.add_argument("--updates-per-call", type=int, default=4)
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None, help="scratch dir for vaults (default a temp dir)")
    args = ap.parse_args()
    scratch = Path(args.out or tempfile.mkdtemp(prefix="mv-bench-"))
    cfg = _config(args, str(scratch / "mv.vlt"))
    module = SYSTEMS[args.system][0]
    learner = module.make_train(cfg, return_trajectories=True,
                                updates_per_call=args.updates_per_call)  # fmt: skip
    plain = module.make_train(cfg, return_trajectories=False,
                              updates_per_call=args.updates_per_call)  # fmt: skip
    state = learner.init(jax.random.PRNGKey(0))
    for warm in (learner, plain):  # compile + warm-up
        state, m, _ = warm.learn(state)
        jax.block_until_ready(m)
    steps = args.calls * args.updates_per_call * cfg.steps_per_update
    best = {"off": np.inf, "marlvault": np.inf, "flashbax-sync": np.inf}
    wait = 0.0
    for r in range(args.rounds):
        dt, state = _run_off(plain, state, args.calls)
        best["off"] = min(best["off"], dt)
        mv_cfg = _config(args, str(scratch / f"mv{r}.vlt"))
        dt, state, stats = _run_marlvault(learner, state, args.calls, mv_cfg)
        if dt < best["marlvault"]:
            best["marlvault"], wait = dt, stats.wait_s
        dt, state = _run_flashbax(learner, state, args.calls, str(scratch / "fbx" / f"fb{r}"))
        best["flashbax-sync"] = min(best["flashbax-sync"], dt)
    sps = {k: steps / v for k, v in best.items()}
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s); "
          f"{args.system} on {args.env}/{args.scenario}, {args.num_envs} envs, {steps:,} env steps per mode and round, "
          f"best of {args.rounds} rounds\n")  # fmt: skip
    print("| mode | SPS | vs off |")
    print("|---|---:|---:|")
    for k, v in sps.items():
        print(f"| {k} | {v:,.0f} | {v / sps['off']:.3f} |")
    print(f"\nmarlvault: learner blocked on a full queue for {wait:.3f} s of "
          f"{best['marlvault']:.2f} s")
    if args.out is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
