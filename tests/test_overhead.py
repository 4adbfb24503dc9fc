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


def test_warm_start_batch_cost_is_per_raw_batch_and_per_runner(tmp_path):
    import shutil

    import pandas as pd
    import yaml

    from ohgw_bench.surrogate.overhead import _raw_batches, ws_batch_by_runner, ws_batch_seconds
    assert _raw_batches("hypergradient:eta=1e-3,steps=3,rule=raw") == 3
    assert _raw_batches("hypergradient:eta=1,steps=2,rule=raw,batches=2") == 4
    assert _raw_batches("hypergradient:rule=normalized,delta=0.3") is None and _raw_batches("none") is None
    # exp1-mini-real: ohgw-1step (1 batch) and ohgw-3step (3 batches) on LocalBackend
    res = pd.read_parquet(Path(A) / "results.parquet")
    first = res[res["epoch"] == 1].groupby("variant")["ws_cost_s"].median()
    cal = ws_batch_seconds(A)
    assert cal["n"] == int(((res["epoch"] == 1) & res["variant"].isin(["ohgw-1step", "ohgw-3step"])).sum())
    assert first["ohgw-3step"] / 3 * 0.8 < cal["median_s"] < first["ohgw-1step"] * 1.2
    # a store that ran no warm start calibrates nothing; runners are kept apart
    assert ws_batch_seconds(B) is None
    p = tmp_path / "p"
    shutil.copytree(A, p)
    cfg = yaml.safe_load((p / "config.yaml").read_text())
    (p / "config.yaml").write_text(yaml.safe_dump({**cfg, "runner": "persistent"}))
    r = pd.read_parquet(p / "results.parquet")
    r["ws_cost_s"] = r["ws_cost_s"] / 2
    r.to_parquet(p / "results.parquet")
    (p / "provenance.json").unlink(missing_ok=True)
    by = ws_batch_by_runner([A, B, str(p)])
    assert set(by) == {"local", "persistent"}
    assert by["persistent"]["median_s"] == pytest.approx(by["local"]["median_s"] / 2)
