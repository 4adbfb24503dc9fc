"""Statistics of ohgw_bench.stats against small cases computed by hand (the hand computation is
in the comment next to each expected value)."""
import math

import numpy as np
import pandas as pd
import pytest

from ohgw_bench.analysis import stats
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


# ---------------------------------------------------------------- censored T@τ: one arm
# Freireich et al. (1963) remission times in weeks, the textbook worked example of Kaplan–Meier and
# log-rank (Gehan 1965; Klein & Moeschberger §1.2). "+" = censored.
MP6 = [6, 6, 6, 7, 10, 13, 16, 22, 23] + [6, 9, 10, 11, 17, 19, 20, 25, 32, 32, 34, 35]
MP6_C = [False] * 9 + [True] * 12
PLACEBO = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]


def test_km_median_with_censoring_by_hand():
    # 6-MP, n = 21. At risk / events: t=6: 21 at risk, 3 events -> S = 18/21 = 0.857 (the censored 6
    # leaves after the events); t=7: 17, 1 -> 0.807; t=10: 15, 1 -> 0.753; t=13: 12, 1 -> 0.690;
    # t=16: 11, 1 -> 0.628; t=22: 7, 1 -> 0.538; t=23: 6, 1 -> 0.448 <= 0.5: median 23 weeks
    # (the published value). Placebo (no censoring): the 11th of 21 ordered times, 8 weeks.
    k = stats.km_summary(MP6, MP6_C)
    assert k.median == 23 and k.n == 21 and k.n_censored == 12
    assert k.q25 == 13    # S(10) = 0.753 > 0.75, S(13) = 0.690 <= 0.75
    assert math.isinf(k.q75)   # S never falls to 0.25: not reached
    # 95 % log-log band, Greenwood variance V = Σ d/(n(n−d)), S^exp(±1.96·sqrt(V)/|log S|):
    # t=10: V = 3/(21·18) + 1/(17·16) + 1/(15·14) = 0.01638, S = 0.7528 -> lower band S^2.419 = 0.503;
    # t=13: V = 0.02395, S = 0.6902 -> lower band S^2.266 = 0.432 <= 0.5: the CI starts at 13 weeks.
    # The upper band never falls to 0.5: the CI is open above (R's survfit says the same: NA).
    assert k.ci_low == 13 and math.isinf(k.ci_high)
    assert stats.km_summary(PLACEBO, [False] * 21).median == 8


def test_km_median_not_reached_when_half_censored():
    # 2 events of 4 at 30 s, two censored at 100 s: S(30) = 0.5 -> median 30 s; three censored -> inf.
    assert stats.km_summary([30, 30, 100, 100], [False, False, True, True]).median == 30
    assert math.isinf(stats.km_summary([30, 100, 100, 100], [False, True, True, True]).median)


def test_km_batch_equals_scipy_on_random_censored_samples():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(3, 40))
        t = np.round(rng.exponential(50, n) / 5) * 5          # ties, as in ASHA's clumped results
        budget = rng.choice([60.0, 100.0, 120.0], n)          # unequal budgets
        c = t > budget
        t = np.minimum(t, budget)
        ref = stats.km_summary(t, c)
        for q, want in ((0.5, ref.median), (0.25, ref.q25), (0.75, ref.q75)):
            got = float(stats.km_quantile_batch(t, c, q))
            assert got == want or (math.isinf(got) and math.isinf(want)), (t, c, q)


# ---------------------------------------------------------------- censored T@τ: two arms
def test_logrank_worked_example():
    # Published log-rank chi-square for 6-MP vs placebo: 16.79 on 1 df (p = 4.2e-5).
    stat, p = stats.logrank(PLACEBO, [False] * 21, MP6, MP6_C)
    assert stat ** 2 == pytest.approx(16.79, abs=0.01) and p == pytest.approx(4.17e-5, rel=0.02)


