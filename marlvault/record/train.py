"""``marlvault train ... record.path=VAULT``: train and record in one command.

The training loop hands each learner call's rollouts to a :class:`TrainingRecorder` (asynchronous
host copy, bounded queue, background writer). On normal exit and on the first Ctrl-C / SIGTERM
(the current learner call finishes first) everything produced so far is flushed and committed.
"""

from __future__ import annotations

from typing import Any

from marlvault.record.recorder import RecordStats
from marlvault.record.signals import graceful_stop


def train_and_record(config: Any, *, queue_size: int = 4) -> tuple[Any, RecordStats | None]:
    """Runs :func:`marlvault.online.run.train`, recording when ``config.record.path`` is set.

    Returns:
        (TrainResult, RecordStats or None when nothing was recorded).

    Raises:
        RecorderError: the background writer failed; what was committed stays readable.
    """
    from marlvault.envs.registry import make_env
    from marlvault.online import run
    from marlvault.record.session import TrainingRecorder

    hook = None
    if config.record.path:
        spec = make_env(config.env.env_name, config.env.scenario).spec
        hook = TrainingRecorder(config, spec, config.updates_per_call, queue_size=queue_size)
    stats = None
    with graceful_stop() as stop:
        try:
            result = run.train(config, on_trajectories=hook, should_stop=stop)
        finally:
            if hook is not None:
                stats = hook.close()
    return result, stats
