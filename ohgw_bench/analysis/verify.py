"""``ohgw-bench verify SURROGATE_DIR --real RESULTS_DIR``: is the surrogate as good as a rerun, and does
it reach the same verdict as real HPO?

- config level: fidelity on real runs the surrogate never saw (``--heldout-curves``: a separate
  collection; otherwise the fit's held-out split, refitted here on the other configurations);
- HPO level: the real replicates against ≥200 surrogate replicates of the same sweep config: share of
  time points where the real median incumbent curve lies in the surrogate's 95 % band (the band of
  the median of as many replicates as the real sweep has), KS tests of T@τ and final test accuracy,
  the simulated Kaplan–Meier median T@τ against a seed-bootstrap 95 % CI of the real one,
  agreement of the variants' ranking and of the verdict;
- shift: the design-fitted surrogate scored on the configurations the real schedulers chose.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, levene, spearmanr
from statsmodels.stats.multitest import multipletests

from ..space import PSI_KEYS
from ..store import load, merge_stores, store_record, write_json_atomic
from ..surrogate.fidelity import TARGETS, config_fidelity, fidelity_table, meets, noise_sections
from ..surrogate.model import Surrogate, predictive_samples, to_unit_array
from ..textfmt import fixed_or_na
from . import stats

BAND_TARGET = 0.90


def incumbent_curves(results: pd.DataFrame, grid: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """(scheduler, variant) -> (n_seeds, len(grid)) best-so-far val acc on the grid."""
    out = {}
    for (s, v), g in results.groupby(["scheduler", "variant"]):
        out[(s, v)] = np.stack([stats.best_so_far_on_grid(r, grid) for _, r in g.groupby("seed")])
    return out


def band_share(real: np.ndarray, sim: np.ndarray, rng: np.random.Generator, n_draws: int = 2000) -> dict:
    """Share of grid points where the real median incumbent curve lies in the 95 % band of the
    median of ``len(real)`` surrogate replicates (and, for information, the per-replicate band).
    Grid points before any replicate has a result are NaN and do not count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN grid points before the first result
        return _band_share(real, sim, rng, n_draws)


def _band_share(real, sim, rng, n_draws):
    n = real.shape[0]
    real_med = np.nanmedian(real, axis=0)
    idx = rng.integers(0, sim.shape[0], size=(n_draws, n))
    meds = np.nanmedian(sim[idx], axis=1)                      # (draws, grid)
    lo, hi = np.nanquantile(meds, [0.025, 0.975], axis=0)
    lo1, hi1 = np.nanquantile(sim, [0.025, 0.975], axis=0)
    ok = np.isfinite(real_med)
    inside = (real_med >= lo - 1e-12) & (real_med <= hi + 1e-12)
    inside1 = (real_med >= lo1 - 1e-12) & (real_med <= hi1 + 1e-12)
    return {"band_share": float(inside[ok].mean()) if ok.any() else float("nan"),
            "band_share_per_replicate": float(inside1[ok].mean()) if ok.any() else float("nan"),
            "n_real": int(n), "n_sim": int(sim.shape[0]), "real_median": real_med.tolist(),
            "band_lo": lo.tolist(), "band_hi": hi.tolist()}


def shift_fidelity(sur: Surrogate, real: pd.DataFrame, seed: int = 0) -> dict:
    """Score the surrogate on the configurations (x′) and epochs the real schedulers ran."""
    rng = np.random.default_rng(seed)
    r = real.dropna(subset=[f"xp_{k}" for k in PSI_KEYS]).copy()
    if r.empty:
        return {"n_results": 0}
    U = to_unit_array(r, prefix="xp_")
    samples = predictive_samples(sur, U, 500, rng)             # (n, rows, E)
    e = np.clip(r["epoch"].to_numpy(int), 1, sur.epochs) - 1
    s = samples[:, np.arange(len(r)), e]
    pred = s.mean(0)
    lo, hi = np.quantile(s, [0.05, 0.95], axis=0)
    obs = r["val_acc"].to_numpy()
    out = {"n_results": int(len(r)), "n_trials": int(r.groupby(["scheduler", "variant", "seed", "trial_id"]).ngroups),
           "spearman_all": float(spearmanr(obs, pred).statistic),
           "coverage_90": float(((obs >= lo) & (obs <= hi)).mean()),
           "mean_abs_error": float(np.mean(np.abs(obs - pred)))}
    per = {}
    for ep in sorted(set(r["epoch"]) & set(sur.milestones())):
        m = r["epoch"].to_numpy() == ep
        if m.sum() >= 5:
            per[int(ep)] = {"n": int(m.sum()), "spearman": float(spearmanr(obs[m], pred[m]).statistic)}
    out["per_rung"] = per
    return out


def censored_median(t, axis=None):
    """Median T@τ of replicates censored at one common budget (their t_tau_s is the budget): the
    smallest time by which half of them reached τ (``inverted_cdf``), i.e. the Kaplan–Meier median
    where it is reached and the budget where it is not (a lower bound, so rankings and differences stay
    finite). One convention for the table, the ranking and the pairwise differences."""
    return np.quantile(np.asarray(t, float), 0.5, axis=-1 if axis is None else axis, method="inverted_cdf")


