"""Typed configuration: frozen dataclass sections, YAML presets, dotted ``key=value`` overrides.

A run's config is a frozen dataclass whose fields are *sections* (themselves frozen dataclasses of
plain values). Values come, in order, from the dataclass defaults, a YAML preset shipped in
``marlvault/configs/`` (e.g. ``ippo.yaml``), an environment preset
(``configs/env/<env>-<scenario>.yaml``) and finally command-line overrides typed as Mava users type
them::

    env=rware scenario=tiny-2ag system.rollout_length=64 arch.num_envs=64 system.total_timesteps=2e6

Every value is coerced to its field's type (``2e6`` -> ``int`` 2000000, ``128,128`` ->
``(128, 128)``, ``true`` -> ``True``). An unknown key or an uncoercible value raises
:class:`~marlvault.errors.ConfigError` at once, naming the key, the expected type, what was found
and the valid keys. :func:`to_dict` / :func:`from_dict` round-trip a resolved config through plain
JSON-able dicts (vault metadata, checkpoints).

The sections shared by every algorithm (``env``, ``arch``, ``network``, ``logger``, ``record``)
live here; each algorithm module defines its own ``system`` section and top-level ``Config``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from marlvault.errors import ConfigError

C = TypeVar("C")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null", "~", ""}
ENV_SHORTCUTS = {"env": "env.env_name", "scenario": "env.scenario"}
"""Bare keys accepted on the command line and what they stand for."""


# --- sections shared by all algorithms -----------------------------------------------------------
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
        _positive(self, "num_envs", "num_eval_episodes", "num_evaluation")


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
            if not sizes or any(s <= 0 for s in sizes):
                raise ConfigError(
                    f"network.{name}: expected one or more positive layer sizes, found {sizes!r}; "
                    f"fix: e.g. network.{name}=128,128"
                )


@dataclass(frozen=True)
class LoggerConfig:
    """Where and how the run reports."""

    base_dir: str = "results"
    """Directory under which the run's folder (logs, JSON, checkpoints) is created."""
    run_name: str | None = None
    """Name of the run folder; default ``<algo>_<env>_<scenario>_seed<seed>``."""
    console: bool = True
    """Progress bar and one line per evaluation on the console."""
    tensorboard: bool = True
    """Write TensorBoard event files."""
    json: bool = True
    """Write marl-eval JSON (``metrics.json``)."""
    checkpoint: bool = True
    """Save orbax checkpoints of the best and the last parameters."""


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
    """Optional extra keys under ``infos.`` (e.g. ``log_prob``, ``update``, ``final_obs``)."""

    def __post_init__(self) -> None:
        _positive(self, "every_k_updates")


def _positive(section: Any, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value <= 0:
            raise ConfigError(
                f"{type(section).__name__}.{name}: expected a positive number, found {value!r}; "
                f"fix: set it to a value > 0"
            )


def require_min(prefix: str, section: Any, *names: str, minimum: int = 1) -> None:
    """Raise ``ConfigError`` naming ``<prefix>.<name>`` when a field is below ``minimum``."""
    for name in names:
        value = getattr(section, name)
        if value < minimum:
            raise ConfigError(f"{prefix}.{name}: expected >= {minimum}, got {value}")


# --- introspection -------------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls: type) -> list[str]:
    """All dotted keys of a two-level config class, e.g. ``["arch.num_envs", ...]``."""
    keys = []
    for sec_name, sec_type in _hints(cls).items():
        keys += [f"{sec_name}.{f.name}" for f in dataclasses.fields(sec_type)]
    return keys


def describe_keys(cls: type) -> list[tuple[str, str, str]]:
    """``(key, type, default)`` for every dotted key, for ``--help`` texts."""
    rows = []
    default = cls()
    for sec_name, sec_type in _hints(cls).items():
        hints = _hints(sec_type)
        for f in dataclasses.fields(sec_type):
            value = getattr(getattr(default, sec_name), f.name)
            rows.append((f"{sec_name}.{f.name}", _type_name(hints[f.name]), _render(value)))
    return rows


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "").replace("NoneType", "None")
    return getattr(tp, "__name__", str(tp))


