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

``config_class`` is a *name*, looked up in :func:`config_classes` (marlvault's own run configs);
it is never imported as given, so a crafted ``meta.json`` cannot make loading import a module.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from marlvault.config import from_dict, to_dict
from marlvault.errors import CheckpointError, ConfigError, UnknownConfigClassError

META = "meta.json"
PARAMS = "params"


def save_checkpoint(
    directory: str | Path, tag: str, params: Any, config: Any, *, step: int, return_mean: float
) -> Path:
    """Save ``params`` (a pytree of arrays) and ``config`` under ``directory/tag``.

    Returns:
        the checkpoint folder.

    Raises:
        UnknownConfigClassError: ``config`` is not one of :func:`config_classes` (it could not be
            restored).
    """
    import orbax.checkpoint as ocp

    final = Path(directory).absolute() / tag
    name = config_class_name(type(config))
    if name not in config_classes():
        raise UnknownConfigClassError(
            f"{final}: expected a run config of marlvault ({', '.join(config_classes())}), found "
            f"{name}; fix: save the run config the algorithm was trained with"
        )
    tmp = final.with_name(f".{tag}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    host = jax.tree.map(np.asarray, jax.device_get(params))
    with ocp.StandardCheckpointer(multiprocessing_options=_this_process_only()) as ckpt:
        ckpt.save(tmp / PARAMS, host)
        ckpt.wait_until_finished()
    meta = {
        "config_class": name,
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


def _this_process_only() -> Any:
    """Orbax options for a save made by one process alone (process 0 of a multi-process run
    saves host copies; orbax must not wait for the others)."""
    import orbax.checkpoint as ocp

    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})


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
        meta = json.loads((folder / META).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder / META}: not valid JSON ({err}); fix: re-save it") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{folder / META}: expected a JSON object, found "
                              f"{type(meta).__name__}; fix: re-save it")
    return meta


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
        UnknownConfigClassError: ``meta.json`` names a class outside :func:`config_classes`.
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


def config_class_name(cls: type) -> str:
    """``"<module>:<qualname>"``, as ``meta.json`` stores a config class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def config_classes() -> dict[str, type]:
    """The registry of config classes a checkpoint may name: marlvault's own run configs.

    IPPO/MAPPO's ``Config``, the recurrent systems' ``Config`` and one run config per offline
    algorithm of :data:`marlvault.offline.train.ALGORITHMS`; the modules imported here are fixed
    in code.
    """
    from marlvault.offline import train as offline
    from marlvault.online import ippo, rec_ippo

    classes = [ippo.Config, rec_ippo.Config,
               *(offline.run_config_class(a) for a in offline.ALGORITHMS)]  # fmt: skip
    return {config_class_name(c): c for c in classes}


def _config_from_meta(folder: Path, meta: dict[str, Any]) -> Any:
    name, registry = meta.get("config_class"), config_classes()
    if not isinstance(name, str) or name not in registry:
        raise UnknownConfigClassError(
            f"{folder / META}: config_class: expected one of {', '.join(registry)}, found "
            f"{name!r} (never imported); fix: restore a checkpoint saved by marlvault"
        )
    data = meta.get("config", {})
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{folder / META}: config: expected a mapping of sections, found "
            f"{type(data).__name__}; fix: restore a checkpoint saved by marlvault"
        )
    try:
        return from_dict(registry[name], data)
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
