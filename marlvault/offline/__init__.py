"""Offline MARL from vaults.

- ``dataset.py``: the only reader of vaults for offline code (episode-aware windows, bootstrap
  masks, agent ids, in-memory and streaming modes).
- ``bc.py``, ``iql_cql.py``, ``qmix_cql.py``: the algorithms (``make_algorithm``, ``make_train``).
- ``train.py``: :func:`~marlvault.offline.train.train_offline`, the run loop the CLI and the demo
  call; ``evaluate.py``: online evaluation of (recurrent) offline policies.
- ``rollouts.py``: small vaults from scripted rollouts (tests, checks, benchmarks).
"""
