import json
import shutil

import numpy as np
import pytest

from ohgw_bench import space
from ohgw_bench.surrogate.model import Surrogate, SurrogateError
from ohgw_bench.sweeps.backends.simulated import SurrogateOracle
from ohgw_bench.warmstart.spec import WarmStart


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


@pytest.mark.parametrize("edit", ["startup_s", "meta"])
def test_edited_json_is_refused(synthetic_surrogate_dir, tmp_path, edit):
    """surrogate.json's scalars and meta (the config-level figures verify reports) are covered by the
    artifact's checksum, not only the npz."""
    d = tmp_path / "s"
    shutil.copytree(synthetic_surrogate_dir, d)
    js = json.loads((d / "surrogate.json").read_text())
    if edit == "startup_s":
        js["startup_s"] += 1.0
    else:
        js["meta"]["fidelity_heldout"] = {"final_val_spearman": 0.99}
    (d / "surrogate.json").write_text(json.dumps(js, indent=1))
    with pytest.raises(SurrogateError, match="does not match its content_sha256"):
        Surrogate.load(d)


def test_checksum_identifies_the_artifact_and_older_artifacts_still_load(synthetic_surrogate_dir, tmp_path):
    d = tmp_path / "s"
    shutil.copytree(synthetic_surrogate_dir, d)
    sur = Surrogate.load(d)
    assert sur.content_checked and len(sur.checksum) == 64
    js = json.loads((d / "surrogate.json").read_text())
    (d / "surrogate.json").write_text(json.dumps(js))  # other whitespace: the same artifact
    assert Surrogate.load(d).checksum == sur.checksum
    sur.startup_s += 1.0
    sur.save(d)
    assert Surrogate.load(d).checksum != js["content_sha256"]
    del js["content_sha256"]  # written before surrogate.json was covered: loads, marked unchecked
    (d / "surrogate.json").write_text(json.dumps(js))
    old = Surrogate.load(d)
    assert not old.content_checked and len(old.checksum) == 64


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
    r3 = sur.sample_run(psi, np.random.default_rng(4))
    assert not np.array_equal(r1["val_acc"], r3["val_acc"])  # another stream: another seed's noise


def test_same_warmstart_object_with_surrogate_oracle(sur):
    ws = WarmStart.parse("hypergradient:eta=1e-3,steps=1,rule=raw")
    r = ws.apply(space.center(), SurrogateOracle(sur, np.random.default_rng(0)), np.random.default_rng(0))
    assert r.psi_after != r.psi_before and r.cost_seconds == pytest.approx(sur.hg_batch_seconds)
    assert all(np.isfinite(v) for v in r.hypergrad.values())


def test_fit_on_synthetic_data_recovers_ranking(synthetic_surrogate_dir):
    # the synthetic law has a clear optimum in lr: held-out fidelity must see it
    import pandas as pd

    from ohgw_bench.surrogate.fidelity import config_fidelity, heldout_split
    from ohgw_bench.surrogate.fit import fit_surrogate
    curves = pd.read_parquet(synthetic_surrogate_dir / "curves.parquet")
    hgs = pd.read_parquet(synthetic_surrogate_dir / "hypergrads.parquet")
    train, held = heldout_split(curves, 0.25, seed=1)
    s = fit_surrogate(curves, hgs, "cifar10-mini", 27, config_ids=train)
    fid = config_fidelity(s, curves[curves.config_id.isin(held)], hgs)
    assert fid["final_val_spearman"] > 0.6 and fid["hypergrad_cosine_median"] > 0.9


