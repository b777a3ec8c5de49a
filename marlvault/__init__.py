"""marlvault: record multi-agent RL experience into vaults and train offline MARL from them.

Three stages around one storage format::

    online (JAX envs, Anakin IPPO/MAPPO) --record--> vault (tensorstore) --load--> offline
    (OG-MARL's baselines: BC, IQL/QMIX+CQL/BCQ, MAICQ; continuous IDDPG+BC/CQL, MADDPG+CQL, OMAR)

plus tools over vaults (returns and plots, subsample, combine, coverage, cards, exports) and
dataset suites (``marlvault dataset build``). The recording
schema is :mod:`marlvault.schema`; the vault API :mod:`marlvault.vault`; the host run skeleton
online and offline runs share :mod:`marlvault.run`; the command line :mod:`marlvault.cli`. See
``docs/`` for the format, recording, tools and offline.
"""

__version__ = "0.1.0"
