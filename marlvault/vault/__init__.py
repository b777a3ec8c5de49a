"""Vaults: flashbax-compatible experience storage on tensorstore (local, s3://, gs://).

Public API: :class:`Vault` (``create``/``open``/``append``/``read``/``iter_chunks``/``episodes``),
:data:`EPISODE_DTYPE`, and the flashbax-style :class:`marlvault.vault.compat.Vault`.
"""

from marlvault.vault.episodes import EPISODE_DTYPE
from marlvault.vault.vault import CODECS, Vault

__all__ = ["CODECS", "EPISODE_DTYPE", "Vault"]
