"""The Recorder itself: the documented example, back-pressure without loss, writer errors."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from marlvault.errors import RecorderError
from marlvault.record import Recorder
from marlvault.vault import Vault

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "record_custom_loop.py"


def _batch(i: int, rows: int = 3, t: int = 5) -> dict:
    base = np.arange(rows * t, dtype=np.float32).reshape(rows, t) + 100 * i
    return {"obs": base[..., None].repeat(2, -1), "rewards": base, "terminals": base * 0}


def test_documented_example_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("record_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    steps = module.main(str(tmp_path / "ex.vlt"))
    assert steps == module.STEPS_PER_CALL * module.CALLS


def test_back_pressure_blocks_and_loses_nothing(tmp_path):
    def slow(item):
        time.sleep(0.2)
        return item

    rec = Recorder.create(str(tmp_path / "bp.vlt"), _batch(0), to_batch=slow, queue_size=1)
    for i in range(5):
        rec.add(_batch(i))
    stats = rec.close()
    assert stats.wait_s > 0.2  # the producer had to wait for the slow writer
    with Vault.open(str(tmp_path / "bp.vlt")) as v:
        got = v.read()
    want = np.concatenate([_batch(i)["rewards"] for i in range(5)], axis=1)
    np.testing.assert_array_equal(got["rewards"], want)


def test_writer_error_surfaces_with_committed_count(tmp_path):
    rec = Recorder.create(str(tmp_path / "err.vlt"), _batch(0), queue_size=2)
    rec.add(_batch(0))
    bad = _batch(1)
    bad["obs"] = bad["obs"][..., :1]  # wrong trailing shape
    rec.add(bad)
    with pytest.raises(RecorderError, match="err.vlt"):
        for i in range(50):
            rec.add(_batch(i))
            time.sleep(0.01)
        rec.close()
    with pytest.raises(RecorderError):
        rec.close()
    with Vault.open(str(tmp_path / "err.vlt")) as v:  # the good batch is intact
        np.testing.assert_array_equal(v.read()["rewards"], _batch(0)["rewards"])
