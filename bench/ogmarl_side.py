"""The OG-MARL half of ``bench/ogmarl_peer.py``: runs OG-MARL's own JAX systems, unchanged.

This file runs in OG-MARL's virtual environment (not marlvault's) and imports nothing from
marlvault. It is launched by ``bench/ogmarl_peer.py``, which hands it the one-row dataset as an
``.npz`` of OG-MARL-schema arrays (``observations [1, T, N, O]``, ``actions [1, T, N]``,
``rewards [1, T, N]``, ``terminals [1, T]``, ``legals [1, T, N, A]``, ``state [1, T, S]``) and
reads back one JSON line.

What it does, in order:

1. writes the arrays as OG-MARL's dataset: the flashbax trajectory-buffer state (keys
   ``agent_i_observations`` ..., ``mask``, ``state``) saved as an orbax checkpoint, with the
   metadata ``{"sequence_length": L}`` its MAICQ reads;
2. runs ``train_<system>_system`` as OG-MARL runs it (``num_epochs`` epochs of
   ``steps_per_epoch`` updates, a fresh ``train_epoch`` each epoch, so everything is traced and
   compiled again every epoch) and times the whole call ("as run");
3. takes the ``train_step`` its last epoch scanned (caught by a pass-through wrapper around
   ``jax.lax.scan``) and times ``updates`` of them in one jitted ``lax.scan`` after a warm-up
   call, the best of ``calls`` calls ("update work only").

Only what is needed to run it outside its own launcher is supplied here: a stand-in environment
(``possible_agents``, ``_num_actions``; every evaluation episode ends after one step), a logger
that drops everything, ``WANDB_MODE=disabled``, and at commit ``0d1a26a`` one import shim: its
``og_marl/jax/systems/bc.py`` imports ``FlashbaxBufferStore`` from
``og_marl.jax.tf_dataset_to_flashbax``, an empty file at that commit; the class lives in
``og_marl.jax.dataset``, which is registered under the old name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("WANDB_MODE", "disabled")

import jax  # noqa: E402
import numpy as np  # noqa: E402


class StubEnv:
    """What OG-MARL's JAX systems read from an environment; every episode lasts one step."""

    def __init__(self, num_agents: int, num_actions: int, obs_dim: int) -> None:
        self.possible_agents = [f"agent_{i}" for i in range(num_agents)]
        self._num_actions = num_actions
        self._obs_dim = obs_dim

    def _obs(self) -> tuple[dict, dict]:
        obs = {a: np.zeros(self._obs_dim, np.float32) for a in self.possible_agents}
        legals = {a: np.ones(self._num_actions, np.float32) for a in self.possible_agents}
        return obs, {"legals": legals}

    def reset(self) -> tuple[dict, dict]:
        return self._obs()

    def step(self, actions: dict) -> tuple:
        obs, info = self._obs()
        done = {a: True for a in self.possible_agents}
        rew = {a: 0.0 for a in self.possible_agents}
        return obs, rew, done, done, info


class NullLogger:
    def write(self, *args, **kwargs) -> None:
        pass


def write_dataset(data: dict, path: str, seq_len: int) -> None:
    """The arrays as OG-MARL's dataset: an orbax checkpoint of a flashbax buffer state."""
    import orbax.checkpoint
    from flashbax.buffers.trajectory_buffer import TrajectoryBufferState

    n = data["observations"].shape[2]
    t = data["observations"].shape[1]
    done = np.broadcast_to(data["terminals"][..., None], data["rewards"].shape)
    experience = {"mask": np.ones((1, t), np.float32), "state": data["state"]}
    for i in range(n):
        experience[f"agent_{i}_observations"] = data["observations"][:, :, i]
        experience[f"agent_{i}_actions"] = data["actions"][:, :, i]
        experience[f"agent_{i}_rewards"] = data["rewards"][:, :, i]
        experience[f"agent_{i}_done"] = done[:, :, i].astype(np.float32)
        experience[f"agent_{i}_legals"] = data["legals"][:, :, i]
    state = TrajectoryBufferState(experience=experience, current_index=np.array(t, np.int32),
                                  is_full=np.array(False))
    manager = orbax.checkpoint.CheckpointManager(
        path, orbax.checkpoint.PyTreeCheckpointer(),
        orbax.checkpoint.CheckpointManagerOptions(max_to_keep=1, create=True),
        metadata={"sequence_length": seq_len},
    )
    manager.save(0, state)
    manager.wait_until_finished()