def _render(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# --- coercion ------------------------------------------------------------------------------------
def coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (a CLI string or a YAML scalar) to the type ``tp`` of field ``key``.

    Raises:
        ConfigError: naming the key, the expected type and the value found.
    """
    try:
        return _coerce(value, tp)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{key}: expected {_type_name(tp)}, found {value!r} ({err}); fix: e.g. "
            f"{key}={_example(tp)}"
        ) from None


def _example(tp: Any) -> str:
    return {int: "128", float: "0.5", bool: "true", str: "name"}.get(tp, "a,b")


def _coerce(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        return _coerce(value, args[0])
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(v, item) for v in value)
    if tp is bool:
        return _to_bool(value)
    if tp is int:
        return _to_int(value)
    if tp is float:
        if isinstance(value, bool):
            raise TypeError("a bool is not a number")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise TypeError("not a string")
        return str(value)
    raise TypeError(f"unsupported field type {tp}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not one of true/false/1/0/yes/no")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    if isinstance(value, int):
        return value
    number = float(str(value).replace("_", ""))
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


# --- dict round trip -----------------------------------------------------------------------------
def to_dict(config: Any) -> dict[str, Any]:
    """A nested dict of plain JSON values (tuples become lists)."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return {
        name: {f.name: plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
        for name, section in ((f.name, getattr(config, f.name)) for f in dataclasses.fields(config))
    }


def from_dict(cls: type[C], data: dict[str, Any], *, base: C | None = None) -> C:
    """Build ``cls`` from a nested dict (missing keys keep the ``base``/default values).

    Raises:
        ConfigError: for an unknown section or key, or a value of the wrong type.
    """
    config = base if base is not None else cls()
    flat = []
    for sec_name, values in data.items():
        if not isinstance(values, dict):
            flat.append((sec_name, values))
            continue
        flat += [(f"{sec_name}.{k}", v) for k, v in values.items()]
    return _apply(config, flat)


def _apply(config: C, items: list[tuple[str, Any]]) -> C:
    hints = _hints(type(config))
    updates: dict[str, dict[str, Any]] = {}
    for key, raw in items:
        sec_name, _, name = key.partition(".")
        sec_type = hints.get(sec_name)
        field_types = _hints(sec_type) if sec_type is not None else {}
        if name not in field_types:
            raise ConfigError(
                f"unknown config key {key!r}; valid keys: {', '.join(valid_keys(type(config)))}"
            )
        updates.setdefault(sec_name, {})[name] = coerce(key, raw, field_types[name])
    sections = {
        sec: dataclasses.replace(getattr(config, sec), **vals) for sec, vals in updates.items()
    }
    return dataclasses.replace(config, **sections)


# --- presets and overrides -----------------------------------------------------------------------
def preset_dir() -> Path:
    """The directory of YAML presets shipped in the package."""
    return Path(str(resources.files("marlvault") / "configs"))


def load_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML preset into a dict (``{}`` for an empty file)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: preset not found; fix: check the name") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err}); fix: correct the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, found {type(data).__name__}")
    return data


def parse_overrides(args: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """Split ``["a.b=1", "env=rware"]`` into pairs, expanding the ``env``/``scenario`` shortcuts.

    Raises:
        ConfigError: for an argument without ``=``.
    """
    pairs = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override {arg!r}: expected KEY=VALUE (e.g. system.rollout_length=64), "
                f"found no '='; fix: write it as key=value"
            )
        key = key.strip().lstrip("+")
        pairs.append((ENV_SHORTCUTS.get(key, key), value.strip()))
    return pairs


def load(cls: type[C], preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> C:
    """Resolve a config: defaults < ``configs/<preset>.yaml`` < env preset < overrides.

    The env preset is ``configs/env/<env_name>-<scenario>.yaml`` for the env and scenario chosen
    after all overrides; it may set any section (e.g. a longer ``total_timesteps``) and is
    skipped when no such file exists. Overrides always win.

    Args:
        cls: the top-level config class (e.g. ``marlvault.online.ippo.Config``).
        preset: name of a YAML file in ``marlvault/configs`` without ``.yaml``, or ``None``.
        overrides: ``KEY=VALUE`` strings.

    Raises:
        ConfigError: for an unknown key, a bad value or a missing preset.
    """
    config = cls()
    if preset is not None:
        config = from_dict(cls, load_yaml(preset_dir() / f"{preset}.yaml"), base=config)
    pairs = parse_overrides(overrides)
    with_overrides = _apply(config, pairs)  # validates keys early, and picks the env
    env = getattr(with_overrides, "env", None)
    if env is not None:
        env_file = preset_dir() / "env" / f"{env.env_name}-{env.scenario}.yaml"
        if env_file.exists():
            config = from_dict(cls, load_yaml(env_file), base=config)
    return _apply(config, pairs)


def env_presets() -> list[str]:
    """Names (``<env>-<scenario>``) of the environment presets shipped in the package."""
    return sorted(p.stem for p in (preset_dir() / "env").glob("*.yaml"))


__all__ = [
    "ArchConfig",
    "EnvConfig",
    "LoggerConfig",
    "NetworkConfig",
    "RecordConfig",
    "coerce",
    "describe_keys",
    "env_presets",
    "from_dict",
    "load",
    "load_yaml",
    "parse_overrides",
    "preset_dir",
    "require_min",
    "to_dict",
    "valid_keys",
]
