"""marlvault: record multi-agent RL experience into vaults and train offline MARL from them.

Three stages around one storage format::

    online (JAX envs, Anakin IPPO/MAPPO) --record--> vault (tensorstore) --load--> offline (BC, IQL+CQL)
"""

__version__ = "0.1.0"
