"""The LAPACK calls of a lowered program, for the tests that refuse batched ones.

A batched LAPACK call (e.g. a vmapped orthogonal initialiser's QR) makes jaxlib's CPU kernel
queue its batch on XLA's thread pool and block a thread of that same pool until it finishes;
when every pool thread does this at once (one program per device), nothing is left to run the
queued work and the run hangs (``marlvault.offline.actor_critic.stack_inits``).
"""

from __future__ import annotations

import re

_CALL = re.compile(r"custom_call @(lapack_\w+)\(.*?:\s*\(tensor<([0-9x]+)x\w+>")


def lapack_calls(lowered_text: str) -> list[tuple[str, str]]:
    """``(name, dims)`` of every LAPACK custom call in a lowered program's StableHLO text
    (``dims`` like ``"2x64x64"``; more than one ``x`` means a batch)."""
    return _CALL.findall(lowered_text)


def batched(calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The calls of :func:`lapack_calls` whose operand has a batch axis."""
    return [(name, dims) for name, dims in calls if dims.count("x") > 1]
