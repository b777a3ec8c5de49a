"""Offline MARL from vaults.

- ``dataset.py``: the only reader of vaults for offline code (episode-aware windows, bootstrap
  masks, agent ids, in-memory and streaming modes).
- ``bc.py``, ``iql_cql.py``, ``qmix_cql.py``: the algorithms, each ending in
  ``ENTRY = AlgorithmEntry(name, Config, data_needs, make_algorithm)`` (``common.py``);
  ``value.py``: the Q-learning pieces IQL and QMIX share.
- ``train.py``: :func:`~marlvault.offline.train.train_offline`, the run loop the CLI and the demo
  call, on the shared run skeleton (:mod:`marlvault.run`); ``evaluate.py``: online evaluation of
  (recurrent) offline policies.
"""
