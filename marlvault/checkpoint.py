"""Orbax checkpoints of parameters plus the resolved config that produced them.

On disk (one folder per tag, ``best`` and ``last``)::

    <run_dir>/checkpoints/
        best/
            params/        orbax StandardCheckpointer tree: {"actor": ..., "critic": ...}
            meta.json      {"config_class": "marlvault.online.ippo:Config", "config": {...},
                            "step": int, "return_mean": float, "tag": "best"}
        last/ ...

:func:`load_policy` restores a folder for evaluation: the config (rebuilt into its dataclass)
and the parameters. Saving writes to a temporary name and renames, so an interrupted save never
replaces a good checkpoint with a broken one.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from marlvault.config import from_dict, to_dict
from marlvault.errors import CheckpointError, ConfigError

META = "meta.json"
PARAMS = "params"


def save_checkpoint(
    directory: str | Path, tag: str, params: Any, config: Any, *, step: int, return_mean: float
) -> Path:
    """Save ``params`` (a pytree of arrays) and ``config`` under ``directory/tag``.

    Returns:
        the checkpoint folder.
    """
    import orbax.checkpoint as ocp

    final = Path(directory).absolute() / tag
    tmp = final.with_name(f".{tag}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    host = jax.tree.map(np.asarray, jax.device_get(params))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp / PARAMS, host)
        ckpt.wait_until_finished()
    cls = type(config)
    meta = {
        "config_class": f"{cls.__module__}:{cls.__qualname__}",
        "config": to_dict(config),
        "step": int(step),
        "return_mean": float(return_mean),
        "tag": tag,
    }
    (tmp / META).write_text(json.dumps(meta, indent=2))
    old = final.with_name(f".{tag}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _resolve(path: Path) -> Path:
    """Accept a tag folder, or a run's ``checkpoints`` folder / run folder (prefers ``best``)."""
    for candidate in (path, path / "best", path / "checkpoints" / "best", path / "last",
                      path / "checkpoints" / "last"):  # fmt: skip
        if (candidate / META).is_file():
            return candidate
    raise CheckpointError(
        f"{path}: no checkpoint found (expected {META} and {PARAMS}/ in it, or in best/ or last/ "
        f"below it); fix: pass the run's checkpoints folder, e.g. results/<run>/checkpoints"
    )


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint folder (see :func:`load_policy` for accepted paths)."""
    folder = _resolve(Path(path))
    try:
        return json.loads((folder / META).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder / META}: not valid JSON ({err}); fix: re-save it") from None


def load_policy(checkpoint_dir: str | Path, target: Any = None) -> tuple[Any, Any]:
    """Restore a checkpoint for evaluation.

    Args:
        checkpoint_dir: a ``best``/``last`` folder, a run's ``checkpoints`` folder or the run
            folder (``best`` is preferred).
        target: optional pytree of arrays the parameters must match (shapes and structure),
            e.g. freshly initialised parameters of the network built from the config.

    Returns:
        (config, params): the config rebuilt into its dataclass, params as a nested dict.

    Raises:
        CheckpointError: nothing there, or the parameters do not match ``target``/the config.
    """
    import orbax.checkpoint as ocp

    folder = _resolve(Path(checkpoint_dir).absolute())
    meta = read_meta(folder)
    config = _config_from_meta(folder, meta)
    with ocp.StandardCheckpointer() as ckpt:
        params = ckpt.restore(folder / PARAMS)
    if target is not None:
        _check_matches(folder, params, target)
    return config, params


def _config_from_meta(folder: Path, meta: dict[str, Any]) -> Any:
    module, _, name = str(meta.get("config_class", "")).partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise CheckpointError(
            f"{folder / META}: config_class {meta.get('config_class')!r} cannot be imported; "
            f"fix: restore with the marlvault version that saved it"
        ) from None
    try:
        return from_dict(cls, meta.get("config", {}))
    except ConfigError as err:
        raise CheckpointError(f"{folder / META}: saved config does not load ({err})") from None


def _check_matches(folder: Path, params: Any, target: Any) -> None:
    got = jax.tree.map(lambda x: tuple(np.shape(x)), params)
    want = jax.tree.map(lambda x: tuple(np.shape(x)), _plain(target))
    if got != want:
        raise CheckpointError(
            f"{folder / PARAMS}: parameters do not match the network; expected shapes {want}, "
            f"found {got}; fix: restore with the config saved in {META}"
        )


def _plain(tree: Any) -> Any:
    """NamedTuples/dataclasses -> dicts, as orbax restores them."""
    if hasattr(tree, "_asdict"):
        return {k: _plain(v) for k, v in tree._asdict().items()}
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return {f.name: _plain(getattr(tree, f.name)) for f in dataclasses.fields(tree)}
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    return tree