def test_sign_test_by_hand():
    # pairs (base, var): (50, 40) var first; (50, 60) base first; (100c, 70) var first (base never
    # reached within its 100 s); (100c, 100c) tie; (30, 30) tie; (80, 100c) base first; (90, 20) var.
    base_t, base_c = [50, 50, 100, 100, 30, 80, 90], [0, 0, 1, 1, 0, 0, 0]
    var_t, var_c = [40, 60, 70, 100, 30, 100, 20], [0, 0, 0, 1, 0, 1, 0]
    r = stats.paired_sign_test(base_t, np.array(base_c, bool), var_t, np.array(var_c, bool))
    # 3 wins, 2 losses: binomial two-sided p = P(X <= 2 or X >= 3 | n = 5) = 1.
    assert (r.n_var_first, r.n_base_first, r.n_ties) == (3, 2, 2) and r.p == pytest.approx(1.0)
    # a variant replicate censored at 60 s cannot lose to a baseline that finished at 80 s
    r = stats.paired_sign_test([80], np.array([False]), [60], np.array([True]), var_budget=[60])
    assert (r.n_var_first, r.n_base_first, r.n_ties) == (0, 0, 1)


def test_permutation_test_is_exact_and_never_claims_more_than_the_pairs_show():
    # 5 pairs, every one halved: the reduction is 0.5. Of the 2^5 = 32 within-pair swaps, the observed
    # |log ratio| = log 2 is matched by the identity and the all-swapped one; every other swap mixes
    # halves and wholes in both arms and gives a smaller ratio: none above, 2 ties -> mid-p = 1/32.
    base = [100.0, 110, 120, 130, 140]
    r = stats.paired_median_reduction(base, [False] * 5, [b / 2 for b in base], [False] * 5, n_boot=2000)
    assert r.estimate == pytest.approx(0.5) and r.p == pytest.approx(1 / 32)
    assert r.ci_low == pytest.approx(0.5) and r.ci_high == pytest.approx(0.5)   # pairs resampled together


def test_paired_reduction_undecidable_when_median_not_reached():
    r = stats.paired_median_reduction([30, 100, 100, 100], [False, True, True, True], [20, 30, 40, 50],
                                      [False] * 4, n_boot=100)
    assert math.isnan(r.estimate) and "baseline: 3 of 4 replicates never reach τ" in r.undecidable


def test_paired_reduction_deterministic_and_ci_brackets_estimate():
    rng = np.random.default_rng(1)
    base = rng.uniform(50, 150, 40)
    var = base * rng.uniform(0.6, 1.2, 40)
    c0 = np.zeros(40, bool)
    a = stats.paired_median_reduction(base, c0, var, c0, n_boot=500, seed=3)
    assert a == stats.paired_median_reduction(base, c0, var, c0, n_boot=500, seed=3)
    assert a != stats.paired_median_reduction(base, c0, var, c0, n_boot=500, seed=4)
    assert a.ci_low <= a.estimate <= a.ci_high


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


BASE_T = [100.0 + 10 * i for i in range(30)]   # 100 ... 390, mean 245; KM median = 15th value = 240


def _crit(vd, name):
    return vd[(vd["variant"] == "ohgw") & (vd["criterion"] == name)].iloc[0]


def test_verdict_reduction_exactly_15_percent_passes():
    # var = 0.85 * base: KM medians 204 / 240 -> 0.15 (the boundary passes); 30 pairs with the same
    # ratio make random within-pair swaps rarely reach |log ratio| = log(1/0.85): p < 0.05.
    vd = stats.verdict(_metrics(BASE_T, [0.85 * t for t in BASE_T]), "baseline")
    c = _crit(vd, "t_tau_reduction")
    assert c["value"] == pytest.approx(0.15) and c["p"] < 0.05 and c["decision"] == "pass"


def test_verdict_reduction_just_below_15_percent_fails():
    vd = stats.verdict(_metrics(BASE_T, [0.8501 * t for t in BASE_T]), "baseline")
    assert _crit(vd, "t_tau_reduction")["decision"] == "fail"


