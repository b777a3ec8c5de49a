"""Recording experience into vaults: :class:`Recorder` (any jitted loop), training runs
(``record.path=...``) and policy rollouts (``marlvault record``)."""

from marlvault.record.recorder import Recorder, RecordStats

__all__ = ["RecordStats", "Recorder"]
