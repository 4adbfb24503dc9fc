import json
import shutil

import numpy as np
import pytest

from ohgw_bench import space
from ohgw_bench.surrogate import Surrogate, SurrogateError
from ohgw_bench.simulate import SurrogateOracle
from ohgw_bench.warmstart import WarmStart


@pytest.fixture(scope="module")
def sur(synthetic_surrogate_dir):
    return Surrogate.load(synthetic_surrogate_dir)


def test_roundtrip_predictions_identical(sur, synthetic_surrogate_dir, tmp_path):
    sur.save(tmp_path)
    again = Surrogate.load(tmp_path)
    U = np.random.default_rng(0).random((7, 5))
    assert np.array_equal(sur.mean_logit_curve(U), again.mean_logit_curve(U))
    assert (tmp_path / "surrogate.npz").read_bytes() == (synthetic_surrogate_dir / "surrogate.npz").read_bytes()


def test_corrupt_artifact_is_refused(synthetic_surrogate_dir, tmp_path):
    d = tmp_path / "s"
    shutil.copytree(synthetic_surrogate_dir, d)
    b = bytearray((d / "surrogate.npz").read_bytes())
    b[100] ^= 0xFF
    (d / "surrogate.npz").write_bytes(bytes(b))
    with pytest.raises(SurrogateError, match="checksum"):
        Surrogate.load(d)


def test_schema_mismatch_is_refused(synthetic_surrogate_dir, tmp_path):
    d = tmp_path / "s"
    shutil.copytree(synthetic_surrogate_dir, d)
    meta = json.loads((d / "surrogate.json").read_text())
    meta["schema_version"] = 999
    (d / "surrogate.json").write_text(json.dumps(meta))
    with pytest.raises(SurrogateError, match="schema_version=999"):
        Surrogate.load(d)


def test_missing_artifact_names_the_fix(tmp_path):
    with pytest.raises(SurrogateError, match="ohgw-bench fit"):
        Surrogate.load(tmp_path)


def test_curve_is_smooth_in_psi(sur):
    # a warm start moves ψ by ~1e-4: the mean curve must move, by a tiny amount (not piecewise constant)
    psi = {"log10_lr": -1.2, "log10_wd": -4.0, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}
    u = space.to_unit(psi)[None]
    du = np.zeros_like(u)
    du[0, 0] = 1e-5
    a, b = sur.mean_logit_curve(u), sur.mean_logit_curve(u + du)
    diff = np.abs(a - b).max()
    assert 0 < diff < 1e-2


def test_sample_run_common_random_numbers(sur):
    psi = space.center()
    r1 = sur.sample_run(psi, np.random.default_rng(3))
    r2 = sur.sample_run(psi, np.random.default_rng(3))
    assert np.array_equal(r1["val_acc"], r2["val_acc"]) and np.array_equal(r1["epoch_time"], r2["epoch_time"])
    assert r1["val_acc"].shape == (sur.epochs,) and (r1["epoch_time"] > 0).all()


def test_same_warmstart_object_with_surrogate_oracle(sur):
    ws = WarmStart.parse("hypergradient:eta=1e-3,steps=1,rule=raw")
    r = ws.apply(space.center(), SurrogateOracle(sur, np.random.default_rng(0)), np.random.default_rng(0))
    assert r.psi_after != r.psi_before and r.cost_seconds == pytest.approx(sur.hg_batch_seconds)
    assert all(np.isfinite(v) for v in r.hypergrad.values())


def test_fit_on_synthetic_data_recovers_ranking(synthetic_surrogate_dir):
    # the synthetic law has a clear optimum in lr: held-out fidelity must see it
    import pandas as pd

    from ohgw_bench.fidelity import config_fidelity, heldout_split
    from ohgw_bench.surrogate import fit_surrogate
    curves = pd.read_parquet(synthetic_surrogate_dir / "curves.parquet")
    hgs = pd.read_parquet(synthetic_surrogate_dir / "hypergrads.parquet")
    train, held = heldout_split(curves, 0.25, seed=1)
    s = fit_surrogate(curves, hgs, "cifar10-mini", 27, config_ids=train)
    fid = config_fidelity(s, curves[curves.config_id.isin(held)], hgs)
    assert fid["final_val_spearman"] > 0.6 and fid["hypergrad_cosine_median"] > 0.9
