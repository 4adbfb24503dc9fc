"""Heteroscedastic seed noise (``fit.fit_noise_scale``, ``Surrogate.noise_scale``): where the repeated
seeds' spread depends on lr/(1−μ), the fitted surrogate's simulated runs spread as the data do."""
import numpy as np
import pandas as pd

from ohgw_bench import space
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.surrogate.fit import effective_step, fit_surrogate
from ohgw_bench.surrogate.model import Surrogate, logit

EPOCHS = 27


def _sd_at(x):  # true seed std of logit accuracy: 0.30 at the smallest effective step, 0.05 at the largest
    return np.exp(np.interp(x, [-3.0, 1.5], [np.log(0.30), np.log(0.05)]))


def _step_law(u, psi):
    """Final accuracy from the learning rate's unit coordinate; seed std from the effective step."""
    x = effective_step(pd.DataFrame({f"psi_{k}": [psi[k]] for k in PSI_KEYS}))[0]
    return 0.3 + 0.2 * u[0], _sd_at(x)


def _collection(n_configs=40, n_seeds=4, seed=0, law=_step_law):
    rng = np.random.default_rng(seed)
    rows, hrows = [], []
    for i, u in enumerate(rng.random((n_configs, 5))):
        psi = space.from_unit(u)
        final, sd = law(u, psi)
        for s in range(n_seeds):
            off = rng.normal(0, sd)
            for e in range(1, EPOCHS + 1):
                z = np.log(final / (1 - final)) * (1 - np.exp(-e / 6)) + off * e / EPOCHS + rng.normal(0, 0.01)
                acc = 1 / (1 + np.exp(-z))
                rows.append({"config_id": i, "seed": s, **{f"psi_{k}": psi[k] for k in PSI_KEYS}, "epoch": e,
                             "val_acc": acc, "val_loss": 1.0, "train_loss": 1.0, "train_acc": acc,
                             "test_acc": acc if e in (1, 3, 9, EPOCHS) else np.nan, "test_loss": np.nan,
                             "epoch_time": 2.0, "train_time": 1.8, "cum_time": 2.0 * e, "diverged": 0})
    for j, u in enumerate(rng.random((20, 5))):
        psi = space.from_unit(u)
        for b in range(3):
            hrows.append({"hg_config_id": j, "batch": b, **{f"psi_{k}": psi[k] for k in PSI_KEYS},
                          **{f"hg_{k}": rng.normal(0, 0.1) for k in PSI_KEYS}, "seconds": 0.3})
    return pd.DataFrame(rows), pd.DataFrame(hrows)


def _final_logit_std(sur, u, n=600):
    psi = space.from_unit(u)
    draws = [logit(np.array(sur.sample_run(psi, np.random.default_rng(i))["val_acc"][-1])) for i in range(n)]
    return float(np.std(draws))


def test_simulated_seed_spread_follows_the_effective_step(tmp_path):
    curves, hgs = _collection()
    sur = fit_surrogate(curves, hgs, "cifar10-mini", EPOCHS, heteroscedastic_noise=True)
    const = fit_surrogate(curves, hgs, "cifar10-mini", EPOCHS)
    lo = np.array([0.05, 0.5, 0.05, 0.5, 0.5])    # small lr, small momentum: small effective step
    hi = np.array([0.95, 0.5, 0.95, 0.5, 0.5])    # large lr and momentum
    x_lo, x_hi = (effective_step(pd.DataFrame({f"psi_{k}": [space.from_unit(u)[k]] for k in PSI_KEYS}))[0]
                  for u in (lo, hi))
    s_lo, s_hi = _final_logit_std(sur, lo), _final_logit_std(sur, hi)
    # the fitted model reproduces the data's spread at both ends (clipped to the repeated configs' range)
    assert s_lo > 2.5 * s_hi, (s_lo, s_hi)
    ref = sur.noise_scale_ref
    for s, x in ((s_lo, x_lo), (s_hi, x_hi)):
        assert abs(np.log(s / _sd_at(np.clip(x, ref[2], ref[3])))) < np.log(1.5), (s, x)
    # the constant model gives both the same spread
    c_lo, c_hi = _final_logit_std(const, lo), _final_logit_std(const, hi)
    assert abs(np.log(c_lo / c_hi)) < np.log(1.2)
    assert const.noise_scale_coef is None
    # the artifact keeps it
    sur.save(tmp_path / "s")
    back = Surrogate.load(tmp_path / "s")
    np.testing.assert_array_equal(back.noise_scale_coef, sur.noise_scale_coef)
    assert _final_logit_std(back, lo, n=50) == _final_logit_std(sur, lo, n=50)


def _level_law(u, psi):
    """Seed noise that shrinks with the accuracy a configuration reaches (and not with lr/(1−μ)): the
    level follows the augmentation magnitude; the final logit seed std is 0.30 at the lowest level and
    0.06 at the highest."""
    final = 0.25 + 0.4 * u[3]
    return final, float(np.interp(final, [0.25, 0.65], [0.30, 0.06]))


def test_seed_noise_that_follows_the_accuracy_level_is_modelled_on_the_level(tmp_path):
    import json

    import pytest

    from ohgw_bench.surrogate.model import SurrogateError
    from ohgw_bench.surrogate.noise_ceiling import seed_noise_dependence
    curves, hgs = _collection(seed=1, law=_level_law)
    dep = seed_noise_dependence(curves, [1, 3, 9, EPOCHS], EPOCHS)
    assert dep["covariate"] == "level" and EPOCHS in dep["rungs_with_dependence"]
    assert dep["lrt_sum"]["level"] > dep["lrt_sum"]["eff_step"]
    sur = fit_surrogate(curves, hgs, "cifar10-mini", EPOCHS, heteroscedastic_noise="level")
    assert sur.noise_scale_covariate == "level" and sur.noise_scale_ref.shape == (EPOCHS, 4)
    low = np.array([0.5, 0.5, 0.5, 0.05, 0.5])    # small augmentation magnitude: low accuracy
    high = np.array([0.5, 0.5, 0.5, 0.95, 0.5])
    s_low, s_high = _final_logit_std(sur, low), _final_logit_std(sur, high)
    assert s_low > 2.5 * s_high, (s_low, s_high)
    # the artifact keeps the covariate; an unknown one is refused with the key and the value
    sur.save(tmp_path / "s")
    back = Surrogate.load(tmp_path / "s")
    assert back.noise_scale_covariate == "level"
    assert _final_logit_std(back, low, n=50) == _final_logit_std(sur, low, n=50)
    js = json.loads((tmp_path / "s" / "surrogate.json").read_text())
    js["noise_scale_covariate"] = "moon"
    del js["content_sha256"]
    (tmp_path / "s" / "surrogate.json").write_text(json.dumps(js))
    with pytest.raises(SurrogateError, match="noise_scale_covariate='moon'"):
        Surrogate.load(tmp_path / "s")
