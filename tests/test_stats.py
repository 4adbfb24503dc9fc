"""Statistics of ohgw_bench.stats against small cases computed by hand (the hand computation is
in the comment next to each expected value)."""
import math

import numpy as np
import pandas as pd
import pytest

from ohgw_bench import stats
from ohgw_bench.space import PSI_KEYS


def _rows(t, v):
    return pd.DataFrame({"elapsed_s": t, "val_acc": v})


# ---------------------------------------------------------------- T@τ
def test_time_to_target_first_crossing_of_best_so_far():
    # Results arrive out of order; sorted: 10 s 0.5, 20 s 0.7, 30 s 0.6, 40 s 0.9.
    # Best-so-far reaches 0.65 first at 20 s.
    df = _rows([30, 10, 40, 20], [0.6, 0.5, 0.9, 0.7])
    assert stats.time_to_target(df, 0.65, budget=100) == (20.0, False)


def test_time_to_target_counts_equality_as_reached():
    # val_acc >= τ: 0.7 at 20 s reaches τ = 0.7.
    assert stats.time_to_target(_rows([10, 20], [0.5, 0.7]), 0.7, budget=100) == (20.0, False)


def test_time_to_target_never_reached_is_censored_at_budget():
    # Best is 0.9 < 0.95: the replicate stays in the data at the budget (100 s), flagged censored.
    assert stats.time_to_target(_rows([10, 20, 40], [0.5, 0.7, 0.9]), 0.95, budget=100) == (100.0, True)


def test_time_to_target_ignores_results_after_budget():
    # 0.9 arrives at 40 s, after the 35 s budget: censored at 35 s.
    assert stats.time_to_target(_rows([10, 40], [0.5, 0.9]), 0.85, budget=35) == (35.0, True)


# ---------------------------------------------------------------- AUC
def test_normalized_auc_of_step_function():
    # 0 on [0,10), 0.5 on [10,60) (0.4 at 30 s does not lower the best), 0.8 on [60,100]:
    # (0*10 + 0.5*50 + 0.8*40) / 100 = (25 + 32) / 100 = 0.57
    df = _rows([10, 30, 60], [0.5, 0.4, 0.8])
    assert stats.normalized_auc(df, budget=100) == pytest.approx(0.57)


def test_normalized_auc_drops_results_after_budget():
    # Budget 50: 0.5 on [10,50) only -> 0.5*40/50 = 0.4; the 0.8 at 60 s is outside.
    assert stats.normalized_auc(_rows([10, 60], [0.5, 0.8]), budget=50) == pytest.approx(0.4)


def test_best_so_far_on_grid_is_nan_before_first_result():
    # Grid 0, 15, 35: nothing yet; 0.5 (10 s); max(0.5, 0.4 at 30 s) = 0.5.
    out = stats.best_so_far_on_grid(_rows([10, 30], [0.5, 0.4]), np.array([0, 15, 35]))
    assert np.isnan(out[0]) and out[1:].tolist() == [0.5, 0.5]