def _verdicts(results, reps, cfg, tau):
    m = stats.per_replicate_metrics(results, reps, tau)
    base = (cfg.get("report") or {}).get("baseline", "baseline")
    comp = stats.compare_to_baseline(m, base, n_boot=0)
    ver = stats.verdict(m, base, comparison=comp)
    ranking = {}
    for s, g in m.groupby("scheduler"):
        med = g.groupby("variant")["t_tau_s"].agg(censored_median).sort_values(kind="stable")
        ranking[s] = med.index.tolist()
    overall = ver[ver["criterion"] == "overall"].set_index(["scheduler", "variant"])["pass"].to_dict()
    return m, ranking, {f"{k[0]}/{k[1]}": bool(v) for k, v in overall.items()}


REQUIRED = ("asha/baseline", "asha/ohgw-1step", "pasha/baseline")

# per replicate: what a gap in T@τ between real and simulated sweeps can come from
CLOCK_FIGURES = {"trials": "trials started", "epochs": "epochs trained", "epoch_time_s": "median epoch time (s)",
                 "t_first_top_rung_s": "first result at the highest rung reached (s)",
                 "top_rung": "highest epoch reached", "final_best_val": "incumbent val acc at the budget",
                 "rank_1_3": "Spearman of epoch-1 and epoch-3 val acc (trials at both)"}
MIN_TRIALS_RANK = 4   # trials with results at both epochs for a replicate's rank_1_3


def rank_consistency(g: pd.DataFrame, a: int = 1, b: int = 3) -> float:
    """How consistently a replicate's trials keep their order from epoch a to epoch b: Spearman of their
    val accuracies at both, over the trials that reached b (NaN with fewer than ``MIN_TRIALS_RANK``).
    A scheduler that promotes on early results relies on it; its seed noise sets it."""
    from scipy.stats import spearmanr
    w = g[g["epoch"].isin([a, b])].pivot_table(index="trial_id", columns="epoch", values="val_acc", aggfunc="first")
    w = w.dropna() if set(w.columns) >= {a, b} else w.iloc[:0]
    if len(w) < MIN_TRIALS_RANK or w[a].nunique() < 2 or w[b].nunique() < 2:
        return float("nan")
    return float(spearmanr(w[a], w[b]).statistic)


