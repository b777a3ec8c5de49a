"""Config sections of online training: environment, layout, networks, recording.

Each online algorithm's top-level ``Config`` combines these with its own ``system`` section and
the run skeleton's ``logger`` section. The engine (types, presets, overrides) is
:mod:`marlvault.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from marlvault.config import (
    INT32_MAX,
    MAX_PARALLEL,
    MAX_WIDTH,
    SEED_MAX,
    require,
    require_range,
)


@dataclass(frozen=True)
class EnvConfig:
    """Which environment to train on."""

    env_name: str = "rware"
    """Registry name (``marlvault envs`` lists them)."""
    scenario: str = "tiny-2ag"
    """Scenario of that environment."""


@dataclass(frozen=True)
class ArchConfig:
    """How the run is laid out (envs, devices, evaluation cadence, seed)."""

    num_envs: int = 32
    """Parallel training environments in total, split evenly over all devices (of every process in a multi-process run)."""
    num_eval_episodes: int = 32
    """Episodes per evaluation, run in parallel (also split over devices)."""
    num_evaluation: int = 20
    """Evaluations over the run; the learner runs ``num_updates // num_evaluation`` updates
    per jitted call between them."""
    evaluation_greedy: bool = False
    """Evaluate with the greedy (arg-max) action instead of sampling."""
    seed: int = 42
    """Seed of every random stream in the run."""

    def __post_init__(self) -> None:
        require_range("arch", self, "num_envs", "num_eval_episodes", lo=1, hi=MAX_PARALLEL)
        require_range("arch", self, "num_evaluation", lo=1, hi=MAX_PARALLEL)
        require_range("arch", self, "seed", lo=0, hi=SEED_MAX)


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the MLP torsos."""

    actor_hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the actor torso."""
    critic_hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the critic torso."""

    def __post_init__(self) -> None:
        for name in ("actor_hidden", "critic_hidden"):
            sizes = getattr(self, name)
            ok = bool(sizes) and all(1 <= n <= MAX_WIDTH for n in sizes)
            require(f"network.{name}", sizes, ok,
                    f"one or more layer sizes in [1, {MAX_WIDTH}]", f"network.{name}=128,128")


@dataclass(frozen=True)
class RecordConfig:
    """Recording of training experience into a vault (used by ``marlvault.record``)."""

    path: str | None = None
    """Vault path or URL; ``None`` records nothing."""
    every_k_updates: int = 1
    """Record the rollouts of every k-th update."""
    start_step: int = 0
    """First environment step (global, all envs) to record."""
    stop_step: int | None = None
    """Environment step after which recording stops; ``None`` records to the end."""
    extras: tuple[str, ...] = ()
    """Optional extra keys under ``infos.`` (subset of ``log_prob``, ``update``, ``next_obs``)."""
    chunk_steps: int = 0
    """Time steps per stored chunk; 0 picks them so the largest leaf's chunk of one writer's rows
    is about 4 MiB. Data becomes durable chunk by chunk (and at the end of the run)."""
    resume: bool = False
    """Append to the vault at ``record.path`` if it exists (same structure; in a multi-process
    run, the same number of processes) instead of refusing it. Each row continues from the
    length every row had reached; its last stored step is marked truncated where an episode was
    still running, so no episode spans the restart. Training itself starts afresh."""

    def __post_init__(self) -> None:
        require("record.path", self.path, self.path is None or bool(self.path.strip()),
                "a vault path or URL, or null (record nothing)", "record.path=vaults/run.vlt")
        require_range("record", self, "every_k_updates", lo=1, hi=INT32_MAX)
        require_range("record", self, "start_step", lo=0)
        require_range("record", self, "chunk_steps", lo=0, hi=1 << 20)
        if self.stop_step is not None:
            require("record.stop_step", self.stop_step, self.stop_step > self.start_step,
                    f"null or a step after record.start_step={self.start_step}",
                    "record.stop_step=null")