def test_verdict_reduction_needs_significance():
    # 4 pairs all halved: reduction 0.5, but of 2^4 = 16 swaps two tie with it: mid-p = 1/16 = 0.0625.
    vd = stats.verdict(_metrics(BASE_T[:4], [t / 2 for t in BASE_T[:4]]), "baseline")
    c = _crit(vd, "t_tau_reduction")
    assert c["value"] == pytest.approx(0.5) and c["p"] == pytest.approx(0.0625) and c["decision"] == "fail"


def test_verdict_reduction_undecidable_when_variant_median_not_reached():
    cens = [1] * 16 + [0] * 14
    vd = stats.verdict(_metrics(BASE_T, [500] * 16 + [50] * 14, censored_var=cens), "baseline")
    c = _crit(vd, "t_tau_reduction")
    assert c["decision"] == "undecidable" and not c["pass"] and "16 of 30" in c["note"]
    assert _crit(vd, "overall")["decision"] in ("undecidable", "fail")


@pytest.mark.parametrize("var_acc, ok", [(0.898, True), (0.8979, False), (0.95, True)])
def test_verdict_test_acc_drop_boundary(var_acc, ok):
    # Drop = 0.900 − var: 0.002 (= 0.2 pp, passes), 0.0021 (fails), −0.05 (a gain, passes).
    vd = stats.verdict(_metrics(BASE_T, BASE_T, base_acc=0.9, var_acc=var_acc), "baseline")
    c = _crit(vd, "test_acc_drop")
    assert c["value"] == pytest.approx(0.9 - var_acc) and bool(c["pass"]) is ok


@pytest.mark.parametrize("share, decision", [(0.05, "pass"), (0.0501, "fail"), (float("nan"), "undecidable")])
def test_verdict_overhead_boundary(share, decision):
    vd = stats.verdict(_metrics(BASE_T, BASE_T, overhead=share), "baseline")
    assert _crit(vd, "overhead_share")["decision"] == decision


@pytest.mark.parametrize("factor, ok", [(1.10, True), (1.11, False), (0.5, True)])
def test_verdict_std_ratio_boundary(factor, ok):
    # var = mean + factor * (base − mean) scales the seed std by exactly `factor` (30 uncensored pairs).
    var = [245 + factor * (t - 245) for t in BASE_T]
    c = _crit(stats.verdict(_metrics(BASE_T, var), "baseline"), "t_tau_std_ratio")
    assert c["value"] == pytest.approx(factor) and bool(c["pass"]) is ok


def test_verdict_std_ratio_uses_only_pairs_that_both_reached_tau():
    # 21 variant seeds censored at 400 s: counted at the budget they would distort the variant's std;
    # restricted to the 9 pairs that both finished, the std ratio is exactly 1 -- and 9 < 10 such
    # pairs makes the criterion undecidable.
    var = list(BASE_T[:9]) + [400.0] * 21
    vd = stats.verdict(_metrics(BASE_T, var, censored_var=[0] * 9 + [1] * 21), "baseline")
    c = _crit(vd, "t_tau_std_ratio")
    assert c["value"] == pytest.approx(1.0) and c["decision"] == "undecidable" and "only 9" in c["note"]


def test_verdict_overall_needs_all_four():
    good = stats.verdict(_metrics(BASE_T, [0.8 * t for t in BASE_T]), "baseline")
    assert _crit(good, "overall")["decision"] == "pass" and _crit(good, "overall")["value"] == 4
    bad = stats.verdict(_metrics(BASE_T, [0.8 * t for t in BASE_T], var_acc=0.89), "baseline")
    assert _crit(bad, "overall")["decision"] == "fail" and _crit(bad, "overall")["value"] == 3