def test_gp_closed_form_loo_equals_refits_without_each_point():
    """GP.loo (used for the misfit variance) against brute force: refit on n-1 points with the same
    kernel hyperparameters and predict the left-out one; with known per-point noise too."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    from ohgw_bench.surrogate.model import GP
    rng = np.random.default_rng(0)
    X = rng.random((25, 3))
    y = np.sin(4 * X[:, 0]) + X[:, 1] + rng.normal(0, 0.1, 25)
    obs_var = rng.uniform(0.001, 0.02, 25)
    g = GP.fit(X, y[:, None], seed=0, restarts=0, obs_var=obs_var)
    resid, var = g.loo(obs_var)
    ys = float(np.std(y))
    kern = ConstantKernel(g.amp, "fixed") * RBF(g.ls, "fixed") + WhiteKernel(g.noise, "fixed")
    for i in (0, 7, 24):
        keep = np.arange(25) != i
        m = GaussianProcessRegressor(kern, alpha=obs_var[keep] / ys ** 2 + 1e-10, normalize_y=False, optimizer=None)
        # same normalisation as the full fit (GP.fit normalises with the full data's mean and std)
        m.fit(X[keep], (y[keep] - g.y_mean[0]) / ys)
        mu, sd = m.predict(X[i:i + 1], return_std=True)
        assert resid[i, 0] == pytest.approx(y[i] - (mu[0] * ys + g.y_mean[0]), rel=1e-6, abs=1e-8)
        latent = sd[0] ** 2 - g.noise  # sklearn's std includes the white-noise kernel
        assert var[i, 0] == pytest.approx(latent * ys ** 2, rel=1e-5, abs=1e-10)


def test_predictive_intervals_cover_held_out_configurations(synthetic_surrogate_dir):
    """90 % predictive intervals of the final mean logit curve (GP variance + misfit + the seed noise of
    a run) cover most held-out runs: the misfit variance is not too small. (Recovery of a known misfit:
    test_surrogate_parts.py.)"""
    import pandas as pd

    from ohgw_bench.surrogate.fidelity import heldout_split
    from ohgw_bench.surrogate.fit import fit_surrogate
    from ohgw_bench.surrogate.model import logit, to_unit_array
    curves = pd.read_parquet(synthetic_surrogate_dir / "curves.parquet")
    hgs = pd.read_parquet(synthetic_surrogate_dir / "hypergrads.parquet")
    train, held = heldout_split(curves, 0.25, seed=2)
    s = fit_surrogate(curves, hgs, "cifar10-mini", 27, config_ids=train)
    last = curves[curves.config_id.isin(held) & (curves.epoch == 27)]
    mu, sd = s.predictive_logit(to_unit_array(last))
    z = (logit(last["val_acc"].to_numpy()) - mu[:, -1]) / np.sqrt(sd[:, -1] ** 2 + s.noise_std[-1] ** 2)
    assert np.mean(np.abs(z) <= 1.645) >= 0.75 and len(z) >= 10


def test_saved_artifact_loads_when_meta_has_integer_keys(synthetic_surrogate_dir, tmp_path):
    """fit stores per-rung figures keyed by epoch (ints); JSON turns them into strings that sort
    differently, and the checksum must be the one of the file as written."""
    sur = Surrogate.load(synthetic_surrogate_dir)
    sur.meta = dict(sur.meta, rung_spearman={1: 0.8, 3: 0.9, 9: 0.95, 27: 0.97})
    sur.save(tmp_path / "s")
    assert Surrogate.load(tmp_path / "s").checksum == sur.checksum


def test_runner_epoch_time_scale_is_measured_and_applied(synthetic_surrogate_dir):
    """Another runner's epochs, 0.6x the model's on the same configurations, give a scale of 0.6, and
    for_runner shifts the log time model by exactly that."""
    import pandas as pd

    from ohgw_bench.space import PSI_KEYS, from_unit
    sur = Surrogate.load(synthetic_surrogate_dir)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        u = rng.random(5)
        psi = from_unit(u)
        for e in (1, 2, 3):
            t = 0.6 * float(np.exp(sur.epoch_log_time(u[None])[0] + 0.05 * rng.standard_normal()))
            rows.append({**{f"psi_{k}": psi[k] for k in PSI_KEYS}, "epoch": e, "epoch_time": t})
    scale = sur.epoch_time_scale(pd.DataFrame(rows))
    assert scale == pytest.approx(0.6, rel=0.02)
    sur.meta = dict(sur.meta, startup_s_by_runner={"local": 9.0, "persistent": 0.02},
                    epoch_time_scale_by_runner={"local": 1.0, "persistent": scale})
    fast = sur.for_runner("persistent")
    U = rng.random((4, 5))
    np.testing.assert_allclose(fast.epoch_log_time(U) - sur.epoch_log_time(U), np.log(scale))
    assert fast.startup_s == 0.02 and sur.for_runner("local").startup_s == 9.0


def test_runner_warm_start_batch_cost_is_applied_where_calibrated(synthetic_surrogate_dir, tmp_path):
    sur = Surrogate.load(synthetic_surrogate_dir)
    collected = sur.hg_batch_seconds
    sur.meta = dict(sur.meta, startup_s_by_runner={"local": 9.0, "persistent": 0.02},
                    hg_batch_seconds_by_runner={"persistent": collected / 2})
    assert sur.for_runner("persistent").hg_batch_seconds == pytest.approx(collected / 2)
    assert sur.for_runner("local").hg_batch_seconds == collected   # no local calibration: the collection's
    # simulations depend on it: a store simulated with another calibration is not reused
    sur.save(tmp_path / "a")
    before = Surrogate.load(tmp_path / "a").model_checksum
    sur.meta["hg_batch_seconds_by_runner"] = {"persistent": collected / 3}
    sur.save(tmp_path / "b")
    assert Surrogate.load(tmp_path / "b").model_checksum != before
