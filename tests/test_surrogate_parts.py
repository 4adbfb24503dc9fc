"""The surrogate's parts recover the laws they model from synthetic data where the truth is known:
seed noise (fit_noise), epoch time, test accuracy and divergence; and its misfit variance is as large
as a per-configuration error the GPs cannot explain."""
import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_collection
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.surrogate.fit import fit_noise, fit_surrogate
from ohgw_bench.surrogate.model import logit, sigmoid, to_unit_array


@pytest.mark.parametrize("lag_kind", ["epochs", "log_epochs"])
def test_fit_noise_recovers_offset_ar1_and_std(lag_kind):
    rng = np.random.default_rng(0)
    # on the log clock 12 epochs span ln 12 = 2.5 lags: a faster decay keeps the offset identifiable
    E, rho, phi, n_groups, k = 12, 0.3, 0.7 if lag_kind == "epochs" else 0.4, 400, 3
    sigma = np.linspace(0.3, 0.1, E)
    ep = np.arange(1, E + 1, dtype=float)
    t = ep if lag_kind == "epochs" else np.log(ep)
    lag = np.abs(np.subtract.outer(t, t))
    corr = rho + (1 - rho) * phi ** lag
    L = np.linalg.cholesky(corr)
    runs = (rng.standard_normal((n_groups * k, E)) @ L.T) * sigma + rng.normal(0, 1, (n_groups, E)).repeat(k, 0)
    groups = np.arange(n_groups).repeat(k)
    resid = runs - pd.DataFrame(runs).groupby(groups).transform("mean").to_numpy()  # about each config's mean
    std, c, info = fit_noise(resid, groups)
    assert info["lag"] == lag_kind and info["misfit_sse"][lag_kind] < min(info["misfit_sse"].values()) + 1e-12
    assert info["rho_offset"] == pytest.approx(rho, abs=0.05)
    assert info["phi_ar1"] == pytest.approx(phi, abs=0.05)
    assert std == pytest.approx(sigma, rel=0.08)  # the k/(k-1) correction: without it 18 % too small
    assert c == pytest.approx(corr, abs=0.06)


TIME_C0, TIME_C = np.log(2.0), np.array([0.3, 0.0, 0.0, -0.2, 0.0])
TIME_SIGMA, FIRST_EXTRA = 0.1, 0.25
TEST_A, TEST_B, TEST_SD = 0.2, 0.9, 0.05


@pytest.fixture(scope="module")
def known_laws():
    """A collection whose epoch times, test accuracy and divergence follow known laws."""
    rng = np.random.default_rng(1)
    curves, hgs = synthetic_collection(n_configs=24, n_rep=8, epochs=9, n_hg=20, seed=2)
    U = to_unit_array(curves)
    lt = TIME_C0 + U @ TIME_C + rng.normal(0, TIME_SIGMA, len(curves)) + FIRST_EXTRA * (curves["epoch"] == 1)
    curves["epoch_time"] = np.exp(lt)
    m = curves["test_acc"].notna()
    curves.loc[m, "test_acc"] = sigmoid(TEST_A + TEST_B * logit(curves.loc[m, "val_acc"])
                                        + rng.normal(0, TEST_SD, int(m.sum())))
    diverges = U[:, 0] > 0.75  # high learning rates diverge
    curves["diverged"] = diverges.astype(int)
    sur = fit_surrogate(curves, hgs, "cifar10-mini", 9, rank=2)
    return sur, curves


def test_epoch_time_model_recovers_the_law(known_laws):
    sur, _ = known_laws
    assert sur.time_coef[0] == pytest.approx(TIME_C0, abs=0.03)
    assert sur.time_coef[1:] == pytest.approx(TIME_C, abs=0.04)
    assert sur.time_sigma == pytest.approx(TIME_SIGMA, rel=0.1)
    assert sur.first_epoch_extra == pytest.approx(FIRST_EXTRA, abs=0.04)


def test_epoch_time_model_fits_the_given_sweep_times_instead():
    curves, hgs = synthetic_collection(n_configs=16, n_rep=6, epochs=9, n_hg=20, seed=3)
    rng = np.random.default_rng(4)
    U = rng.random((500, 5))
    from ohgw_bench import space
    td = pd.DataFrame([{f"psi_{k}": v for k, v in space.from_unit(u).items()} for u in U])
    td["epoch"] = np.tile(np.arange(1, 11), 50)
    td["epoch_time"] = np.exp(1.0 + 0.5 * U[:, 1] + rng.normal(0, 0.02, 500))
    sur = fit_surrogate(curves, hgs, "cifar10-mini", 9, rank=2, time_data=td)
    assert sur.time_coef == pytest.approx([1.0, 0, 0.5, 0, 0, 0], abs=0.02)
    assert sur.meta["time_model_source"] == "500 epochs of real sweep trials"


def test_test_accuracy_model_recovers_the_law(known_laws):
    sur, _ = known_laws
    assert sur.test_coef == pytest.approx([TEST_A, TEST_B], abs=0.03)
    assert sur.test_resid_std == pytest.approx(TEST_SD, rel=0.25)  # ~90 milestone results


def test_divergence_model_learns_where_runs_diverge(known_laws):
    sur, curves = known_laws
    lo, hi = np.full((1, 5), 0.5), np.full((1, 5), 0.5)
    lo[0, 0], hi[0, 0] = 0.2, 0.95
    runs = curves.groupby(["config_id", "seed"])["diverged"].max()
    rate = runs.mean()
    # the (L2-regularised) logistic regression puts high learning rates above the overall rate, low below
    assert sur.p_diverge(hi)[0] > 1.3 * rate and sur.p_diverge(lo)[0] < 0.5 * rate
    assert sur.meta["n_diverged_runs"] == runs.sum()


def test_divergence_without_events_is_a_small_constant_rate():
    curves, hgs = synthetic_collection(n_configs=16, n_rep=6, epochs=9, n_hg=20, seed=3)
    sur = fit_surrogate(curves, hgs, "cifar10-mini", 9, rank=2)
    n_runs = curves.groupby(["config_id", "seed"]).ngroups
    p = sur.p_diverge(np.random.default_rng(0).random((20, 5)))
    assert np.ptp(p) == 0 and 0 < p[0] < 1 / n_runs  # no diverged run: below one in n_runs, never zero


@pytest.mark.slow
def test_misfit_variance_matches_an_error_the_gps_cannot_explain():
    """Each configuration's mean curve gets an independent offset (std 0.3 in logit units), which no
    smooth function of ψ explains: the misfit std at the last epoch must come out near 0.3, and near 0
    without it."""
    rng = np.random.default_rng(5)
    curves, hgs = synthetic_collection(n_configs=40, n_rep=12, epochs=9, n_hg=20, seed=6)
    off = pd.Series(rng.normal(0, 0.3, 40))
    shifted = curves.copy()
    shifted["val_acc"] = sigmoid(logit(curves["val_acc"]) + curves["config_id"].map(off).to_numpy())
    clean = np.sqrt(fit_surrogate(curves, hgs, "cifar10-mini", 9, rank=2).misfit_var[-1])
    noisy = np.sqrt(fit_surrogate(shifted, hgs, "cifar10-mini", 9, rank=2).misfit_var[-1])
    assert clean < 0.1
    assert noisy == pytest.approx(0.3, rel=0.35)
