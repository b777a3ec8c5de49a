"""Online training in Anakin style.

- :mod:`marlvault.online.anakin`: the device mesh and ``shard_map`` (the only module that knows
  about devices).
- :mod:`marlvault.online.ippo`: IPPO/MAPPO config, losses and the jitted learner.
- :mod:`marlvault.online.rec_ippo`: recurrent IPPO/MAPPO (GRU actor and critic, truncated BPTT)
  on IPPO's pieces.
- :mod:`marlvault.online.evaluate`: parallel evaluation of first episodes.
- :mod:`marlvault.online.run`: the host loop (logging, evaluation, checkpoints, trajectory hook).
"""
