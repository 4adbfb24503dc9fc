"""verify end to end: a surrogate checked against 'real' replicates that it generated itself must
agree with itself (band share high, same ranking); plus the band statistic by hand."""
import json

import numpy as np
import pytest
import yaml

from ohgw_bench.config import SweepConfig
from ohgw_bench.sweep import run_sweep
from ohgw_bench.verify import band_share, run_verify


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
    res = run_verify(str(synthetic_surrogate_dir), [str(d)], out=str(tmp_path / "v"), sim_seeds=30, progress=False)
    assert (tmp_path / "v" / "verify.md").exists()
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
