"""The one optimiser factory of online and offline learners: global-norm clipping, then Adam.

>>> tx = make_optimiser(3e-4, max_grad_norm=10.0)                        # offline learners
>>> tx = make_optimiser(linear_decay(2.5e-4, 1000), 0.5, eps=1e-5)       # IPPO with decay
"""

from __future__ import annotations

import optax


def make_optimiser(
    lr: float | optax.Schedule, max_grad_norm: float, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Clip the gradients' global norm to ``max_grad_norm``, then Adam.

    Args:
        lr: a constant learning rate or an optax schedule (see :func:`linear_decay`).
        max_grad_norm: global-norm clip.
        eps: Adam's epsilon (optax's default 1e-8; PPO conventionally uses 1e-5).
    """
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=eps))


def linear_decay(lr: float, steps: int) -> optax.Schedule:
    """A rate decaying linearly from ``lr`` to 0 over ``steps`` optimiser steps."""
    return optax.linear_schedule(lr, 0.0, steps)