def test_verdict_reports_censored_counts():
    vd = stats.verdict(_metrics(BASE_T, [500, 500] + BASE_T[2:], censored_var=[1, 1] + [0] * 28), "baseline")
    assert (vd["n_censored_var"] == 2).all() and (vd["n_censored_base"] == 0).all() and (vd["n"] == 30).all()


def test_compare_uses_only_paired_seeds():
    m = _metrics(BASE_T, BASE_T)
    m = m[~((m["variant"] == "ohgw") & (m["seed"] == 5))]   # the variant lacks seed 5
    m = m[m["seed"] < 6]
    c = stats.compare_to_baseline(m, "baseline", n_boot=100)
    # seeds 0..4 paired: KM median of 100..140 (no censoring) is the 3rd value
    assert c.iloc[0]["n"] == 5 and c.iloc[0]["t_tau_median_base"] == 120.0


def test_parse_spec():
    assert stats.parse_spec("hypergradient:eta=0.001,steps=3,rule=raw") == (
        "hypergradient", {"eta": "0.001", "steps": "3", "rule": "raw"})
    assert stats.parse_spec("none") == ("none", {})


# ---------------------------------------------------------------- calibration (fast version of docs/statistics.md)
def test_verdict_test_holds_its_level_and_ci_covers_on_synthetic_censored_data():
    from ohgw_bench.analysis.stat_calibration import SyntheticLaw, run_study
    # 300 null experiments of 32 pairs, 25 % of the baseline censored: binomial sd of a 5 % rate is
    # 1.3 points, so a calibrated test lands in [1.5 %, 9 %] (±2.7 sd); the CI covers the truth (0).
    null = run_study(32, 300, 0.0, law=SyntheticLaw(), n_boot=300, seed=5)
    assert 0.015 <= null["rejection_rate"] <= 0.09, null
    assert 0.9 <= null["coverage"] <= 1.0 and null["mean_censored_share_base"] == pytest.approx(0.25, abs=0.02)
    # a large true effect is detected far more often than the level, and the CI still covers it
    eff = run_study(32, 150, 0.4, law=SyntheticLaw(), n_boot=300, seed=6)
    assert eff["true_reduction"] == pytest.approx(0.4)
    assert eff["rejection_rate"] >= 0.5 and eff["coverage"] >= 0.88, eff


def _arms(rng, n, factor, budget=1e9):
    base = rng.exponential(100.0, n)
    var = base * factor * rng.lognormal(0.0, 0.1, n)
    return base, base > budget, var, var > budget


def test_reduction_difference_finds_a_changed_effect_and_not_an_unchanged_one():
    rng = np.random.default_rng(0)
    clean, same, halved = _arms(rng, 300, 0.5), _arms(rng, 300, 0.5), _arms(rng, 300, 1.0)
    # the same effect on both tasks: difference near 0, CI covers it
    est, lo, hi = stats.reduction_difference(clean, same, n_boot=2000)
    r1 = stats.paired_median_reduction(*clean, n_boot=0).estimate
    r2 = stats.paired_median_reduction(*same, n_boot=0).estimate
    assert est == pytest.approx(r2 - r1) and lo < 0 < hi and hi - lo < 0.1
    # the effect gone on the second task (reduction 0.5 -> 0): CI excludes 0 and brackets -0.5
    est, lo, hi = stats.reduction_difference(clean, halved, n_boot=2000)
    assert lo < -0.5 < hi and hi < 0 and est == pytest.approx(-0.5, abs=0.05)


def test_reduction_difference_is_nan_when_a_median_is_not_reached():
    rng = np.random.default_rng(1)
    clean = _arms(rng, 50, 0.5)
    censored = _arms(rng, 50, 0.5, budget=1.0)   # nearly everything censored at 1 s
    assert all(math.isnan(x) for x in stats.reduction_difference(clean, censored, n_boot=200))
    assert all(math.isnan(x) for x in stats.reduction_difference(clean, ([], [], [], []), n_boot=200))
