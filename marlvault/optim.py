"""The one optimiser factory of online and offline learners: global-norm clipping, then Adam.

>>> tx = make_optimiser(3e-4, max_grad_norm=10.0)                        # offline learners
>>> tx = make_optimiser(linear_decay(2.5e-4, 1000), 0.5, eps=1e-5)       # IPPO with decay

Data-parallel offline training (:mod:`marlvault.offline.parallel`) traces an algorithm's update
inside :func:`averaging_over`: every optimiser made here then first averages the gradients over
that mesh axis, so each device's gradient of its own batch becomes the gradient of the whole
batch. Elsewhere (and in the online learners, which average themselves) it does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import jax
import optax

_MEAN_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("mean_axis", default=None)


@contextlib.contextmanager
def averaging_over(axis: str) -> Iterator[None]:
    """While tracing inside this block, optimisers average gradients over mesh axis ``axis``."""
    token = _MEAN_AXIS.set(axis)
    try:
        yield
    finally:
        _MEAN_AXIS.reset(token)


def _mean_over_devices() -> optax.GradientTransformation:
    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        axis = _MEAN_AXIS.get()
        return (updates if axis is None else jax.lax.pmean(updates, axis)), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimiser(
    lr: float | optax.Schedule, max_grad_norm: float, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Clip the gradients' global norm to ``max_grad_norm``, then Adam (gradients first averaged
    over devices inside :func:`averaging_over`).

    Args:
        lr: a constant learning rate or an optax schedule (see :func:`linear_decay`).
        max_grad_norm: global-norm clip.
        eps: Adam's epsilon (optax's default 1e-8; PPO conventionally uses 1e-5).
    """
    return optax.chain(
        _mean_over_devices(), optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=eps)
    )


def linear_decay(lr: float, steps: int) -> optax.Schedule:
    """A rate decaying linearly from ``lr`` to 0 over ``steps`` optimiser steps."""
    return optax.linear_schedule(lr, 0.0, steps)
