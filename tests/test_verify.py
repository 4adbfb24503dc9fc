"""verify end to end: a surrogate checked against 'real' replicates that it generated itself must
agree with itself (band share high, same ranking); plus the band statistic by hand."""
import json

import numpy as np
import pytest
import yaml

from ohgw_bench.config import SweepConfig
from ohgw_bench.sweep import run_sweep
import pandas as pd

from ohgw_bench.verify import band_share, ranking_consistency, run_verify


def test_band_share_by_hand():
    rng = np.random.default_rng(0)
    sim = np.tile(np.linspace(0, 1, 5), (50, 1)) + rng.normal(0, 0.01, (50, 5))
    inside = np.tile(np.linspace(0, 1, 5), (3, 1))
    outside = inside + 0.5
    assert band_share(inside, sim, rng)["band_share"] == 1.0
    assert band_share(outside, sim, rng)["band_share"] == 0.0


def test_verify_surrogate_against_itself(synthetic_surrogate_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    cfg = SweepConfig(name="self", task="cifar10-mini", backend="surrogate", surrogate=str(synthetic_surrogate_dir),
                      schedulers=["asha"], variants={"baseline": "none",
                                                     "ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw"},
                      seeds="0:4", n_workers=2, budget_s=90, out=str(tmp_path / "fake-real"))
    d = run_sweep(cfg, progress=False)
    c = yaml.safe_load((d / "config.yaml").read_text())
    c["backend"] = "real"  # pretend: the point is that identical generators must agree
    (d / "config.yaml").write_text(yaml.safe_dump(c))
    res = run_verify(str(synthetic_surrogate_dir), [str(d)], out=str(tmp_path / "v"), sim_seeds=30, progress=False,
                     min_real=4)
    assert (tmp_path / "v" / "verify.md").exists()
    assert set(res["hpo_level"]["checked_variants"]) == {"asha/baseline", "asha/ohgw-1step"}
    assert res["checks"]["hpo/asha/baseline/n_real>=4"] is True and "hpo/asha/baseline/band" in res["checks"]
    assert "hpo/pasha/baseline/n_real>=4" not in res["checks"]  # pasha did not run
    (pair,) = res["hpo_level"]["ranking_consistency"]["pairs"]
    assert pair["paired"] and pair["a"] == "baseline" and pair["b"] == "ohgw-1step"
    # too few real replicates: reported, but no band check and the required-n check fails
    res10 = run_verify(str(synthetic_surrogate_dir), [str(d)], out=str(tmp_path / "v10"), sim_seeds=30,
                       progress=False, min_real=10)
    assert res10["checks"]["hpo/asha/baseline/n_real>=10"] is False and res10["pass"] is False
    assert not any(k.endswith("/band") for k in res10["checks"])
    assert res10["hpo_level"]["ranking_consistency"]["agrees"] is None
    js = json.loads((tmp_path / "v" / "verify.json").read_text())
    for v in js["hpo_level"]["per_variant"].values():
        assert v["band_share"] >= 0.7 and v["n_real"] == 4 and v["n_sim"] == 30
    assert "config_level" in res and res["shift"]["n_results"] > 0


def test_verify_refuses_surrogate_store_as_real(synthetic_surrogate_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    cfg = SweepConfig(name="s", task="cifar10-mini", backend="surrogate", surrogate=str(synthetic_surrogate_dir),
                      seeds="0:1", budget_s=60, out=str(tmp_path / "s"))
    d = run_sweep(cfg, progress=False)
    with pytest.raises(ValueError, match="verify needs real replicates"):
        run_verify(str(synthetic_surrogate_dir), [str(d)], out=str(tmp_path / "v"), sim_seeds=5, progress=False)


def _metrics(vals: dict, seeds=None) -> pd.DataFrame:
    rows = []
    for v, xs in vals.items():
        for i, x in enumerate(xs):
            rows.append({"scheduler": "asha", "variant": v, "seed": (seeds or range(len(xs)))[i], "t_tau_s": float(x)})
    return pd.DataFrame(rows)


def test_ranking_consistency_resolved_and_unresolved():
    rng = np.random.default_rng(1)
    keys = ["asha/a", "asha/b"]
    # real: a clearly faster than b (resolved) -> the surrogate must give the same sign
    real = _metrics({"a": 50 + rng.normal(0, 1, 12), "b": 80 + rng.normal(0, 1, 12)})
    same = _metrics({"a": 60 + rng.normal(0, 1, 200), "b": 70 + rng.normal(0, 1, 200)})
    flipped = _metrics({"a": 70 + rng.normal(0, 1, 200), "b": 60 + rng.normal(0, 1, 200)})
    r = ranking_consistency(real, same, keys)
    assert r["pairs"][0]["resolved_by_real"] and r["pairs"][0]["paired"] and r["agrees"] is True
    assert ranking_consistency(real, flipped, keys)["agrees"] is False
    # real: no resolved difference -> the surrogate's difference must lie inside the real CI
    noisy = _metrics({"a": 60 + rng.normal(0, 10, 12), "b": 60 + rng.normal(0, 10, 12)})
    r2 = ranking_consistency(noisy, same, keys)
    lo, hi = r2["pairs"][0]["ci95_real"]
    assert not r2["pairs"][0]["resolved_by_real"] and lo < -1 and hi > 1
    assert r2["agrees"] is (lo <= r2["pairs"][0]["diff_sim_s"] <= hi)
    far = _metrics({"a": 0 + rng.normal(0, 1, 200), "b": 100 + rng.normal(0, 1, 200)})
    assert ranking_consistency(noisy, far, keys)["agrees"] is False
    # different seed sets -> unpaired bootstrap
    unp = _metrics({"a": [50, 51, 52], "b": [80, 81, 82]}, seeds=None)
    unp.loc[unp.variant == "b", "seed"] += 10
    assert ranking_consistency(unp, same, keys)["pairs"][0]["paired"] is False
