"""marlvault: record multi-agent RL experience into vaults and train offline MARL from them.

Three stages around one storage format::

    online (JAX envs, Anakin IPPO/MAPPO) --record--> vault (tensorstore) --load--> offline
                                                                     (BC, IQL+CQL, QMIX+CQL)

plus tools over vaults (returns and plots, subsample, combine, coverage, cards) and the
``marlvault`` command. Online and offline runs share one host run skeleton (:mod:`marlvault.run`).
"""

__version__ = "0.1.0"
