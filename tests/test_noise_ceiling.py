"""The rerun noise ceiling and the seed-noise-vs-ψ test on synthetic repeated-seed curves whose noise is known."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ohgw_bench.surrogate.noise_ceiling import (ceiling_table, noise_ceiling, rerun_predictions, repeated_matrix,
                                                seed_noise_dependence, summarize)
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.surrogate.model import logit, sigmoid, to_unit_array

EPOCHS = 9
RUNGS = [1, 3, 9]


def curves_from(acc: np.ndarray, step: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
    """curves.parquet-shaped rows from acc (configs, seeds, epochs); ψ random except for the effective
    step log10 lr/(1-μ) = ``step`` (momentum fixed at 0.9, so log10 lr = step - 1)."""
    rng = np.random.default_rng(seed)
    n, k, E = acc.shape
    psi = {"log10_lr": rng.uniform(-2.5, -0.5, n), "log10_wd": rng.uniform(-5, -3, n), "momentum": np.full(n, 0.9),
           "ra_magnitude": rng.uniform(0, 30, n), "label_smoothing": rng.uniform(0, 0.3, n)}
    if step is not None:
        psi["log10_lr"] = step - 1.0
    c, s, e = np.meshgrid(np.arange(n), np.arange(k), np.arange(1, E + 1), indexing="ij")
    df = pd.DataFrame({"config_id": c.ravel(), "seed": s.ravel(), "epoch": e.ravel(), "val_acc": acc.ravel()})
    for key in PSI_KEYS:
        df[f"psi_{key}"] = psi[key][df["config_id"].to_numpy()]
    return df


def mean_curves(n: int, rng) -> np.ndarray:
    """(n, EPOCHS) increasing accuracy curves, config-specific levels around 0.5."""
    level = rng.normal(0.5, 0.08, n)
    shape = 1.0 - 0.5 * np.exp(-np.arange(1, EPOCHS + 1) / 3.0)
    return level[:, None] * shape[None, :]


def test_noise_free_reruns_predict_perfectly():
    rng = np.random.default_rng(1)
    mu = mean_curves(25, rng)
    curves = curves_from(np.repeat(mu[:, None, :], 3, axis=1))
    nc = noise_ceiling(curves, None, RUNGS, EPOCHS)
    assert nc["n_repeated_configs"] == 25 and nc["n_runs"] == 75
    for pred in ("one_rerun", "mean_of_other_seeds"):
        for r in RUNGS:
            f = nc["figures"]["all"][pred][r]
            assert f["spearman"] == pytest.approx(1.0) and f["r2"] == pytest.approx(1.0)
            assert f["coverage_90"] == 1.0


def test_r2_of_a_rerun_matches_its_theoretical_value():
    # y = μ_c + ε, Var μ = τ², Var ε = σ²: a rerun's error has variance 2σ², the mean of m other seeds'
    # (1 + 1/m)σ², and the runs' total variance is τ² + σ²
    rng = np.random.default_rng(2)
    n, k, tau, sigma = 400, 3, 0.08, 0.04
    mu = rng.normal(0.5, tau, n)
    acc = mu[:, None, None] + sigma * rng.standard_normal((n, k, EPOCHS))
    nc = noise_ceiling(curves_from(acc), None, [EPOCHS], EPOCHS)
    f = nc["figures"]["all"]
    total = tau ** 2 + sigma ** 2
    assert f["one_rerun"][EPOCHS]["r2"] == pytest.approx(1 - 2 * sigma ** 2 / total, abs=0.04)
    assert f["mean_of_other_seeds"][EPOCHS]["r2"] == pytest.approx(1 - 1.5 * sigma ** 2 / total, abs=0.04)
    assert f["one_rerun"][EPOCHS]["n"] == n * k * (k - 1)
    assert f["mean_of_other_seeds"][EPOCHS]["n"] == n * k


def test_rerun_intervals_cover_90_percent_of_gaussian_logit_noise():
    rng = np.random.default_rng(3)
    n, k = 300, 3
    mu = logit(mean_curves(n, rng))
    acc = sigmoid(mu[:, None, :] + 0.2 * rng.standard_normal((n, k, EPOCHS)))
    nc = noise_ceiling(curves_from(acc), None, RUNGS, EPOCHS)
    for pred in ("one_rerun", "mean_of_other_seeds"):
        for r in RUNGS:
            assert 0.87 <= nc["figures"]["all"][pred][r]["coverage_90"] <= 0.93


class _KnowsTheMean:
    """Stands in for a fitted surrogate: exact mean logit curves, no model uncertainty, the true seed noise."""

    def __init__(self, unit_lr: np.ndarray, mu: np.ndarray, sigma: float):
        self.unit_lr, self.mu, self.epochs = unit_lr, mu, EPOCHS
        self.noise_std = np.full(EPOCHS, sigma)
        self.noise_corr = np.eye(EPOCHS)

    def predictive_logit(self, U):
        mu = self.mu[np.abs(U[:, :1] - self.unit_lr[None, :]).argmin(1)]  # configs differ in lr
        return mu, np.zeros_like(mu)


def _noisy_runs(n: int, k: int, sigma: float, seed: int):
    """(mean logit curves, curves of k seeds with Gaussian logit noise sigma, the configs' unit lr)."""
    rng = np.random.default_rng(seed)
    mu = logit(mean_curves(n, rng))
    curves = curves_from(sigmoid(mu[:, None, :] + sigma * rng.standard_normal((n, k, EPOCHS))))
    unit_lr = to_unit_array(curves.groupby("config_id")[[f"psi_{k_}" for k_ in PSI_KEYS]].first())[:, 0]
    return mu, curves, unit_lr


def test_a_surrogate_that_knows_the_mean_beats_a_rerun():
    sigma = 0.2
    mu, curves, unit_lr = _noisy_runs(200, 3, sigma, seed=4)
    fake = _KnowsTheMean(unit_lr, mu, sigma)
    nc = noise_ceiling(curves, [(fake, curves, None)], RUNGS, EPOCHS, n_mc=400, n_boot=50)
    for r in RUNGS:
        f = nc["figures"]["all"]
        assert f["surrogate"][r]["r2"] > f["mean_of_other_seeds"][r]["r2"] > f["one_rerun"][r]["r2"]
        assert 0.85 <= f["surrogate"][r]["coverage_90"] <= 0.95
        lo, hi = f["surrogate_minus_one_rerun"][r]["r2"]
        assert lo > 0
    assert nc["figures"]["top_quartile"]["surrogate"][EPOCHS]["n_configs"] == 50


def test_ceiling_table_reads_the_same_after_a_json_round_trip():
    rng = np.random.default_rng(5)
    acc = mean_curves(12, rng)[:, None, :] + 0.02 * rng.standard_normal((12, 3, EPOCHS))
    nc = noise_ceiling(curves_from(acc), None, RUNGS, EPOCHS)
    table = ceiling_table(nc)
    assert table == ceiling_table(json.loads(json.dumps(nc)))
    assert sum(line.startswith("| all |") for line in table) == len(RUNGS)
    assert f"{nc['figures']['all']['one_rerun'][3]['spearman']:.3f} / " in "".join(table)


def test_single_seed_configurations_are_left_out():
    rng = np.random.default_rng(6)
    acc = mean_curves(6, rng)[:, None, :] + 0.02 * rng.standard_normal((6, 3, EPOCHS))
    curves = curves_from(acc)
    curves = curves[~((curves["config_id"] < 2) & (curves["seed"] > 0))]
    piv = repeated_matrix(curves, EPOCHS)
    assert sorted(piv.index.get_level_values("config_id").unique()) == [2, 3, 4, 5]
    preds = rerun_predictions(piv, [EPOCHS])
    assert summarize(preds, {"all": [2, 3, 4, 5]})["all"]["one_rerun"][EPOCHS]["n"] == 4 * 6


def test_rungs_outside_the_budget_are_refused():
    rng = np.random.default_rng(7)
    curves = curves_from(mean_curves(4, rng)[:, None, :].repeat(2, axis=1))
    with pytest.raises(ValueError, match=r"rungs \[27\] lie outside epochs 1..9"):
        noise_ceiling(curves, None, [1, 27], EPOCHS)


def _hetero_curves(slope: float, seed: int, n: int = 60, k: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    step = rng.uniform(-2.5, 1.0, n)
    sd = np.exp(np.log(0.1) + slope * (step - step.mean()))  # logit-scale seed std
    mu = logit(mean_curves(n, rng))
    return curves_from(sigmoid(mu[:, None, :] + sd[:, None, None] * rng.standard_normal((n, k, EPOCHS))), step, seed)


def test_heteroscedasticity_test_detects_a_planted_dependence_on_the_effective_step():
    dep = seed_noise_dependence(_hetero_curves(-0.6, seed=8), RUNGS, EPOCHS)
    assert dep["n_configs"] == 60
    for r in RUNGS:
        v = dep["per_rung"][r]
        assert v["lrt_eff_step"]["p_holm"] < 1e-3
        assert v["spearman_vs_eff_step"]["rho"] < 0 and v["spearman_vs_eff_step"]["p"] < 0.01
        assert v["std_ratio_p90_vs_p10"] < 1 / 1.5
    assert dep["decision"].startswith("use a heteroscedastic") and dep["rungs_with_dependence"] == RUNGS


def test_heteroscedasticity_test_keeps_a_constant_noise_model():
    dep = seed_noise_dependence(_hetero_curves(0.0, seed=9), RUNGS, EPOCHS)
    for r in RUNGS:
        assert dep["per_rung"][r]["lrt_eff_step"]["p_holm"] > 0.05
    assert dep["decision"] == "keep the constant seed-noise model" and dep["rungs_with_dependence"] == []


def test_fit_writes_the_ceiling_and_the_noise_test(tmp_path):
    from conftest import synthetic_collection

    from ohgw_bench.cli.main import main
    from ohgw_bench.surrogate.model import Surrogate
    # a 3-epoch task (rungs 1 and 3) keeps the cross-validated fits quick
    curves, hgs = synthetic_collection(n_configs=20, n_rep=8, epochs=3, n_hg=20, seed=1)
    curves.to_parquet(tmp_path / "curves.parquet")
    hgs.to_parquet(tmp_path / "hypergrads.parquet")
    assert main(["fit", str(tmp_path), "--task", "cifar10-smoke", "--folds", "2", "--rank", "2"]) == 0
    fid = json.loads((tmp_path / "fidelity.json").read_text())
    nc = fid["noise_ceiling"]
    assert nc["rungs"] == [1, 3] and nc["n_repeated_configs"] == 8
    assert set(nc["figures"]["all"]) >= {"one_rerun", "mean_of_other_seeds", "surrogate", "surrogate_minus_one_rerun"}
    assert fid["seed_noise_vs_psi"]["n_configs"] == 8 and fid["seed_noise_vs_psi"]["decision"]
    md = (tmp_path / "fidelity.md").read_text()
    assert "## Surrogate vs a rerun" in md and "## Does seed noise depend on ψ?" in md
    assert Surrogate.load(tmp_path).meta["fidelity_heldout"]["noise_ceiling"]["n_runs"] == 24


def test_promoted_check_compares_like_with_like_on_the_targeted_subsets():
    from ohgw_bench.surrogate.noise_ceiling import promoted_check, promoted_table
    n, sigma = 120, 0.2
    mu, curves, unit_lr = _noisy_runs(n, 3, sigma, seed=11)
    rng = np.random.default_rng(12)
    subsets = {"promoted": list(range(60)), "promoted-9": list(range(30))}
    good = noise_ceiling(curves, [(_KnowsTheMean(unit_lr, mu, sigma), curves, None)], RUNGS, EPOCHS, n_mc=300,
                         n_boot=20, subsets=subsets)
    chk = promoted_check(good)
    assert [chk["per_rung"][r]["subset"] for r in RUNGS] == ["all", "promoted", "promoted-9"]
    assert [chk["per_rung"][r]["n_configs"] for r in RUNGS] == [120, 60, 30]
    assert chk["meets"] is True and all(v["gap"] > 0 for v in chk["per_rung"].values())
    # a surrogate whose means are shuffled across configurations ranks no better than chance
    bad = noise_ceiling(curves, [(_KnowsTheMean(unit_lr, mu[rng.permutation(n)], sigma), curves, None)], RUNGS,
                        EPOCHS, n_mc=300, n_boot=20, subsets=subsets)
    assert promoted_check(bad)["meets"] is False
    table = "\n".join(promoted_table(promoted_check(json.loads(json.dumps(bad)))))
    assert "| 9 | promoted-9 | 30 | 90 |" in table and "Per-rung target met: **False**" in table
    # without repeated seeds of promoted configurations the target cannot be decided
    none = promoted_check(noise_ceiling(curves, None, RUNGS, EPOCHS))
    assert none["meets"] is None and "not decidable" in promoted_table(none)[0]
