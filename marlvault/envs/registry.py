"""Name -> environment: the one place that knows which envs and scenarios exist.

>>> env = make_env("rware", "tiny-2ag")               # doctest: +SKIP
>>> env = make_env("lbf", "8x8-2p-2f-coop", time_limit=50)  # doctest: +SKIP
>>> env = make_env("smax", "3m")                       # doctest: +SKIP  (marlvault[jaxmarl])
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NamedTuple

from marlvault.envs import jaxmarl_envs as jx
from marlvault.envs import jumanji_envs as jm
from marlvault.envs.base import EnvSpec, MarlEnv
from marlvault.errors import ConfigError, EnvNotFoundError


class _Family(NamedTuple):
    """One registered environment: its scenarios, shared defaults and builder."""

    scenarios: dict[str, dict[str, Any]]
    defaults: dict[str, Any]
    build: Callable[[str, dict[str, Any]], MarlEnv]
    optional_keys: tuple[str, ...]  # overridable keys that no scenario sets explicitly
    extra: str | None = None  # the pip extra of the optional packages (None: core env)
    requires: tuple[str, ...] = ()  # the optional packages' import names
    spec: Callable[[str, dict[str, Any]], EnvSpec] | None = None  # spec without building


_REGISTRY: dict[str, _Family] = {
    "rware": _Family(jm.RWARE_SCENARIOS, jm.RWARE_DEFAULTS, jm.make_rware, ("request_queue_size",)),
    "lbf": _Family(jm.LBF_SCENARIOS, jm.LBF_DEFAULTS, jm.make_lbf, ()),
    "matrax": _Family(
        jm.MATRAX_SCENARIOS, jm.MATRAX_DEFAULTS, jm.make_matrax, (), "matrax", ("matrax",)
    ),
    "smax": _Family(
        jx.SMAX_SCENARIOS, jx.SMAX_DEFAULTS, jx.make_smax, (), "jaxmarl", ("jaxmarl",), jx.smax_spec
    ),
    "mpe": _Family(
        jx.MPE_SCENARIOS, jx.MPE_DEFAULTS, jx.make_mpe, (), "jaxmarl", ("jaxmarl",), jx.mpe_spec
    ),
    "mabrax": _Family(
        jx.MABRAX_SCENARIOS,
        jx.MABRAX_DEFAULTS,
        jx.make_mabrax,
        (),
        "mabrax",
        ("jaxmarl", "brax"),
        jx.mabrax_spec,
    ),
}


def list_envs() -> dict[str, list[str]]:
    """Returns every registered env name mapped to its scenario names (registration order)."""
    return {name: list(fam.scenarios) for name, fam in _REGISTRY.items()}


def env_scenarios(env_name: str) -> list[str]:
    """Scenario names of one env.

    Raises:
        EnvNotFoundError: ``env_name`` is not registered (the message lists the valid names).
    """
    return list(_family(env_name).scenarios)


def missing_extra(env_name: str) -> str | None:
    """The pip extra to install when an optional package of ``env_name`` is missing, else None.

    Checks that the packages can be found, without importing them (fast).

    Raises:
        EnvNotFoundError: ``env_name`` is not registered.
    """
    fam = _family(env_name)
    missing = [name for name in fam.requires if importlib.util.find_spec(name) is None]
    return fam.extra if missing else None


def _family(env_name: str) -> _Family:
    fam = _REGISTRY.get(env_name)
    if fam is None:
        raise EnvNotFoundError(
            f"unknown environment {env_name!r}: expected one of {sorted(_REGISTRY)}; "
            "run `marlvault envs` to list environments and scenarios"
        )
    return fam


def _lookup(env_name: str, scenario: str) -> tuple[_Family, dict[str, Any]]:
    """Finds a family and the scenario's config, raising EnvNotFoundError with valid names."""
    fam = _family(env_name)
    cfg = fam.scenarios.get(scenario)
    if cfg is None:
        raise EnvNotFoundError(
            f"unknown scenario {scenario!r} for environment {env_name!r}: expected one of "
            f"{list(fam.scenarios)}; run `marlvault envs` to list them"
        )
    return fam, {**fam.defaults, **cfg}


def _config(env_name: str, scenario: str, overrides: dict[str, Any]) -> tuple[_Family, dict]:
    """The scenario's full config with ``overrides`` applied (unknown keys rejected)."""
    fam, cfg = _lookup(env_name, scenario)
    allowed = set(cfg) | set(fam.optional_keys)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ConfigError(
            f"{env_name}/{scenario}: unknown override(s) {unknown}: expected keys among "
            f"{sorted(allowed)}; remove or rename them"
        )
    if "time_limit" in overrides and int(overrides["time_limit"]) < 1:
        raise ConfigError(
            f"{env_name}/{scenario}: time_limit must be >= 1, got {overrides['time_limit']}; "
            "pass a positive episode length"
        )
    return fam, {**cfg, **overrides}


def make_env(env_name: str, scenario: str, **overrides: Any) -> MarlEnv:
    """Builds a registered environment.

    Args:
        env_name: "rware", "lbf", or one needing an optional package: "matrax", "smax", "mpe"
            (``marlvault[jaxmarl]``), "mabrax" (``marlvault[mabrax]``); see :func:`list_envs`.
        scenario: a scenario of that env, e.g. "tiny-2ag", "8x8-2p-2f-coop" or "3m".
        **overrides: scenario config values to replace, e.g. ``time_limit=50``.

    Returns:
        a pure, jittable :class:`MarlEnv`.

    Raises:
        EnvNotFoundError: unknown env or scenario (the message lists the valid names).
        ConfigError: unknown override key or invalid value.
        EnvDependencyError: the env's optional package is not installed.
    """
    _config(env_name, scenario, overrides)  # validate before touching the cache
    key = tuple(sorted(overrides.items()))
    try:
        hash(key)
    except TypeError:  # unhashable override values: build without the cache
        return _build.__wrapped__(env_name, scenario, key)
    return _build(env_name, scenario, key)


@functools.lru_cache(maxsize=64)
def _build(env_name: str, scenario: str, overrides: tuple[tuple[str, Any], ...]) -> MarlEnv:
    """Builds (and memoises: envs are immutable) one configured environment."""
    fam, cfg = _config(env_name, scenario, dict(overrides))
    try:
        return fam.build(scenario, cfg)
    except (AssertionError, ValueError, TypeError) as err:  # jumanji, jaxmarl validate with assert
        raise ConfigError(
            f"{env_name}/{scenario}: invalid config {cfg}: the environment rejected it ({err}); "
            "change the overrides"
        ) from err


def scenario_info(env_name: str, scenario: str, **overrides: Any) -> dict[str, Any]:
    """Describes a scenario: its config and the resulting spec sizes.

    Families with a cheap spec function (the jaxmarl ones) are described without building the
    env or importing its package, so this also works when the optional package is missing.

    Returns:
        dict with keys ``env_name``, ``scenario``, ``config`` (the full scenario config) and every
        field of :class:`EnvSpec` (num_agents, obs_dim, action_dim, state_dim, time_limit, ...).

    Raises:
        EnvDependencyError: the env's optional package is missing and it has no cheap spec.
    """
    fam, cfg = _config(env_name, scenario, overrides)
    spec = fam.spec(scenario, cfg) if fam.spec else make_env(env_name, scenario, **overrides).spec
    return {**asdict(spec), "config": cfg}
