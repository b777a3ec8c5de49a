"""Config sections of online training: environment, layout, networks, recording.

Each online algorithm's top-level ``Config`` combines these with its own ``system`` section and
the run skeleton's ``logger`` section. The engine (types, presets, overrides) is
:mod:`marlvault.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from marlvault.config import require, require_at_least


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
    """Parallel training environments in total, split evenly over all local devices."""
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
        require_at_least("arch", self, "num_envs", "num_eval_episodes", "num_evaluation")


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
            require(f"network.{name}", sizes, bool(sizes) and min(sizes) > 0,
                    "one or more positive layer sizes", f"network.{name}=128,128")


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

    def __post_init__(self) -> None:
        require_at_least("record", self, "every_k_updates")
