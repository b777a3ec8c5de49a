"""Recording a training run: which updates to keep, the vault's metadata, and the learner hook.

The learner hands over the rollouts of ``U`` updates per call (``[U, T, B, ...]``). A
:class:`RecordPlan` decides, from the config alone, which updates are written; consecutive kept
updates are written as one contiguous block, so each vault row stays one environment's continuous
stream. Where the plan leaves a gap (``record.every_k_updates > 1``), the last step before the gap
is marked truncated, so no episode in the vault spans two unrelated stretches of time.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

import jax

from marlvault import __version__
from marlvault.config import to_dict
from marlvault.envs.base import EnvSpec
from marlvault.online.config import RecordConfig
from marlvault.record.group import (
    coordinator_host,
    create_for_recording,
    local_parts,
    merge_parts,
    open_group_vault,
)
from marlvault.record.recorder import Recorder, RecordStats
from marlvault.schema import check_extras, example_batch, meanings, trajectory_to_batch

_VERSIONED = ("jax", "jaxlib", "flax", "optax", "jumanji", "tensorstore", "numpy")


@dataclass(frozen=True)
class RecordPlan:
    """Which learner updates are recorded.

    Update ``u`` (0-based) covers global env steps ``[u * spu, (u + 1) * spu)`` where ``spu`` is
    the env steps per update. It is recorded when ``u % every_k == 0`` and its first env step lies
    in ``[start_step, stop_step)``.
    """

    every_k: int
    start_step: int
    stop_step: int | None
    steps_per_update: int
    num_updates: int

    @classmethod
    def from_config(cls, record: RecordConfig, steps_per_update: int, num_updates: int):
        return cls(record.every_k_updates, record.start_step, record.stop_step,
                   steps_per_update, num_updates)  # fmt: skip

    def records(self, u: int) -> bool:
        if u < 0 or u >= self.num_updates or u % self.every_k:
            return False
        first = u * self.steps_per_update
        return first >= self.start_step and (self.stop_step is None or first < self.stop_step)

    def cut_after(self, u: int) -> bool:
        """True where update ``u`` is recorded, ``u + 1`` is not, and a later one is."""
        if not self.records(u) or self.records(u + 1):
            return False
        return any(self.records(v) for v in range(u + 2, self.num_updates))

    def runs(self, first_update: int, count: int) -> list[tuple[int, int]]:
        """Contiguous recorded runs ``[(a, b), ...]`` (offsets into a call of ``count`` updates)."""
        out: list[tuple[int, int]] = []
        for i in range(count):
            if not self.records(first_update + i):
                continue
            if out and out[-1][1] == i and not self.cut_after(first_update + i - 1):
                out[-1] = (out[-1][0], i + 1)
            else:
                out.append((i, i + 1))
        return out

    @property
    def recorded_updates(self) -> int:
        return sum(self.records(u) for u in range(self.num_updates))


def package_versions() -> dict[str, str]:
    out = {"marlvault": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def action_space(spec: EnvSpec) -> dict:
    """The recorded action space: ``{"kind": "discrete", "n": A}`` or
    ``{"kind": "continuous", "size": A, "low": lo, "high": hi}`` (every component's bounds)."""
    if spec.continuous:
        return {"kind": "continuous", "size": spec.action_dim,
                "low": float(spec.action_low), "high": float(spec.action_high)}  # fmt: skip
    return {"kind": "discrete", "n": spec.action_dim}


def run_metadata(config: Any, spec: EnvSpec, extras: tuple[str, ...], source: str) -> dict:
    """The ``"marlvault"`` metadata section of a recorded vault."""
    return {
        "marlvault": {
            "env_name": spec.env_name,
            "scenario": spec.scenario,
            "num_agents": spec.num_agents,
            "obs_dim": spec.obs_dim,
            "action_dim": spec.action_dim,
            "action_space": action_space(spec),
            "state_dim": spec.state_dim,
            "time_limit": spec.time_limit,
            "seed": getattr(getattr(config, "arch", None), "seed", None),
            "source": source,
            "config": to_dict(config),
            "schema": meanings(spec, extras),
            "axis_order": "[row, time, agent, ...]; row = environment, time continuous",
            "versions": package_versions(),
        }
    }


class TrainingRecorder:
    """The ``on_trajectories`` hook of :func:`marlvault.online.run.train`.

    Args:
        config: the resolved IPPO config; ``config.record.path`` must be set.
        spec: the environment's spec.
        updates_per_call: U, updates in each learner call.
        queue_size: learner calls that may wait for the writer before the learner blocks.
    """

    def __init__(self, config: Any, spec: EnvSpec, updates_per_call: int, queue_size: int = 4):
        rec = config.record
        self.extras = check_extras(tuple(rec.extras))
        self.spec = spec
        self.updates_per_call = updates_per_call
        self.plan = RecordPlan.from_config(rec, config.steps_per_update, config.num_updates)
        meta = run_metadata(config, spec, self.extras, source="marlvault train")
        meta["marlvault"]["record_plan"] = {
            "every_k_updates": rec.every_k_updates, "start_step": rec.start_step,
            "stop_step": rec.stop_step, "recorded_updates": self.plan.recorded_updates,
        }  # fmt: skip
        example = example_batch(spec, config.arch.num_envs, self.extras)
        self._server = None  # process 0's OCDBT coordinator in a multi-process run
        self.cut_rows = 0
        """Rows whose open episode was ended where ``record.resume=true`` continued."""
        if jax.process_count() > 1:
            vault, self._server, self.cut_rows = open_group_vault(
                rec.path, example, metadata=meta, resume=rec.resume, chunks=rec.chunk_steps or None,
                host=coordinator_host(config.dist), wait_s=config.dist.timeout_s,
            )  # fmt: skip
        else:
            vault = create_for_recording(rec.path, example, metadata=meta, resume=rec.resume,
                                         chunks=rec.chunk_steps or None)  # fmt: skip
            if rec.resume:
                try:
                    self.cut_rows = vault.cut_tail()
                except BaseException:
                    vault.release()
                    raise
        self.recorder = Recorder(vault, to_batch=self._to_batch, queue_size=queue_size)

    def _to_batch(self, item: tuple[Any, Any, bool]) -> dict[str, Any]:
        traj, split, cut = item
        if split is not None:  # this process's shards of a multi-process run
            traj = merge_parts(traj, split)
        return trajectory_to_batch(traj, self.spec, self.extras, cut_after=bool(cut))

    def __call__(self, traj: Any, call: int) -> None:
        """Queues the recorded part of one learner call's rollouts ``[U, T, B, ...]``."""
        first = call * self.updates_per_call
        for a, b in self.plan.runs(first, self.updates_per_call):
            part = traj if (a, b) == (0, self.updates_per_call) else _slice(traj, a, b)
            split = None
            if jax.process_count() > 1:
                part, split = local_parts(part)
            self.recorder.add((part, split, self.plan.cut_after(first + b - 1)))

    def close(self) -> RecordStats:
        try:
            return self.recorder.close()
        finally:
            self._server = None


def _slice(traj: Any, a: int, b: int) -> Any:
    return jax.tree_util.tree_map(lambda x: x[a:b], traj)