class ScanCatcher:
    """Pass-through ``jax.lax.scan`` and ``jax.jit`` that keep the body of the outermost scan
    (the ``train_step``) and the concrete carry it last ran from.

    BC calls ``train_epoch`` un-jitted, so the scan's final carry is concrete. MAICQ jits
    ``train_epoch(rng_key, params, opt_state, buffer_state)``: there the scan sees tracers, and
    the carry is taken from the arguments of the last ``train_epoch`` call instead.
    """

    def __init__(self) -> None:
        self.real_scan, self.real_jit = jax.lax.scan, jax.jit
        self.depth = 0
        self.body = None
        self.carry = None

    def scan(self, f, init, xs=None, length=None, **kwargs):
        if self.depth:
            return self.real_scan(f, init, xs, length, **kwargs)
        self.depth += 1
        try:
            carry, ys = self.real_scan(f, init, xs, length, **kwargs)
        finally:
            self.depth -= 1
        self.body = f
        if not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(carry)):
            self.carry = carry
        return carry, ys

    def jit(self, fun, *args, **kwargs):
        jitted = self.real_jit(fun, *args, **kwargs)
        if getattr(fun, "__name__", "") != "train_epoch":
            return jitted

        def call(rng_key, params, opt_state, buffer_state):
            self.carry = (params, opt_state, buffer_state)
            return jitted(rng_key, params, opt_state, buffer_state)

        return call

    def install(self) -> None:
        jax.lax.scan, jax.jit = self.scan, self.jit

    def remove(self) -> None:
        jax.lax.scan, jax.jit = self.real_scan, self.real_jit


def time_update_work(catcher: ScanCatcher, updates: int, calls: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``updates`` of the caught ``train_step`` in one jitted scan
    after a warm-up call (the best of ``calls`` calls of each)."""
    body, real = catcher.body, catcher.real_scan

    @jax.jit
    def run(carry, key):
        return real(body, carry, jax.random.split(key, updates))

    carry, _ = jax.block_until_ready(run(catcher.carry, jax.random.PRNGKey(1)))
    best, best_cpu = float("inf"), float("inf")
    for call in range(calls):
        start, cpu = time.perf_counter(), time.process_time()
        carry, _ = jax.block_until_ready(run(carry, jax.random.PRNGKey(2 + call)))
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz of OG-MARL-schema arrays")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--system", choices=("bc", "maicq"), default="bc")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=20)
    args = parser.parse_args()

    import og_marl.jax.dataset

    sys.modules["og_marl.jax.tf_dataset_to_flashbax"] = og_marl.jax.dataset  # see the docstring
    from og_marl.jax.utils import get_system

    with np.load(args.data) as f:
        data = {k: f[k] for k in f.files}
    path = os.path.join(os.path.abspath(args.workdir), "ogmarl_dataset")
    write_dataset(data, path, args.seq_len)
    n, a = data["legals"].shape[2:]
    env = StubEnv(n, a, data["observations"].shape[-1])
    catcher = ScanCatcher()
    catcher.install()
    train = get_system(args.system, env, NullLogger())
    start, cpu = time.perf_counter(), time.process_time()
    train(path, num_epochs=args.epochs, num_training_steps_per_epoch=args.steps_per_epoch,
          batch_size=args.batch_size, num_episodes_per_evaluation=1)
    as_run, as_run_cpu = time.perf_counter() - start, time.process_time() - cpu
    catcher.remove()
    work, work_cpu = time_update_work(catcher, args.updates, args.calls)
    import flashbax
    import flax
    import optax
    import orbax.checkpoint

    print(json.dumps({
        "system": args.system, "as_run_s": as_run, "as_run_cpu_s": as_run_cpu,
        "as_run_updates": args.epochs * args.steps_per_epoch,
        "work_s": work, "work_cpu_s": work_cpu, "work_updates": args.updates,
        "versions": {"python": sys.version.split()[0], "jax": jax.__version__,
                     "flax": flax.__version__, "optax": optax.__version__,
                     "flashbax": getattr(flashbax, "__version__", "?"),
                     "orbax-checkpoint": orbax.checkpoint.__version__},
    }))


if __name__ == "__main__":
    main()