def clock_figures(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (scheduler, variant, seed) with ``CLOCK_FIGURES``: whether a gap in T@τ comes from
    the clock (trials and epochs per second, epoch time) or from the accuracies the epochs bring."""
    rows = []
    for (s, v, seed), g in results.groupby(["scheduler", "variant", "seed"]):
        top = int(g["epoch"].max())
        rows.append({"scheduler": s, "variant": v, "seed": seed, "trials": int(g["trial_id"].nunique()),
                     "epochs": int(len(g)), "epoch_time_s": float(g["epoch_time"].median()),
                     "t_first_top_rung_s": float(g.loc[g["epoch"] == top, "elapsed_s"].min()), "top_rung": top,
                     "final_best_val": float(g["val_acc"].max()), "rank_1_3": rank_consistency(g)})
    return pd.DataFrame(rows)


def _seed_bootstrap_ci(n: int, statistic, rng: np.random.Generator, n_boot: int,
                       alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of ``statistic(idx)`` over ``n_boot`` resamples of n replicates (seeds) with
    replacement; ``idx`` is the (n_boot, n) index array, the statistic returns one value per row."""
    return stats.percentile_ci(statistic(rng.integers(0, n, size=(n_boot, n))), alpha)


def clock_comparison(c_real: pd.DataFrame, c_sim: pd.DataFrame, rng: np.random.Generator,
                     n_boot: int = 2000) -> dict:
    """Per figure: real and simulated medians over replicates, with a seed-bootstrap 95 % CI of the
    real median, and whether the simulated median lies inside it."""
    out = {}
    for k in CLOCK_FIGURES:
        if k not in c_real or k not in c_sim:
            continue
        r, q = c_real[k].to_numpy(float), c_sim[k].to_numpy(float)
        r, q = r[np.isfinite(r)], q[np.isfinite(q)]   # rank_1_3 is undefined for replicates with few trials
        if not r.size or not q.size:
            continue
        lo, hi = _seed_bootstrap_ci(r.size, lambda idx: np.median(r[idx], axis=1), rng, n_boot)
        sim_med = float(np.median(q))
        out[k] = {"real": float(np.median(r)), "real_ci": [lo, hi], "sim": sim_med, "inside": bool(lo <= sim_med <= hi)}
    return out


def ranking_consistency(m_real: pd.DataFrame, m_sim: pd.DataFrame, keys: list[str], seed: int = 0) -> dict:
    """Pairwise check of the variants' order by median T@τ (``censored_median``), per scheduler, over ``keys``
    ("scheduler/variant" with enough real replicates).

    For each pair, the real difference of median T@τ gets a bootstrap 95 % CI (paired on seeds when
    both variants ran the same seeds). Where the CI excludes 0 the real data resolves the order and the
    surrogate must give the same sign; where it does not, a rerun of the real experiment could give
    either order, so the surrogate agrees when its difference lies inside the CI."""
    from itertools import combinations

    from scipy.stats import bootstrap
    rng = np.random.default_rng(seed)

    def med_diff(x, y, axis=-1):
        return censored_median(x, axis=axis) - censored_median(y, axis=axis)

    out = []
    by_s: dict[str, list[str]] = {}
    for k in keys:
        s, v = k.split("/", 1)
        by_s.setdefault(s, []).append(v)
    for s, vs in sorted(by_s.items()):
        for a, b in combinations(sorted(vs), 2):
            ra = m_real[(m_real.scheduler == s) & (m_real.variant == a)].set_index("seed")["t_tau_s"]
            rb = m_real[(m_real.scheduler == s) & (m_real.variant == b)].set_index("seed")["t_tau_s"]
            sa = m_sim[(m_sim.scheduler == s) & (m_sim.variant == a)]["t_tau_s"].to_numpy()
            sb = m_sim[(m_sim.scheduler == s) & (m_sim.variant == b)]["t_tau_s"].to_numpy()
            paired = set(ra.index) == set(rb.index)
            xa, xb = ra.sort_index().to_numpy(), rb.sort_index().to_numpy()
            d_real, d_sim = float(med_diff(xa, xb)), float(med_diff(sa, sb))
            if np.ptp(np.concatenate([xa, xb])) == 0:
                lo = hi = d_real
            else:
                ci = bootstrap((xa, xb), med_diff, paired=paired, vectorized=True, n_resamples=9999,
                               method="percentile", random_state=rng).confidence_interval
                lo, hi = float(ci.low), float(ci.high)
            resolved = lo > 0 or hi < 0
            agrees = bool(np.sign(d_sim) == np.sign(d_real)) if resolved else bool(lo <= d_sim <= hi)
            out.append({"scheduler": s, "a": a, "b": b, "diff_real_s": d_real, "ci95_real": [lo, hi],
                        "paired": paired, "diff_sim_s": d_sim, "resolved_by_real": resolved, "agrees": agrees})
    return {"pairs": out, "agrees": all(p["agrees"] for p in out) if out else None}


# what the simulated sweep reproduces: stores that differ in any of these cannot be merged
MERGE_KEYS = ("task", "budget_s", "budget_gpu_hours", "n_workers", "grace_period", "reduction_factor", "max_epochs",
              "max_trials", "tuner_sleep_time", "runner")


def load_real(real_dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One or more real results stores of the same task, budget and workers, merged: their
    (scheduler, variant) sets and seeds are united (a replicate present twice is an error)."""
    # stores written before the 'runner' key existed ran real trials on LocalBackend
    real, rep, cfg, _, cfgs = merge_stores(real_dirs, MERGE_KEYS, defaults={"runner": "local"})
    for d, c in zip(real_dirs, cfgs):
        if c.get("backend") != "real":
            raise ValueError(f"--real {d!r} is a {c.get('backend')!r} sweep; verify needs real replicates")
    return real, rep, cfg


def config_level(sur: Surrogate, sdir: Path, heldout_curves: str | None, seed: int = 0) -> dict | None:
    """Config-level fidelity: on a separate held-out collection if given; else the cross-validation
    `ohgw-bench fit` stored in the artifact, but only when surrogate.json's checksum covers it;
    otherwise recomputed here from the collected curves."""
    curves_all = pd.read_parquet(sdir / "curves.parquet") if (sdir / "curves.parquet").exists() else None
    hgs_all = pd.read_parquet(sdir / "hypergrads.parquet") if (sdir / "hypergrads.parquet").exists() else None
    if heldout_curves:
        held = pd.read_parquet(heldout_curves)
        cl = config_fidelity(sur, held, None, seed=seed)
        cl["source"] = f"separate held-out collection {heldout_curves} (shipped surrogate)"
        # its repeated-seed configurations, if any, give the rerun ceiling beside the surrogate's figures
        from ..surrogate.noise_ceiling import noise_ceiling
        from ..tasks import get_task
        cl["noise_ceiling"] = noise_ceiling(held, [(sur, held, None)], get_task(sur.task).milestones(), sur.epochs,
                                            seed=seed)
    elif "fidelity_heldout" in sur.meta and sur.content_checked:
        cl = dict(sur.meta["fidelity_heldout"])
        cl["source"] = (f"{cl['scheme']} run by `ohgw-bench fit` (each configuration scored by a refit that never "
                        "saw it; the shipped surrogate saw all), covered by the artifact's checksum")
    elif curves_all is not None:
        from ..surrogate.fidelity import cv_parts, pooled_fidelity
        from ..surrogate.noise_ceiling import noise_ceiling
        from ..tasks import get_task
        parts = cv_parts(curves_all, hgs_all, sur.task, sur.epochs, k=5, seed=seed, rank=sur.basis.shape[0],
                         startup_s=sur.startup_s)
        cl = pooled_fidelity(parts, seed=seed, k=5)
        from ..surrogate.targets import subsets
        cl["noise_ceiling"] = noise_ceiling(curves_all, parts, get_task(sur.task).milestones(), sur.epochs, seed=seed,
                                            subsets=subsets(sdir, curves_all))
        why = ("the artifact's stored figures are not covered by its checksum" if "fidelity_heldout" in sur.meta
               else "the artifact holds none")
        cl["source"] = ("5-fold cross-validation over the collected configurations, recomputed here because "
                        f"{why} (each scored by a refit that never saw it; time model refitted on the collected curves)")
    else:
        return None
    return cl


def store_roles(sur: Surrogate, real_dirs: list) -> dict:
    """Which real stores calibrated the artifact (its time model and start-up were fitted on them) and
    which verify it. A ``--real`` store sharing replicates with a calibration store is a calibration
    store: checking the simulated time against the sweeps it was fitted on is no verification."""
    cal = sur.meta.get("calibration_stores") if sur.content_checked else None
    if cal is None and sur.meta.get("time_model_source", "collected curves") == "collected curves":
        cal = []  # time model from the collection: no real sweep calibrated the artifact
    known = set() if cal is None else {fp for c in cal for fp in c["replicates"]}
    # sweeps whose promoted configurations the targeted collection repeated: they chose training data
    tgt = (sur.meta.get("targeted_stores") or []) if sur.content_checked else []
    chose = {fp for c in tgt for fp in c["replicates"]}
    real = []
    for d in real_dirs:
        rec = store_record(d)
        shared = len(set(rec["replicates"]) & known)
        picked = len(set(rec["replicates"]) & chose)
        role = ("unknown" if cal is None else "calibration" if shared else
                "targeted collection source" if picked else "verification")
        real.append({"path": rec["path"], "name": rec["name"], "n_replicates": rec["n_replicates"], "role": role,
                     "n_replicates_in_calibration": shared if cal is not None else None,
                     "n_replicates_in_targeted_sources": picked})
    return {"calibration": ([{k: c[k] for k in ("path", "name", "n_replicates")} for c in cal] if cal is not None
                            else "not recorded by the artifact (its time model came from real sweeps)"),
            "targeted_sources": [{k: c[k] for k in ("path", "name", "n_replicates")} for c in tgt],
            "real": real,
            "independent": None if cal is None else all(r["role"] == "verification" for r in real)}


def hpo_level(real: pd.DataFrame, real_reps: pd.DataFrame, sim: pd.DataFrame, sim_reps: pd.DataFrame, cfg: dict,
              budget: float, min_real: int, seed: int = 0, out: Path | None = None) -> dict:
    """The real replicates against the simulated ones of the same sweep config (see module doc). Only
    (scheduler, variant) pairs with ≥ ``min_real`` real replicates enter the band, ranking and verdict
    checks; the others are reported."""
    grid = np.linspace(0, budget, 101)
    rc, sc = incumbent_curves(real, grid), incumbent_curves(sim, grid)
    rep = cfg.get("report") or {}
    base = rep.get("baseline", "baseline")
    tau_cfg = rep.get("tau", "auto")
    tau = float(tau_cfg) if tau_cfg != "auto" else stats.auto_tau(real, base, rep.get("tau_quantile", 0.25))
    rng = np.random.default_rng(seed)
    m_real, rank_real, ver_real = _verdicts(real, real_reps, cfg, tau)
    m_sim, rank_sim, ver_sim = _verdicts(sim, sim_reps, cfg, tau)
    clk_real, clk_sim = clock_figures(real), clock_figures(sim)
    hpo = {}
    for key in sorted(rc):
        if key not in sc:
            continue
        b = band_share(rc[key], sc[key], rng)
        s, v = key
        mr = m_real[(m_real.scheduler == s) & (m_real.variant == v)]
        ms = m_sim[(m_sim.scheduler == s) & (m_sim.variant == v)]
        ks_t = ks_2samp(mr["t_tau_s"], ms["t_tau_s"])
        fa, fb = mr["final_test_acc"].dropna(), ms["final_test_acc"].dropna()
        ks_a = ks_2samp(fa, fb) if len(fa) and len(fb) else None
        hpo[f"{s}/{v}"] = {
            "band_share": b["band_share"], "band_share_per_replicate": b["band_share_per_replicate"],
            "n_real": b["n_real"], "n_sim": b["n_sim"],
            "censored_real": int(mr["censored"].sum()), "censored_sim": int(ms["censored"].sum()),
            "ks_t_tau": {"statistic": float(ks_t.statistic), "p": float(ks_t.pvalue)},
            "ks_final_test_acc": ({"statistic": float(ks_a.statistic), "p": float(ks_a.pvalue)} if ks_a else None),
            "final_test_acc_median_real": float(fa.median()) if len(fa) else None,
            "final_test_acc_median_sim": float(fb.median()) if len(fb) else None,
            "meets_band": bool(b["band_share"] >= BAND_TARGET), "enough_real": bool(b["n_real"] >= min_real),
            **median_check(mr, ms, rng),
            "spread": replicate_spread(clk_real[(clk_real.scheduler == s) & (clk_real.variant == v)]["final_best_val"],
                                       clk_sim[(clk_sim.scheduler == s) & (clk_sim.variant == v)]["final_best_val"]),
            "clock": clock_comparison(clk_real[(clk_real.scheduler == s) & (clk_real.variant == v)],
                                      clk_sim[(clk_sim.scheduler == s) & (clk_sim.variant == v)], rng)}
        if out is not None:
            _plot_band(out, key, grid, b, rc[key], sc[key])
    enough = [k for k, v in hpo.items() if v["enough_real"]]

    def checked_order(rank):
        return {s: [v for v in vs if f"{s}/{v}" in enough] for s, vs in rank.items()}
    ver_real_checked = {k: v for k, v in ver_real.items() if k in enough}
    return {"tau": tau, "per_variant": hpo, "min_real": int(min_real), "checked_variants": enough,
            "ranking_real": rank_real, "ranking_sim": rank_sim,
            "ranking_agrees_strict": checked_order(rank_real) == checked_order(rank_sim),
            "ranking_consistency": ranking_consistency(m_real, m_sim, enough, seed=seed),
            "verdict_real": ver_real, "verdict_sim": {k: v for k, v in ver_sim.items() if k in ver_real},
            "verdict_agrees": (all(ver_sim.get(k) == v for k, v in ver_real_checked.items())
                               if ver_real_checked else None)}


def replicate_spread(real: pd.Series, sim: pd.Series) -> dict:
    """Between-replicate spread of the incumbent's val accuracy at the budget, real against simulated:
    standard deviations and the Brown–Forsythe test (Levene's with median centring) of equal spread,
    with the one-sided p for "simulated replicates spread less than real ones"."""
    r, q = real.dropna().to_numpy(float), sim.dropna().to_numpy(float)
    if r.size < 3 or q.size < 3:
        return {"sd_real": None, "sd_sim": None, "p_equal": None, "p_sim_narrower": None}
    sd_r, sd_q = float(r.std(ddof=1)), float(q.std(ddof=1))
    p = float(levene(r, q, center="median").pvalue)
    return {"sd_real": sd_r, "sd_sim": sd_q, "ratio_sim_to_real": sd_q / sd_r if sd_r > 0 else None, "p_equal": p,
            "p_sim_narrower": p / 2 if sd_q < sd_r else 1 - p / 2}


def uncertainty_decision(sur: Surrogate, real: pd.DataFrame, hpo: dict, checked: list[str], seed: int = 0,
                         alpha: float = 0.05) -> dict:
    """Do the HPO-level bands need the surrogate's own (GP posterior) uncertainty on top of seed noise?

    Simulated replicates draw each configuration's curve around the posterior mean with seed noise
    only. Two measurements decide: (1) the share of the predictive variance of final val accuracy that
    is model (not seed) uncertainty, at the configurations the real schedulers ran; (2) whether the
    simulated replicates' incumbents spread less than the real ones (Brown–Forsythe, one-sided,
    Holm-adjusted over the checked variants). Posterior draws are needed when (2) rejects for any
    checked variant: the mean alone then makes the band too narrow."""
    rng = np.random.default_rng(seed)
    r = real.dropna(subset=[f"xp_{k}" for k in PSI_KEYS]).drop_duplicates(
        subset=["scheduler", "variant", "seed", "trial_id"])
    share = None
    if len(r):
        U = to_unit_array(r, prefix="xp_")
        E = sur.epochs
        tot = predictive_samples(sur, U, 400, rng)[:, :, E - 1].var(0)
        noise = predictive_samples(sur, U, 400, rng, include_model=False)[:, :, E - 1].var(0)
        frac = np.clip(1 - noise / np.maximum(tot, 1e-12), 0, 1)
        share = {"n_configs": int(len(r)), "median": float(np.median(frac)),
                 "p10": float(np.quantile(frac, 0.1)), "p90": float(np.quantile(frac, 0.9))}
    keys = [k for k in checked if hpo[k]["spread"]["p_sim_narrower"] is not None]
    holm = (multipletests([hpo[k]["spread"]["p_sim_narrower"] for k in keys], alpha=alpha, method="holm")[1]
            if keys else [])
    adj = {k: float(p) for k, p in zip(keys, holm)}
    narrower = [k for k, p in adj.items() if p < alpha]
    return {"model_variance_share": share, "p_sim_narrower_holm": adj, "narrower": narrower,
            "needed": bool(narrower) if keys else None, "implemented": False, "alpha": alpha}


def median_check(m_real: pd.DataFrame, m_sim: pd.DataFrame, rng: np.random.Generator, n_boot: int = 4000,
                 alpha: float = 0.05) -> dict:
    """The simulated KM median T@τ against a bootstrap 95 % CI of the real one: the real replicates
    (seeds) resampled with replacement, each resample's KM median, percentile interval. ``inf`` is a
    median not reached within the budget; a simulated median inside [low, high] passes."""
    t, c = m_real["t_tau_s"].to_numpy(float), m_real["censored"].to_numpy(bool)
    km_real = stats.km_summary(t, c).median
    km_sim = stats.km_summary(m_sim["t_tau_s"], m_sim["censored"]).median
    if t.size == 0:
        return {"km_median_real": None, "km_median_sim": None, "km_median_real_ci": None, "median_in_real_ci": None}
    lo, hi = _seed_bootstrap_ci(t.size, lambda idx: stats.km_quantile_batch(t[idx], c[idx]), rng, n_boot, alpha)
    return {"km_median_real": km_real, "km_median_sim": km_sim, "km_median_real_ci": [lo, hi],
            "median_in_real_ci": bool(lo <= km_sim <= hi)}


def warmstart_gains(sur: Surrogate, sdir: Path, gains_dir: "str | Path | None") -> dict | None:
    """The warm-start effect check (``surrogate.gains``) on the paired real runs in ``gains_dir``
    (default ``sdir/gains``), scored with this surrogate; None when there are none."""
    from ..surrogate.gains import gain_check
    d = Path(gains_dir) if gains_dir is not None else sdir / "gains"
    if not (d / "gains.parquet").exists():
        if gains_dir is not None:
            raise FileNotFoundError(f"--gains {str(d)!r} holds no gains.parquet (run `ohgw-bench gains` first)")
        return None
    return gain_check(sur, pd.read_parquet(d / "gains.parquet"), sur_dir=sdir) | {"path": str(d)}


def overall_checks(res: dict, required: "tuple[str, ...] | None", min_real: int) -> dict:
    checks = {}
    cl = res.get("config_level") or {}
    for k in TARGETS:
        checks[f"config/{k}"] = meets(k, cl.get(k))
    checks["stores/real_not_calibration"] = res["stores"]["independent"]
    h = res["hpo_level"]
    hpo = h["per_variant"]
    ran = {k.split("/", 1)[0] for k in hpo}
    for k in required or ():
        if k.split("/", 1)[0] in ran:
            checks[f"hpo/{k}/n_real>={min_real}"] = bool(hpo.get(k, {}).get("n_real", 0) >= min_real)
    for k in h["checked_variants"]:
        checks[f"hpo/{k}/band"] = hpo[k]["meets_band"]
        checks[f"hpo/{k}/median_in_real_ci"] = hpo[k]["median_in_real_ci"]
    checks["hpo/ranking_consistent"] = h["ranking_consistency"]["agrees"]
    checks["hpo/verdict_agrees"] = h["verdict_agrees"]
    # the rerun ceiling on the configurations the schedulers promoted, from the targeted collection's
    # repeated seeds of them (None: the collection holds none, not decidable)
    from ..surrogate.noise_ceiling import promoted_check
    checks["shift/per_rung_within_0.05_of_rerun_ceiling"] = promoted_check(cl.get("noise_ceiling"))["meets"]
    g = res.get("gains") or {"meets": {"spearman": None, "sign_agreement": None}}  # None: not measured
    checks["gains/spearman"] = g["meets"]["spearman"]
    checks["gains/sign_agreement"] = g["meets"]["sign_agreement"]
    return checks


def run_verify(surrogate_dir: str, real_dir: "str | list[str]", out: str | None = None, sim_seeds: int = 200,
               sim_seed_start: int = 100_000, heldout_curves: str | None = None, progress: bool = True,
               seed: int = 0, min_real: int = 10, required: "tuple[str, ...] | None" = REQUIRED,
               gains_dir: str | None = None) -> dict:
    """``min_real``: variants with fewer real replicates are reported but enter no check (a median of
    two replicates says little); ``required``: "scheduler/variant" keys that must have ``min_real``
    real replicates (those whose scheduler the real sweep ran); ``gains_dir``: paired real runs of
    ``ohgw-bench gains`` (default ``SURROGATE_DIR/gains``), scored against this surrogate."""
    from ..config import SweepConfig
    from ..sweeps.sweep import run_sweep
    sdir = Path(surrogate_dir)
    sur = Surrogate.load(sdir)
    real_dirs = [real_dir] if isinstance(real_dir, (str, Path)) else list(real_dir)
    real, real_reps, cfg = load_real(real_dirs)
    if real.empty:
        raise ValueError(f"results directories {real_dirs} hold no results")
    out = Path(out or Path(real_dirs[0]) / "verify")
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"surrogate": str(sdir), "surrogate_checksum": sur.checksum,
                 "surrogate_checksum_covers_meta": sur.content_checked,
                 "real": ", ".join(map(str, real_dirs)), "task": sur.task}
    res["stores"] = store_roles(sur, real_dirs)
    cl = config_level(sur, sdir, heldout_curves, seed=seed)
    if cl is not None:
        res["config_level"] = cl

    # HPO level: the same sweep config on the surrogate. Its store is verify's own cache: simulations
    # of another surrogate, code revision or config are redone, never reused.
    sim_cfg = dict(cfg)
    sim_cfg.update(backend="surrogate", surrogate=str(sdir), seeds=f"{sim_seed_start}:{sim_seed_start + sim_seeds}",
                   out=str(out / "surrogate-sweep"), name=f"{cfg.get('name', 'sweep')}-surrogate")
    scfg = SweepConfig(**sim_cfg)
    sim_dir = run_sweep(scfg, resume=True, progress=progress, on_stale="redo")
    sim, sim_reps, _ = load(sim_dir)
    h = hpo_level(real, real_reps, sim, sim_reps, cfg, float(scfg.replicate_budget_s), min_real, seed=seed, out=out)
    res["tau"] = h.pop("tau")
    res["hpo_level"] = h
    res["uncertainty"] = uncertainty_decision(sur, real, h["per_variant"], h["checked_variants"], seed=seed)
    res["shift"] = shift_fidelity(sur, real, seed=seed)
    res["gains"] = warmstart_gains(sur, sdir, gains_dir)
    res["checks"] = overall_checks(res, required, min_real)
    res["pass"] = all(v is True for v in res["checks"].values())
    write_json_atomic(res, out / "verify.json")
    (out / "verify.md").write_text(_markdown(res))
    return res


def _plot_band(out: Path, key, grid, b, real, sim) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5, 3.6))
    ax = fig.add_subplot()
    ax.fill_between(grid, b["band_lo"], b["band_hi"], alpha=0.3, label=f"surrogate 95% band of a median of {b['n_real']}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sim_med = np.nanmedian(sim, 0)
    ax.plot(grid, sim_med, "--", lw=1, label=f"surrogate median (n={b['n_sim']})")
    ax.plot(grid, b["real_median"], "k", lw=2, label=f"real median (n={b['n_real']})")
    ax.set_xlabel("replicate time (s)")
    ax.set_ylabel("best val acc so far")
    ax.set_title(f"{key[0]} / {key[1]}: inside band {b['band_share']:.0%} of time points", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"band_{key[0]}_{key[1]}.png", dpi=120)
    fig.savefig(out / f"band_{key[0]}_{key[1]}.pdf")




def _secs(x) -> str:
    """Seconds with one decimal; a KM median that is not reached within the budget says so."""
    return "not reached" if x == float("inf") else fixed_or_na(x, 1)


def _uncertainty_markdown(u: dict | None, h: dict) -> list[str]:
    if not u:
        return []
    L = ["## Does the band need the surrogate's own uncertainty?", "",
         "Simulated replicates draw every configuration's curve around the surrogate's posterior mean with seed noise. "
         "Posterior draws per replicate are needed if the simulated incumbents spread less than the real ones: "
         "Brown–Forsythe test of the incumbent's val accuracy at the budget, one-sided (simulated narrower), "
         f"Holm-adjusted over the checked variants, α = {u['alpha']}.", ""]
    sh = u.get("model_variance_share")
    if sh:
        L += [f"Share of the predictive variance of final val accuracy that is model (not seed) uncertainty, at the "
              f"{sh['n_configs']} configurations the real schedulers ran: median {sh['median']:.2f} "
              f"(10–90 %: {sh['p10']:.2f}–{sh['p90']:.2f}).", ""]
    L += ["| scheduler/variant | sd real | sd sim | sim / real | p (equal) | p (sim narrower), Holm |",
          "|---|---|---|---|---|---|"]
    for k, v in h["per_variant"].items():
        sp = v.get("spread") or {}
        if sp.get("sd_real") is None:
            continue
        L.append(f"| {k} | {sp['sd_real']:.4f} | {sp['sd_sim']:.4f} | {fixed_or_na(sp.get('ratio_sim_to_real'), 2)} | "
                 f"{sp['p_equal']:.3g} | {fixed_or_na(u['p_sim_narrower_holm'].get(k), 3)} |")
    if u["needed"] is None:
        dec = "not decidable (no checked variant with ≥ 3 replicates on both sides)"
    elif u["needed"]:
        dec = (f"**needed** for {', '.join(u['narrower'])}; not implemented: the bands of these variants are too "
               f"narrow by the figures above, which their band checks carry")
    else:
        dec = ("**not needed**: no checked variant's simulated incumbents spread significantly less than the real "
               "ones; simulations keep the posterior mean (band failures come from location, not width)")
    return L + ["", f"Decision: {dec}.", ""]


def _markdown(res: dict) -> str:
    L = [f"# Verification of the surrogate `{res['surrogate']}` against real runs `{res['real']}`", "",
         f"Overall: **{'PASS' if res['pass'] else 'FAIL'}** (every figure against its target below).", ""]
    st = res["stores"]
    cal = st["calibration"]
    L += ["## Real stores", "", "Calibration (the artifact's time model and start-up were fitted on these): "
          + (", ".join(f"`{c['path']}` ({c['n_replicates']} replicates)" for c in cal) or "none"
             if isinstance(cal, list) else cal) + ".", ""]
    if st.get("targeted_sources"):
        L += ["Targeted collection (repeated seeds of the configurations these sweeps promoted are training data): "
              + ", ".join(f"`{c['path']}`" for c in st["targeted_sources"]) + ".", ""]
    L += ["| --real store | replicates | role | replicates shared with calibration | with targeted sources |",
          "|---|---|---|---|---|"]
    L += [f"| `{r['path']}` | {r['n_replicates']} | {r['role']} | {r['n_replicates_in_calibration']} | "
          f"{r.get('n_replicates_in_targeted_sources', '–')} |" for r in st["real"]]
    L += [""]
    cl = res.get("config_level")
    if cl:
        L += ["## Config level", "", f"Source: {cl.get('source')}; {cl['n_runs']} runs on {cl['n_configs']} configurations "
              f"({cl.get('n_repeated_configs', 0)} with repeated seeds).", ""] + fidelity_table(cl) + noise_sections(cl) + [""]
    h = res["hpo_level"]
    L += ["## HPO level", "", f"τ = {res['tau']:.4f} (val accuracy).", "",
          "| scheduler/variant | n real | n sim | inside 95 % band (target ≥ 0.90) | per-replicate band | "
          "censored real / sim | KS T@τ (D, p) | KS final test acc (D, p) | "
          "KM median T@τ real [95 % CI] / sim (s) | sim inside |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for k, v in h["per_variant"].items():
        ks_a = v["ks_final_test_acc"]
        L.append(f"| {k} | {v['n_real']} | {v['n_sim']} | {fixed_or_na(v['band_share'], 2)} ({v['meets_band']}) | "
                 f"{fixed_or_na(v['band_share_per_replicate'], 2)} | {v['censored_real']} / {v['censored_sim']} | "
                 f"{fixed_or_na(v['ks_t_tau']['statistic'], 2)}, {fixed_or_na(v['ks_t_tau']['p'], 3)} | "
                 + (f"{fixed_or_na(ks_a['statistic'], 2)}, {fixed_or_na(ks_a['p'], 3)} |" if ks_a else "n/a |")
                 + (f" {_secs(v['km_median_real'])} [{_secs(v['km_median_real_ci'][0])}, "
                    f"{_secs(v['km_median_real_ci'][1])}] / {_secs(v['km_median_sim'])} | "
                    f"{v['median_in_real_ci']} |" if v.get("km_median_real_ci") else " n/a | n/a |"))
    L += ["", "Where the time goes (per replicate; median real [seed-bootstrap 95 % CI] / median simulated; "
          "`*` where the simulated median lies outside the real CI): a T@τ gap with matching trials, epochs and "
          "epoch times comes from the accuracies, not from the clock.", "",
          "| scheduler/variant | " + " | ".join(CLOCK_FIGURES.values()) + " |",
          "|---|" + "---|" * len(CLOCK_FIGURES)]
    for k, v in h["per_variant"].items():
        c = v.get("clock") or {}
        L.append(f"| {k} | " + " | ".join(
            f"{c[f]['real']:.3g} [{c[f]['real_ci'][0]:.3g}, {c[f]['real_ci'][1]:.3g}] / {c[f]['sim']:.3g}"
            + ("" if c[f]["inside"] else " *") if f in c else "n/a" for f in CLOCK_FIGURES) + " |")
    L += ["", f"Checks use the variants with ≥ {h['min_real']} real replicates: {', '.join(h['checked_variants']) or 'none'}; "
          "the others are shown for information only.", "",
          f"Ranking by median T@τ (Kaplan–Meier; the budget where half never reach τ; all variants) — real: {h['ranking_real']}; surrogate: {h['ranking_sim']}; "
          f"strict agreement over the checked variants: {h['ranking_agrees_strict']}.", "",
          "Pairwise order (checked variants): the real difference of median T@τ (a − b) with its bootstrap 95 % CI; "
          "where the CI excludes 0 the surrogate must have the same sign, otherwise its difference must lie in the CI.", "",
          "| scheduler | a − b | real diff (s) [95 % CI] | paired | surrogate diff (s) | resolved by real | agrees |",
          "|---|---|---|---|---|---|---|"]
    for p in h["ranking_consistency"]["pairs"]:
        L.append(f"| {p['scheduler']} | {p['a']} − {p['b']} | {p['diff_real_s']:.1f} [{p['ci95_real'][0]:.1f}, "
                 f"{p['ci95_real'][1]:.1f}] | {p['paired']} | {p['diff_sim_s']:.1f} | {p['resolved_by_real']} | {p['agrees']} |")
    L += ["", f"Ranking consistent: **{h['ranking_consistency']['agrees']}**", "",
          f"Verdict (all pre-registered criteria) — real: {h['verdict_real']}; surrogate: {h['verdict_sim']}; "
          f"agrees: **{h['verdict_agrees']}**", ""]
    L += _uncertainty_markdown(res.get("uncertainty"), h)
    s = res["shift"]
    if s.get("n_results"):
        L += ["## Shift: configurations chosen by the real schedulers", "",
              f"{s['n_results']} results of {s['n_trials']} real trials: Spearman {fixed_or_na(s['spearman_all'])}, "
              f"90 % coverage {fixed_or_na(s['coverage_90'])}, mean |error| {fixed_or_na(s['mean_abs_error'])}; per rung: "
              + ", ".join(f"epoch {e}: {fixed_or_na(v['spearman'])} (n={v['n']})" for e, v in s["per_rung"].items()), ""]
        from ..surrogate.noise_ceiling import promoted_check, promoted_table
        L += ["The figures above score each real result against the surrogate; the target compares like with like: "
              "the surrogate (cross-validated) and a rerun, on repeated seeds of configurations real sweeps "
              "promoted (the targeted collection, drawn from the calibration sweeps).", ""]
        L += promoted_table(promoted_check((cl or {}).get("noise_ceiling"))) + [""]
    if "gains" in res:  # results written before the check existed lack the key
        from ..surrogate.gains import gains_markdown
        L += gains_markdown(res["gains"])
    L += ["## Checks", ""] + [f"- {k}: {v}" for k, v in res["checks"].items()]
    return "\n".join(L) + "\n"
