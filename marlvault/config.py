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

This module is the engine only. The ``logger`` section every run has lives in :mod:`marlvault.run`,
online sections in
:mod:`marlvault.online.config`, offline ones in :mod:`marlvault.offline.train`; each algorithm
module defines its own ``system`` section and top-level ``Config``.

Why our own engine and not OmegaConf structured configs or tyro: both would parse the same
overrides, but OmegaConf does not coerce ``2e6`` to an ``int`` field nor ``128,128`` to a tuple,
and tyro's ``--section.key value`` flags differ from the ``section.key=value`` overrides that Mava
users type; either would need a layer of ours for the same error messages (expected/found/fix and
the list of valid keys), so the engine stays ~300 lines of ours.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
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


# --- validation ----------------------------------------------------------------------------------
def require(key: str, value: Any, ok: bool, expected: str, example: str) -> None:
    """THE config check: raise :class:`ConfigError` ``"<key>: expected …, found …; fix: …"``.

    Args:
        key: dotted key as the user types it, e.g. ``"system.rollout_length"``.
        value: the value found.
        ok: whether ``value`` is acceptable.
        expected: what is acceptable, e.g. ``"a positive integer"``.
        example: a valid setting shown as the fix, e.g. ``"system.rollout_length=128"``.
    """
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, found {value!r}; fix: e.g. {example}")


def require_at_least(prefix: str, section: Any, *names: str, minimum: int = 1) -> None:
    """:func:`require` that each named field of ``section`` is ``>= minimum``."""
    require_range(prefix, section, *names, lo=minimum)


INT32_MAX = 2**31 - 1
"""Largest count JAX holds in its default ``int32`` (step counters, scan lengths, sizes)."""
MAX_PARALLEL = 2**20
"""Most environments or episodes one run steps in parallel (a ``vmap`` batch)."""
MAX_WIDTH = 2**16
"""Widest network layer a config may ask for."""
MAX_BATCH_STEPS = 2**24
"""Most steps in one update's batch (envs x rollout length, windows x window length): beyond
this a batch of even small observations no longer fits a device's memory."""
SEED_MAX = 2**32 - 1
"""Seeds are 32-bit unsigned integers (what JAX and NumPy both accept)."""


def require_range(prefix: str, section: Any, *names: str, lo: float | None = None,
                  hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
                  allow_none: bool = False) -> None:
    """:func:`require` that each named number of ``section`` is finite and in range.

    The declarative form of a field's range: ``lo``/``hi`` are the bounds (``None``: unbounded),
    ``lo_open``/``hi_open`` exclude them; ``allow_none`` accepts ``None`` (an optional field).
    The fix shown is the field's default, so it never repeats the rejected value.

    Args:
        prefix: the section's key as the user types it (``"system"``; ``""`` for top-level keys).
        section: the dataclass instance holding the fields.
        names: the fields to check.
    """
    for name in names:
        value = getattr(section, name)
        if value is None and allow_none:
            continue
        key = f"{prefix}.{name}" if prefix else name
        ok = _in_range(value, lo, hi, lo_open, hi_open)
        expected = _range_text(isinstance(value, int), lo, hi, lo_open, hi_open)
        if not ok:
            require(key, value, False, expected, f"{key}={_default_example(section, name, lo)}")


def _in_range(value: Any, lo: float | None, hi: float | None, lo_open: bool,
              hi_open: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if lo is not None and (value <= lo if lo_open else value < lo):
        return False
    return hi is None or (value < hi if hi_open else value <= hi)


def _range_text(integer: bool, lo: float | None, hi: float | None, lo_open: bool,
                hi_open: bool) -> str:
    kind = "an integer" if integer else "a finite number"
    if lo is not None and hi is not None:
        return f"{kind} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{kind} {'<' if hi_open else '<='} {hi}"
    return kind


def _default_example(section: Any, name: str, lo: float | None) -> str:
    """The field's default as typed on the command line (``lo`` for a field without one)."""
    for f in dataclasses.fields(section):
        if f.name == name and f.default is not dataclasses.MISSING and f.default is not None:
            return _render(f.default)
    return _render(lo)


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is ``<= at_most`` (at least 1): a valid split of ``n``
    closest to a rejected one."""
    return max(d for d in range(1, max(1, min(n, at_most)) + 1) if n % d == 0)


# --- introspection -------------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls: type) -> list[str]:
    """All dotted keys of a two-level config class, e.g. ``["arch.num_envs", ...]``."""
    keys = []
    for sec_name, sec_type in _hints(cls).items():
        keys += [f"{sec_name}.{f.name}" for f in dataclasses.fields(sec_type)]
    return keys


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One config key as ``--help`` lists it."""

    key: str
    """Dotted key, e.g. ``"system.lr"``."""
    type: str
    """Readable type name, e.g. ``"float"`` or ``"tuple[int, ...]"``."""
    default: str
    """Default value as typed on the command line."""
    doc: str
    """First paragraph of the field's docstring, on one line."""


def field_docs(cls: type) -> dict[str, str]:
    """``{field: first docstring paragraph}`` of a dataclass and its bases (the string literal
    under each field)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (generated class, frozen app): no descriptions
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                first = str(after.value.value).strip().split("\n\n")[0]
                docs[node.target.id] = " ".join(first.split())
    return docs


def describe_keys(cls: type, prefix: str = "", default: Any = None) -> list[KeyDoc]:
    """Every key of a config class (sections recursed into) with type, default and meaning.

    ``default`` is the instance whose values are shown (a section's ``default_factory`` result
    when recursing, so a run config's own defaults for a shared section show, not the section's).
    """
    rows: list[KeyDoc] = []
    hints, docs = _hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if default is not None:
            value = getattr(default, f.name)
        else:
            value = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(tp):
            rows += describe_keys(tp, f"{prefix}{f.name}.", value)
        else:
            rows.append(KeyDoc(prefix + f.name, _type_name(tp), _render(value),
                               docs.get(f.name, "")))
    return rows


def keys_table(cls: type, skip: tuple[str, ...] = ()) -> str:
    """:func:`describe_keys` as aligned lines ``key  type = default  meaning`` for ``--help``."""
    rows = [r for r in describe_keys(cls) if r.key not in skip]
    kw = max(len(r.key) for r in rows)
    tw = max(len(f"{r.type} = {r.default}") for r in rows)
    return "\n".join(
        f"  {r.key.ljust(kw)}  {f'{r.type} = {r.default}'.ljust(tw)}  {r.doc.replace('``', '')}"
        for r in rows
    )


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
    """A value of type ``tp`` as typed on the command line (shown after a value that did not
    coerce, so it never repeats it)."""
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(tp) is tuple and args:
        return f"{_example(args[0])},{_example(args[0])}"
    if args:  # an optional field
        return _example(args[0])
    return {int: "128", float: "0.5", bool: "true", str: "name"}.get(tp, "null")


def _coerce(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_optional(value, tp)
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


def _coerce_optional(value: Any, tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value == "" and args[0] is str:
        return ""  # `key=` is an empty string for the field's check to judge, not "unset"
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    return _coerce(value, args[0])


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
    "coerce",
    "KeyDoc",
    "describe_keys",
    "field_docs",
    "keys_table",
    "env_presets",
    "from_dict",
    "load",
    "load_yaml",
    "parse_overrides",
    "preset_dir",
    "require",
    "require_at_least",
    "require_range",
    "largest_divisor",
    "INT32_MAX",
    "MAX_BATCH_STEPS",
    "MAX_PARALLEL",
    "MAX_WIDTH",
    "SEED_MAX",
    "to_dict",
    "valid_keys",
]
