"""marlvault: record multi-agent RL experience into vaults and train offline MARL from them.

Three stages around one storage format::

    online (JAX envs, Anakin IPPO/MAPPO) --record--> vault (tensorstore) --load--> offline (BC,
    IQL+CQL, QMIX+CQL)

The recording schema is :mod:`marlvault.schema`; the vault API :mod:`marlvault.vault`; the
command line :mod:`marlvault.cli`. See ``docs/`` for the format, recording, tools and offline.
"""

__version__ = "0.1.0"