# ---------------------------------------------------------------- τ
def _finals_frame(finals: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for v, fs in finals.items():
        for seed, f in enumerate(fs):
            rows += [{"variant": v, "seed": seed, "trial_id": 0, "val_acc": f - 0.1},
                     {"variant": v, "seed": seed, "trial_id": 1, "val_acc": f}]
    return pd.DataFrame(rows)


def test_auto_tau_is_median_of_baseline_final_best():
    # Baseline finals 0.80, 0.82, 0.84, 0.86: median = (0.82 + 0.84) / 2 = 0.83. Other variants ignored.
    df = _finals_frame({"baseline": [0.80, 0.82, 0.84, 0.86], "ohgw": [0.99] * 4})
    assert stats.auto_tau(df, "baseline", 0.5) == pytest.approx(0.83)


def test_auto_tau_other_quantile_interpolates_linearly():
    # 0.25-quantile of 4 sorted values: position 0.25*3 = 0.75 -> 0.80 + 0.75*0.02 = 0.815
    df = _finals_frame({"baseline": [0.86, 0.80, 0.84, 0.82]})
    assert stats.auto_tau(df, "baseline", 0.25) == pytest.approx(0.815)


def test_auto_tau_missing_baseline_names_variants():
    with pytest.raises(ValueError, match="'baseline'.*ohgw"):
        stats.auto_tau(_finals_frame({"ohgw": [0.8]}), "baseline", 0.5)


# ---------------------------------------------------------------- distributions
def test_median_iqr_drops_nan():
    # Finite values 1,2,3,4,100: median 3, 25th pct 2, 75th pct 4 (linear), n = 5.
    assert tuple(stats.median_iqr([1, 2, np.nan, 3, 4, 100])) == (3.0, 2.0, 4.0, 5)


def test_median_iqr_empty():
    m = stats.median_iqr([np.nan])
    assert m.n == 0 and math.isnan(m.median)


def test_mean_shift():
    # |0.5-0| + |0.5-1| + |2-2| = 1, over 3 pairs -> 1/3; the NaN pair is dropped.
    assert stats.mean_shift([0, 1, 2, np.nan], [0.5, 0.5, 2, 1]) == pytest.approx(1 / 3)


def test_kl_divergence_by_hand():
    # Bins [0,0.5), [0.5,1]: P = (2/4, 2/4), Q = (3/4, 1/4);
    # KL = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = 0.5(-0.405465) + 0.5(0.693147) = 0.143841
    kl = stats.kl_divergence_1d([0.1, 0.1, 0.9, 0.9], [0.1, 0.1, 0.1, 0.9], bins=np.array([0, 0.5, 1]), eps=0)
    assert kl == pytest.approx(0.143841, abs=1e-6)


def test_kl_divergence_identical_is_zero_and_disjoint_is_finite():
    assert stats.kl_divergence_1d([1, 2, 3], [1, 2, 3], bins=5) == pytest.approx(0.0)
    # Disjoint supports: infinite without smoothing, finite (and large) with eps.
    kl = stats.kl_divergence_1d([0, 0.1], [0.9, 1.0], bins=2)
    assert math.isfinite(kl) and kl > 5


# ---------------------------------------------------------------- Wilcoxon
def test_wilcoxon_all_positive_exact():
    # 6 distinct positive differences: W = R- = 0; only 1 of 2^6 sign patterns has R- <= 0,
    # two-sided p = 2/64 = 0.03125.
    r = stats.paired_wilcoxon([1, 2, 3, 4, 5, 6], [0] * 6)
    assert (r.statistic, r.p, r.n) == (0.0, pytest.approx(0.03125), 6)


def test_wilcoxon_ties_use_average_ranks():
    # d = 1,1,1,-2,3,4: |d| ranks 2,2,2 (average of 1..3), 4, 5, 6; R- = 4 -> W = 4.
    # Permutation null over 64 sign patterns: subsets of {2,2,2,4,5,6} with sum <= 4 are
    # {}, three {2}, three {2,2}, {4} = 8 -> p = 2 * 8/64 = 0.25.
    # (Without ties, d = 1,2,3,-4,5,6 has 7 such subsets and p = 0.21875: the ties matter.)
    r = stats.paired_wilcoxon([1, 1, 1, -2, 3, 4], [0] * 6)
    assert r.statistic == 4.0 and r.p == pytest.approx(0.25) and r.n == 6


def test_wilcoxon_zero_differences_discarded():
    # zero_method='wilcox': the two zeros are dropped, leaving d = 1,2,3,-4,5,6 -> W = 4,
    # p = 2 * 7/64 = 0.21875; n counts all 8 complete pairs.
    r = stats.paired_wilcoxon([5, 5, 6, 7, 8, 1, 10, 11], [5, 5, 5, 5, 5, 5, 5, 5])
    assert r.statistic == 4.0 and r.p == pytest.approx(0.21875) and r.n == 8


def test_wilcoxon_all_zero_differences_p_is_one():
    assert tuple(stats.paired_wilcoxon([3, 4, 5], [3, 4, 5])) == (0.0, 1.0, 3)


def test_wilcoxon_drops_incomplete_pairs():
    r = stats.paired_wilcoxon([1, 2, 3, 4, 5, 6, np.nan], [0, 0, 0, 0, 0, 0, 1])
    assert r.n == 6 and r.p == pytest.approx(0.03125)


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_is_deterministic_given_seed():
    rng = np.random.default_rng(1)
    base, var = rng.uniform(50, 150, 12), rng.uniform(40, 140, 12)
    a = stats.bootstrap_median_reduction(base, var, n_boot=2000, seed=3)
    b = stats.bootstrap_median_reduction(base, var, n_boot=2000, seed=3)
    c = stats.bootstrap_median_reduction(base, var, n_boot=2000, seed=4)
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low <= a.estimate <= a.ci_high


def test_bootstrap_resamples_pairs_together():
    # var = 0.8 * base seed by seed: every paired resample has median(var) = 0.8 median(base), so
    # the estimate 1 - 160/200 = 0.2 and a degenerate CI [0.2, 0.2]. (Resampling the two sides
    # independently would give a wide CI.)
    r = stats.bootstrap_median_reduction([100, 200, 300], [80, 160, 240], n_boot=500, seed=0)
    assert r.estimate == pytest.approx(0.2)
    assert r.ci_low == pytest.approx(0.2) and r.ci_high == pytest.approx(0.2) and r.n == 3


# ---------------------------------------------------------------- per replicate
def _replicate_results(tau_trial1=0.75):
    """Two trials of one replicate, with the hand-computed metrics in the tests below."""
    nan = float("nan")
    rows = [  # trial 0: epochs 1-2 at 10 s, 20 s; trial 1: epoch 1 at 15 s
        dict(trial_id=0, epoch=1, elapsed_s=10.0, val_acc=0.5, test_acc=nan, x=-2.0, xp=-2.1),
        dict(trial_id=0, epoch=2, elapsed_s=20.0, val_acc=0.7, test_acc=0.68, x=-2.0, xp=-2.1),
        dict(trial_id=1, epoch=1, elapsed_s=15.0, val_acc=tau_trial1, test_acc=0.74, x=-1.0, xp=-1.3),
    ]
    df = pd.DataFrame(rows)
    df["task"], df["scheduler"], df["variant"], df["seed"] = "t", "asha", "ohgw", 0
    df["epoch_time"], df["ws_cost_s"], df["ws_flops"], df["warm_start"] = 10.0, 1.0, nan, "hypergradient:eta=0.001"
    for k in PSI_KEYS:
        df[f"x_{k}"] = df["x"] if k == "log10_lr" else 0.0
        df[f"xp_{k}"] = df["xp"] if k == "log10_lr" else 0.0
        df[f"hg_{k}"] = 2.0
    return df.drop(columns=["x", "xp"])


def _reps(budget=40.0):
    return pd.DataFrame([dict(variant="ohgw", scheduler="asha", seed=0, n_trials=2, budget_s=budget,
                              n_workers=2, flops_total=float("nan"))])


def test_per_replicate_metrics_by_hand():
    m = stats.per_replicate_metrics(_replicate_results(), _reps(), tau=0.72).iloc[0]
    # τ = 0.72 first reached by trial 1 (0.75) at 15 s; GPU-h = 15 s * 2 workers / 3600.
    assert (m.t_tau_s, bool(m.censored)) == (15.0, False)
    assert m.t_tau_gpu_h == pytest.approx(15 * 2 / 3600)
    # Incumbent: trial 1 (best val 0.75); its test acc at its last evaluated epoch is 0.74.
    assert (m.incumbent_trial, m.final_test_acc) == (1, 0.74)
    # Time-sorted best-so-far: 0.5 on [10,15), 0.75 on [15,40] -> (0.5*5 + 0.75*25)/40 = 21.25/40
    assert m.auc == pytest.approx(0.53125)
    # Warm start 1 s per trial, 2 trials; epochs 3 * 10 s, which already contain the warm starts
    # (epoch 1 of each trial) -> 2 / 30.
    assert m.ws_overhead_share == pytest.approx(2 / 30)
    # |−2.1 − (−2)| = 0.1 and |−1.3 − (−1)| = 0.3 -> mean shift 0.2; other keys unmoved.
    assert m.shift_log10_lr == pytest.approx(0.2) and m.shift_momentum == 0.0
    assert m.n_trials == 2 and m.n_results == 3 and m.budget_s == 40.0
    assert math.isnan(m.flops_overhead_share)


def test_per_replicate_metrics_censored_stays_at_budget():
    m = stats.per_replicate_metrics(_replicate_results(), _reps(), tau=0.9).iloc[0]
    # Best val 0.75 < 0.9: T@τ = budget 40 s, censored; GPU-h 40 * 2 / 3600.
    assert (m.t_tau_s, bool(m.censored)) == (40.0, True)
    assert m.t_tau_gpu_h == pytest.approx(40 * 2 / 3600)


def test_per_replicate_metrics_budget_fallbacks():
    # No replicates table: default_budget if given, else the replicate's last elapsed_s (20 s).
    m = stats.per_replicate_metrics(_replicate_results(), None, tau=0.9).iloc[0]
    assert m.t_tau_s == 20.0 and m.n_workers == 1
    m = stats.per_replicate_metrics(_replicate_results(), None, tau=0.9, default_budget=60.0).iloc[0]
    assert m.t_tau_s == 60.0


def test_incumbent_tie_goes_to_first_to_reach_it():
    # Trials 0 and 1 both peak at 0.7; trial 1 got there at 15 s, trial 0 at 20 s -> incumbent 1.
    m = stats.per_replicate_metrics(_replicate_results(tau_trial1=0.7), _reps(), tau=0.5).iloc[0]
    assert m.incumbent_trial == 1 and m.final_test_acc == 0.74


# ---------------------------------------------------------------- verdict
def _metrics(base_t, var_t, base_acc=0.9, var_acc=0.9, overhead=0.01, censored_var=None):
    n = len(base_t)
    rows = []
    for v, ts, acc, ov in (("baseline", base_t, base_acc, 0.0), ("ohgw", var_t, var_acc, overhead)):
        for s in range(n):
            rows.append(dict(task="t", scheduler="asha", variant=v, seed=s, t_tau_s=float(ts[s]),
                             censored=bool(censored_var[s]) if (v == "ohgw" and censored_var) else False,
                             final_test_acc=acc, ws_overhead_share=ov))
    return pd.DataFrame(rows)


BASE_T = [100.0, 110.0, 120.0, 130.0, 140.0, 150.0]   # median 125


def _crit(vd, name):
    return vd[(vd["variant"] == "ohgw") & (vd["criterion"] == name)].iloc[0]


def test_verdict_reduction_exactly_15_percent_passes():
    # var = 0.85 * base: 1 − 106.25/125 = 0.15 (boundary passes); 6 improvements -> p = 2/64.
    vd = stats.verdict(_metrics(BASE_T, [0.85 * t for t in BASE_T]), "baseline")
    c = _crit(vd, "t_tau_reduction")
    assert c["value"] == pytest.approx(0.15) and c["p"] == pytest.approx(0.03125) and bool(c["pass"])


def test_verdict_reduction_just_below_15_percent_fails():
    vd = stats.verdict(_metrics(BASE_T, [0.8501 * t for t in BASE_T]), "baseline")
    assert not _crit(vd, "t_tau_reduction")["pass"]


def test_verdict_reduction_needs_significance():
    # 5 pairs all halved: reduction 0.5, but the smallest two-sided p with n = 5 is 2/32 = 0.0625.
    vd = stats.verdict(_metrics(BASE_T[:5], [t / 2 for t in BASE_T[:5]]), "baseline")
    c = _crit(vd, "t_tau_reduction")
    assert c["value"] == pytest.approx(0.5) and c["p"] == pytest.approx(0.0625) and not c["pass"]


@pytest.mark.parametrize("var_acc, ok", [(0.898, True), (0.8979, False), (0.95, True)])
def test_verdict_test_acc_drop_boundary(var_acc, ok):
    # Drop = 0.900 − var: 0.002 (= 0.2 pp, passes), 0.0021 (fails), −0.05 (a gain, passes).
    vd = stats.verdict(_metrics(BASE_T, BASE_T, base_acc=0.9, var_acc=var_acc), "baseline")
    c = _crit(vd, "test_acc_drop")
    assert c["value"] == pytest.approx(0.9 - var_acc) and bool(c["pass"]) is ok


@pytest.mark.parametrize("share, ok", [(0.05, True), (0.0501, False), (float("nan"), False)])
def test_verdict_overhead_boundary(share, ok):
    vd = stats.verdict(_metrics(BASE_T, BASE_T, overhead=share), "baseline")
    assert bool(_crit(vd, "overhead_share")["pass"]) is ok


@pytest.mark.parametrize("factor, ok", [(1.10, True), (1.11, False), (0.5, True)])
def test_verdict_std_ratio_boundary(factor, ok):
    # var = mean + factor * (base − mean) scales the seed std by exactly `factor`.
    var = [125 + factor * (t - 125) for t in BASE_T]
    c = _crit(stats.verdict(_metrics(BASE_T, var), "baseline"), "t_tau_std_ratio")
    assert c["value"] == pytest.approx(factor) and bool(c["pass"]) is ok


def test_verdict_overall_needs_all_four():
    good = stats.verdict(_metrics(BASE_T, [0.8 * t for t in BASE_T]), "baseline")
    assert bool(_crit(good, "overall")["pass"]) and _crit(good, "overall")["value"] == 4
    bad = stats.verdict(_metrics(BASE_T, [0.8 * t for t in BASE_T], var_acc=0.89), "baseline")
    assert not _crit(bad, "overall")["pass"] and _crit(bad, "overall")["value"] == 3


def test_verdict_reports_censored_counts():
    # Two variant seeds never reached τ: they stay at their (budget) values and are counted.
    vd = stats.verdict(_metrics(BASE_T, [200, 200, 100, 100, 100, 100],
                                censored_var=[1, 1, 0, 0, 0, 0]), "baseline")
    assert (vd["n_censored_var"] == 2).all() and (vd["n_censored_base"] == 0).all() and (vd["n"] == 6).all()


def test_compare_uses_only_paired_seeds():
    m = _metrics(BASE_T, BASE_T)
    m = m[~((m["variant"] == "ohgw") & (m["seed"] == 5))]   # the variant lacks seed 5
    c = stats.compare_to_baseline(m, "baseline", n_boot=100)
    assert c.iloc[0]["n"] == 5 and c.iloc[0]["t_tau_median_base"] == 120.0   # median of 100..140


def test_parse_spec():
    assert stats.parse_spec("hypergradient:eta=0.001,steps=3,rule=raw") == (
        "hypergradient", {"eta": "0.001", "steps": "3", "rule": "raw"})
    assert stats.parse_spec("none") == ("none", {})
