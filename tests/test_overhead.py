"""Start-up overhead and epoch times measured from the shipped real sweep stores (pooled)."""
from pathlib import Path

import pytest

from ohgw_bench.surrogate.overhead import startup_overhead, sweep_epoch_times

REAL = Path(__file__).resolve().parents[1] / "surrogates" / "cifar10-mini" / "real-sweeps"
A, B = str(REAL / "exp1-mini-real"), str(REAL / "verify-mini-pasha-real")


@pytest.mark.skipif(not (REAL / "exp1-mini-real").exists(), reason="shipped real sweeps absent")
def test_pooled_stores_add_up():
    a, b, ab = startup_overhead(A), startup_overhead(B), startup_overhead([A, B])
    assert ab["n"] == a["n"] + b["n"] and a["n"] > 50
    assert ab["q25_s"] <= ab["median_s"] <= ab["q75_s"]
    # a real (re)start costs seconds (interpreter, imports, data), not milliseconds or minutes
    assert 2.0 < ab["median_s"] < 30.0
    assert len(sweep_epoch_times([A, B])) == len(sweep_epoch_times(A)) + len(sweep_epoch_times(B))
    assert (sweep_epoch_times(A)["epoch_time"] > 0).all()


def test_missing_store_is_refused(tmp_path):
    with pytest.raises((ValueError, FileNotFoundError)):
        startup_overhead(str(tmp_path))
