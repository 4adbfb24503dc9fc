"""Statistics of a sweep: per-replicate metrics, paired tests against the baseline, the verdict.

Pure functions on DataFrames from the results store (``ohgw_bench.results``); no plotting, no I/O.

Conventions used throughout:

- A *replicate* is one HPO run, keyed by ``REPLICATE_KEYS`` = (task, scheduler, variant, seed).
  Variants are compared with the baseline of the same (task, scheduler) on the same seed
  ("paired": the same seed samples the same configurations).
- Only results that arrived within the replicate's budget (``elapsed_s <= budget``) count.
- T@τ of a replicate that never reaches τ is *censored*: it stays in the data at the budget value
  (never dropped, which would flatter whichever variant fails more often), and every T@τ
  statistic is reported with its number of censored replicates.
- Accuracies are fractions in [0, 1].
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _st

from .space import PSI_KEYS

REPLICATE_KEYS: tuple[str, ...] = ("task", "scheduler", "variant", "seed")
GROUP_KEYS: tuple[str, ...] = ("task", "scheduler")   # a baseline is paired within one group
# Boundaries of the pre-registered criteria count as passing ("≥ 15 %" includes 15 %), but
# 1 − 85/100 or 0.900 − 0.898 miss them by one ulp in floating point; this absorbs that.
_TOL = 1e-9

CRITERIA: dict[str, str] = {
    "t_tau_reduction": "≥15 % lower median T@τ than the baseline, with paired Wilcoxon p < 0.05",
    "test_acc_drop": "≤0.2 percentage-point drop in median final test accuracy",
    "overhead_share": "≤5 % extra compute (median warm-start share of trial compute)",
    "t_tau_std_ratio": "seed std of T@τ not inflated by more than 10 % (std(var)/std(base) ≤ 1.10)",
}


class WilcoxonResult(NamedTuple):
    statistic: float
    p: float
    n: int          # complete pairs (zero differences included; the test itself discards them)


class BootstrapResult(NamedTuple):
    estimate: float
    ci_low: float
    ci_high: float
    n: int


class MedianIQR(NamedTuple):
    median: float
    q25: float
    q75: float
    n: int


# ---------------------------------------------------------------- one replicate
def time_to_target(df_replicate: pd.DataFrame, tau: float, budget: float) -> tuple[float, bool]:
    """Time at which the replicate's best-so-far val_acc first reaches ``tau``.

    Args:
        df_replicate: one replicate's results (columns ``elapsed_s``, ``val_acc``), any order.
        tau: target validation accuracy (fraction).
        budget: the replicate's budget in seconds; results after it do not count.

    Returns:
        ``(t, censored)``: the first ``elapsed_s`` with ``val_acc >= tau``; ``(budget, True)`` if
        no result within the budget reaches it.
    """
    t = df_replicate["elapsed_s"].to_numpy(float)
    v = df_replicate["val_acc"].to_numpy(float)
    return _t_tau(t, v, tau, budget)


def _t_tau(t: np.ndarray, v: np.ndarray, tau: float, budget: float) -> tuple[float, bool]:
    with np.errstate(invalid="ignore"):
        hit = np.isfinite(t) & (t <= budget) & (v >= tau)
    if not hit.any():
        return float(budget), True
    return float(t[hit].min()), False


def normalized_auc(df_replicate: pd.DataFrame, budget: float) -> float:
    """Exact area under the best-so-far val_acc step function over [0, budget], divided by budget.

    The step function is 0 before the first result (no model exists yet) and jumps to the running
    maximum at each result's ``elapsed_s``. So 1.0 would mean perfect accuracy from time 0.
    """
    t = df_replicate["elapsed_s"].to_numpy(float)
    v = df_replicate["val_acc"].to_numpy(float)
    return _auc(t, v, budget)


def _auc(t: np.ndarray, v: np.ndarray, budget: float) -> float:
    if not budget > 0:
        return float("nan")
    ok = np.isfinite(t) & np.isfinite(v) & (t <= budget)
    t, v = np.clip(t[ok], 0.0, None), v[ok]
    if t.size == 0:
        return 0.0
    order = np.argsort(t, kind="mergesort")
    t, best = t[order], np.maximum.accumulate(v[order])
    widths = np.diff(np.append(t, budget))
    return float(np.sum(best * widths) / budget)


def best_so_far_on_grid(df_replicate: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Best val_acc reported up to each grid time (NaN before the replicate's first result)."""
    t = df_replicate["elapsed_s"].to_numpy(float)
    v = df_replicate["val_acc"].to_numpy(float)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    order = np.argsort(t, kind="mergesort")
    t, best = t[order], np.maximum.accumulate(v[order]) if v.size else v
    idx = np.searchsorted(t, np.asarray(grid, float), side="right") - 1
    out = np.full(len(idx), np.nan)
    out[idx >= 0] = best[idx[idx >= 0]]
    return out


# ---------------------------------------------------------------- distributions
def median_iqr(x: Iterable[float]) -> MedianIQR:
    """(median, 25th percentile, 75th percentile, n) over the finite values of ``x``."""
    a = np.asarray(list(x) if not isinstance(x, (np.ndarray, pd.Series)) else x, float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return MedianIQR(float("nan"), float("nan"), float("nan"), 0)
    q25, med, q75 = np.percentile(a, [25, 50, 75])
    return MedianIQR(float(med), float(q25), float(q75), int(a.size))


def mean_shift(before: Iterable[float], after: Iterable[float]) -> float:
    """Mean |after − before| over the pairs where both are finite (NaN if there are none)."""
    b, a = np.asarray(before, float), np.asarray(after, float)
    d = np.abs(a - b)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def kl_divergence_1d(a: Iterable[float], b: Iterable[float], bins: int | np.ndarray = 20,
                     eps: float = 1e-6) -> float:
    """KL(P_a ‖ P_b) in nats between histogram estimates of two 1-d samples.

    Both samples are binned on common edges (``bins`` edges, or that many equal bins over the
    pooled range). Each bin probability gets ``eps`` added before renormalising: without it a bin
    that ``a`` occupies and ``b`` does not would make the divergence infinite, and with a few
    hundred trials empty bins are sampling accidents, not evidence of disjoint support. The value
    therefore depends on ``bins`` and ``eps``; compare KLs only at equal settings.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    if np.ndim(bins) == 0:
        lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
        if hi <= lo:    # both samples are one identical value
            return 0.0
        edges = np.linspace(lo, hi, int(bins) + 1)
    else:
        edges = np.asarray(bins, float)
    p = np.histogram(a, edges)[0] / a.size + eps
    q = np.histogram(b, edges)[0] / b.size + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


# ---------------------------------------------------------------- τ
def auto_tau(results: pd.DataFrame, baseline: str, quantile: float = 0.5) -> float:
    """τ as the ``quantile`` (numpy's linear interpolation) of the baseline's final best val_acc.

    Each baseline replicate contributes its best val_acc over the whole run; τ is the
    ``quantile``-quantile over those replicates, so at the default 0.5 the baseline reaches τ in
    (at least) half of its seeds, and in general in a share of about ``1 − quantile``.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"tau_quantile must lie in [0, 1], but got {quantile=}")
    base = results[results["variant"] == baseline]
    if base.empty:
        raise ValueError(f"baseline variant {baseline!r} has no results; variants present: "
                         f"{sorted(results['variant'].dropna().unique())}")
    keys = [k for k in REPLICATE_KEYS if k in base.columns]
    finals = fill_keys(base).groupby(keys)["val_acc"].max().dropna().to_numpy(float)
    if finals.size == 0:
        raise ValueError(f"baseline variant {baseline!r} reported no finite val_acc")
    return float(np.quantile(finals, quantile))


def final_best_val(results: pd.DataFrame, variant: str) -> np.ndarray:
    """Each replicate's best val_acc for one variant (the sample ``auto_tau`` takes a quantile of)."""
    sub = fill_keys(results[results["variant"] == variant])
    keys = [k for k in REPLICATE_KEYS if k in sub.columns]
    return sub.groupby(keys)["val_acc"].max().dropna().to_numpy(float)


# ---------------------------------------------------------------- per replicate
def fill_keys(df: pd.DataFrame) -> pd.DataFrame:
    """Missing task/scheduler become "" so that groupby (which drops NaN keys) keeps the rows."""
    df = df.copy()
    for k in GROUP_KEYS:
        if k not in df.columns:
            df[k] = ""
        df[k] = df[k].astype(object).where(df[k].notna(), "").astype(str)
    return df


def trial_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its constants (warm start, x, x′, hyper-gradients, costs) and reach.

    The warm-start fields are constant over a trial's rows, so the first row (lowest epoch) is taken;
    ``max_epoch`` is the furthest epoch the trial reported and ``best_val_acc`` its best val_acc.
    """
    df = fill_keys(results)
    keys = list(REPLICATE_KEYS) + ["trial_id"]
    df = df.sort_values(keys + ["epoch"], kind="mergesort")
    const = [c for c in ["warm_start", "status", "ws_cost_s", "ws_flops", "plain_step_s"]
             + [f"{p}_{k}" for p in ("x", "xp", "hg") for k in PSI_KEYS] if c in df.columns]
    g = df.groupby(keys, sort=False)
    out = g[const].first()
    out["max_epoch"] = g["epoch"].max()
    out["best_val_acc"] = g["val_acc"].max()
    out["n_results"] = g.size()
    return out.reset_index()


def _replicate_info(replicates: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Replicates indexed by the keys they share with results (they carry no task by default)."""
    if replicates is None or replicates.empty:
        return [], pd.DataFrame()
    rep = replicates.copy()
    for k in GROUP_KEYS:
        if k in rep.columns:
            rep[k] = rep[k].astype(object).where(rep[k].notna(), "").astype(str)
    keys = [k for k in REPLICATE_KEYS if k in rep.columns]
    # A key seen twice (e.g. one sweep per task merged without a task column) keeps its first row.
    return keys, rep.drop_duplicates(keys).set_index(keys)


def per_replicate_metrics(results: pd.DataFrame, replicates: pd.DataFrame | None,
                          tau: float | Mapping[str, float], budget: float | None = None, *,
                          default_budget: float | None = None, n_workers: int | None = None,
                          show_progress: bool = False) -> pd.DataFrame:
    """One row per replicate (task, scheduler, variant, seed) with the benchmark's metrics.

    Args:
        results: results.parquet rows.
        replicates: replicates.parquet rows (budget_s, n_workers, n_trials, flops_total), or None.
        tau: target val_acc, one float or a mapping task -> τ.
        budget: if given, the budget (s) of every replicate. Otherwise each replicate's
            ``budget_s`` from ``replicates``, else ``default_budget``, else its last ``elapsed_s``.
        n_workers: workers when ``replicates`` does not say (default 1).
        show_progress: a tqdm bar over replicates.

    Returns:
        Columns: the replicate keys, ``warm_start``, ``tau``, ``budget_s``, ``n_workers``,
        ``t_tau_s``, ``censored``, ``t_tau_gpu_h`` (= t_tau_s · n_workers / 3600),
        ``best_val_acc``, ``incumbent_trial`` and ``final_test_acc`` (the trial with the highest
        val_acc, ties to whichever reached it first; its test_acc at its last epoch with one,
        NaN if it has none), ``auc`` (``normalized_auc``), ``ws_cost_s``, ``compute_s``
        (Σ epoch_time, which includes the warm start), ``ws_overhead_share`` (Σ ws_cost_s / compute_s),
        ``ws_flops``, ``flops_overhead_share`` (Σ ws_flops / (flops_total + Σ ws_flops), NaN
        unless both are known), ``n_trials``, ``n_results``, ``shift_<ψ>`` (mean |x′ − x| over
        trials) and ``hg_abs_<ψ>`` (median |∂J/∂ψ| over trials).
    """
    from tqdm.auto import tqdm

    keys = list(REPLICATE_KEYS)
    df = _with_columns(fill_keys(results))
    df = df.sort_values(keys + ["elapsed_s", "epoch"], kind="mergesort").reset_index(drop=True)
    index = df.groupby(keys, sort=True).indices
    reps = _replicate_frame(pd.DataFrame(list(index), columns=keys), replicates)

    # The time-dependent metrics need each replicate's rows in time order: a loop over numpy slices.
    # Everything per trial is aggregated by groupby below, which is far cheaper than per-replicate
    # pandas calls when a surrogate sweep has thousands of replicates.
    t_all, v_all = df["elapsed_s"].to_numpy(float), df["val_acc"].to_numpy(float)
    test_all, ep_all = df["test_acc"].to_numpy(float), df["epoch"].to_numpy(float)
    trial_all = df["trial_id"].to_numpy()
    loop = []
    for i, key in enumerate(tqdm(index, desc="replicates", disable=not show_progress, leave=False)):
        pos = index[key]
        t, v = t_all[pos], v_all[pos]
        b = _budget(budget, reps.at[i, "rep_budget_s"], default_budget, t)
        task_tau = float(tau[key[0]] if isinstance(tau, Mapping) else tau)
        t_tau, cens = _t_tau(t, v, task_tau, b)
        # Incumbent: rows are time-ordered, so argmax finds the first result at the top val_acc.
        within = np.isfinite(v) & (t <= b)
        inc, test_acc, best_val = -1, float("nan"), float("nan")
        if within.any():
            j = np.flatnonzero(within)[np.argmax(v[within])]
            inc, best_val = int(trial_all[pos][j]), float(v[j])
            mine = (trial_all[pos] == inc) & within & np.isfinite(test_all[pos])
            if mine.any():
                k = np.flatnonzero(mine)[np.argmax(ep_all[pos][mine])]
                test_acc = float(test_all[pos][k])
        loop.append({"tau": task_tau, "budget_s": b, "t_tau_s": t_tau, "censored": cens, "best_val_acc": best_val,
                     "incumbent_trial": inc, "final_test_acc": test_acc, "auc": _auc(t, v, b),
                     "n_results": len(pos)})
    if not loop:
        return pd.DataFrame(columns=keys + ["t_tau_s", "censored"])
    out = pd.concat([reps, pd.DataFrame(loop)], axis=1)

    tt = trial_table(df)
    for k in PSI_KEYS:
        tt[f"shift_{k}"] = (tt[f"xp_{k}"] - tt[f"x_{k}"]).abs()
        tt[f"hg_abs_{k}"] = tt[f"hg_{k}"].abs()
    g = tt.groupby(keys, sort=False)
    agg = pd.DataFrame({"warm_start": g["warm_start"].first(), "ws_cost_s": g["ws_cost_s"].sum(min_count=1),
                        "ws_flops": g["ws_flops"].sum(min_count=1), "n_trials_seen": g.size(),
                        **{f"shift_{k}": g[f"shift_{k}"].mean() for k in PSI_KEYS},
                        **{f"hg_abs_{k}": g[f"hg_abs_{k}"].median() for k in PSI_KEYS}}).reset_index()
    train = df.groupby(keys, sort=False)["epoch_time"].sum().rename("train_s").reset_index()
    out = out.merge(agg, on=keys, how="left").merge(train, on=keys, how="left")

    nw = out["rep_n_workers"].where(np.isfinite(out["rep_n_workers"]), n_workers if n_workers is not None else 1)
    out["n_workers"] = nw.astype("int64")
    out["t_tau_gpu_h"] = out["t_tau_s"] * out["n_workers"] / 3600.0
    out["warm_start"] = out["warm_start"].fillna("").astype(str)
    # epoch_time of a trial's first epoch already contains its warm start (real trials time it inside
    # the epoch; the surrogate backend adds it there too), so the warm start is not added twice
    out["compute_s"] = out["train_s"]
    out["ws_overhead_share"] = (out["ws_cost_s"] / out["compute_s"]).where(out["compute_s"] > 0)
    ftot = out["rep_flops_total"] + out["ws_flops"]
    out["flops_overhead_share"] = (out["ws_flops"] / ftot).where(ftot > 0)
    out["n_trials"] = out["rep_n_trials"].where(np.isfinite(out["rep_n_trials"]), out["n_trials_seen"]).astype("int64")
    cols = keys + ["warm_start", "tau", "budget_s", "n_workers", "t_tau_s", "censored", "t_tau_gpu_h",
                   "best_val_acc", "incumbent_trial", "final_test_acc", "auc", "ws_cost_s", "compute_s",
                   "ws_overhead_share", "ws_flops", "flops_overhead_share", "n_trials", "n_results"] \
        + [f"shift_{k}" for k in PSI_KEYS] + [f"hg_abs_{k}" for k in PSI_KEYS]
    return out[cols].astype({"censored": bool, "seed": "int64", "incumbent_trial": "int64"})


def _with_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Optional result columns absent from a hand-made frame read as unknown (NaN)."""
    need = ["test_acc", "epoch_time", "ws_cost_s", "ws_flops", "warm_start"] + \
        [f"{p}_{k}" for p in ("x", "xp", "hg") for k in PSI_KEYS]
    missing = [c for c in need if c not in df.columns]
    return df.assign(**{c: np.nan for c in missing}) if missing else df


_REP_FIELDS = ("budget_s", "n_workers", "n_trials", "flops_total")


def _replicate_frame(keys: pd.DataFrame, replicates: pd.DataFrame | None) -> pd.DataFrame:
    """Replicate keys (in loop order) with ``rep_<field>`` from replicates.parquet, NaN where unknown."""
    out = keys.copy()
    rep_keys, rep = _replicate_info(replicates)
    if rep_keys:
        have = [f for f in _REP_FIELDS if f in rep.columns]
        info = rep[have].apply(pd.to_numeric, errors="coerce").add_prefix("rep_").reset_index()
        out = out.merge(info, on=rep_keys, how="left")
    for f in _REP_FIELDS:
        if f"rep_{f}" not in out.columns:
            out[f"rep_{f}"] = np.nan
        out[f"rep_{f}"] = out[f"rep_{f}"].astype(float)
    return out.reset_index(drop=True)


def _finite_or(x, default):
    try:
        return float(x) if x is not None and math.isfinite(float(x)) else default
    except (TypeError, ValueError):
        return default


def _budget(budget, rep_budget: float, default_budget, t: np.ndarray) -> float:
    if budget is not None:
        return float(budget)
    b = _finite_or(rep_budget, _finite_or(default_budget, float("nan")))
    if math.isfinite(b) and b > 0:
        return b
    return float(np.nanmax(t)) if np.isfinite(t).any() else float("nan")


# ---------------------------------------------------------------- paired tests
def paired_wilcoxon(a: Iterable[float], b: Iterable[float]) -> WilcoxonResult:
    """Two-sided paired Wilcoxon signed-rank test of ``a − b`` (scipy.stats.wilcoxon).

    Pairs with a NaN are dropped. Zero differences are discarded before ranking
    (``zero_method='wilcox'``, scipy's default). Tied |differences| get average ranks; with ties or
    zeros scipy's ``method='auto'`` computes the p-value by exhaustive permutation for n ≤ 13 and
    by the tie-corrected normal approximation above. If every difference is zero there is no
    evidence of a difference: statistic 0, p = 1.0.

    Returns:
        ``WilcoxonResult(statistic, p, n)``: the smaller of the signed-rank sums, the p-value and
        the number of complete pairs (NaN statistic and p if there are none).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have equal length, but got {len(a)=} and {len(b)=}")
    ok = np.isfinite(a) & np.isfinite(b)
    # Differences are formed here, not by scipy, so that equal inputs give exact zeros and ties.
    d = a[ok] - b[ok]
    n = int(d.size)
    if n == 0:
        return WilcoxonResult(float("nan"), float("nan"), 0)
    if np.all(d == 0):
        return WilcoxonResult(0.0, 1.0, n)
    r = _st.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(float(r.statistic), float(r.pvalue), n)


def bootstrap_median_reduction(base: Iterable[float], var: Iterable[float], n_boot: int = 10000,
                               seed: int = 0) -> BootstrapResult:
    """Paired bootstrap of the relative reduction ``1 − median(var) / median(base)``.

    Seeds (pairs) are resampled with replacement, keeping each variant value with its baseline
    partner, ``n_boot`` times from ``np.random.default_rng(seed)``; the CI is the 2.5–97.5
    percentile interval of the resampled reductions. Deterministic given ``seed``.

    Returns:
        ``BootstrapResult(estimate, ci_low, ci_high, n)``; the estimate is on the full sample.
    """
    b, v = np.asarray(base, float), np.asarray(var, float)
    if b.shape != v.shape:
        raise ValueError(f"paired samples must have equal length, but got {len(b)=} and {len(v)=}")
    ok = np.isfinite(b) & np.isfinite(v)
    b, v = b[ok], v[ok]
    n = int(b.size)
    if n == 0:
        return BootstrapResult(float("nan"), float("nan"), float("nan"), 0)
    est = _reduction(np.median(b), np.median(v))
    if n_boot <= 0:
        return BootstrapResult(est, float("nan"), float("nan"), n)
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n))
    mb, mv = np.median(b[idx], axis=1), np.median(v[idx], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        red = np.where(mb != 0, 1.0 - mv / mb, np.nan)
    red = red[np.isfinite(red)]
    if red.size == 0:
        return BootstrapResult(est, float("nan"), float("nan"), n)
    lo, hi = np.percentile(red, [2.5, 97.5])
    return BootstrapResult(est, float(lo), float(hi), n)


def _reduction(med_base: float, med_var: float) -> float:
    return float(1.0 - med_var / med_base) if med_base != 0 else float("nan")


def paired(metrics: pd.DataFrame, baseline: str, columns: Iterable[str] = ("t_tau_s", "censored",
           "final_test_acc")) -> pd.DataFrame:
    """Each non-baseline replicate joined with the baseline replicate of its group and seed.

    Returns:
        Columns: the group keys, ``variant``, ``seed``, and ``base_<c>`` / ``var_<c>`` for each of
        ``columns``. Seeds that one side lacks are left out.
    """
    columns = list(columns)
    gk = [k for k in GROUP_KEYS if k in metrics.columns]
    base = metrics[metrics["variant"] == baseline][gk + ["seed"] + columns]
    var = metrics[metrics["variant"] != baseline][gk + ["variant", "seed"] + columns]
    out = var.merge(base, on=gk + ["seed"], suffixes=("_v", "_b"))
    ren = {f"{c}_v": f"var_{c}" for c in columns} | {f"{c}_b": f"base_{c}" for c in columns}
    return out.rename(columns=ren)


def compare_to_baseline(metrics: pd.DataFrame, baseline: str, n_boot: int = 10000,
                        seed: int = 0) -> pd.DataFrame:
    """Paired comparison of every variant with the baseline, within each (task, scheduler).

    Only seeds that both the variant and the baseline ran enter (``n``). Censored T@τ values stay
    at the budget.

    Returns:
        One row per (task, scheduler, variant): ``n``, ``n_censored_base``, ``n_censored_var``,
        ``t_tau_median_base`` / ``_var``, ``reduction`` (1 − median ratio) with bootstrap
        ``reduction_ci_low`` / ``_high`` (NaN when ``n_boot`` is 0), ``wilcoxon_stat``,
        ``wilcoxon_p``, ``test_acc_median_base`` / ``_var``, ``test_acc_drop`` (base − var),
        ``n_test_acc``, ``overhead_share`` (median over the variant's paired replicates),
        ``t_tau_std_base`` / ``_var`` (ddof 1) and ``std_ratio``.
    """
    cols = ["t_tau_s", "censored", "final_test_acc", "ws_overhead_share"]
    pr = paired(metrics, baseline, cols)
    gk = [k for k in GROUP_KEYS if k in metrics.columns]
    rows = []
    for key, g in pr.groupby(gk + ["variant"], sort=False):
        kd = dict(zip(gk + ["variant"], key))
        tb, tv = g["base_t_tau_s"].to_numpy(float), g["var_t_tau_s"].to_numpy(float)
        w = paired_wilcoxon(tv, tb)
        bs = bootstrap_median_reduction(tb, tv, n_boot=n_boot, seed=seed)
        ab, av = median_iqr(g["base_final_test_acc"]), median_iqr(g["var_final_test_acc"])
        sb = float(np.std(tb, ddof=1)) if len(tb) > 1 else float("nan")
        sv = float(np.std(tv, ddof=1)) if len(tv) > 1 else float("nan")
        rows.append({**kd, "n": len(g),
                     "n_censored_base": int(g["base_censored"].sum()),
                     "n_censored_var": int(g["var_censored"].sum()),
                     "t_tau_median_base": float(np.median(tb)), "t_tau_median_var": float(np.median(tv)),
                     "reduction": bs.estimate, "reduction_ci_low": bs.ci_low, "reduction_ci_high": bs.ci_high,
                     "wilcoxon_stat": w.statistic, "wilcoxon_p": w.p,
                     "test_acc_median_base": ab.median, "test_acc_median_var": av.median,
                     "test_acc_drop": ab.median - av.median,
                     "n_test_acc": int((g["base_final_test_acc"].notna() & g["var_final_test_acc"].notna()).sum()),
                     "overhead_share": median_iqr(g["var_ws_overhead_share"]).median,
                     "t_tau_std_base": sb, "t_tau_std_var": sv, "std_ratio": _std_ratio(sv, sb)})
    return pd.DataFrame(rows)


def _std_ratio(sv: float, sb: float) -> float:
    if not (math.isfinite(sv) and math.isfinite(sb)):
        return float("nan")
    if sb == 0:
        # No baseline spread: any variant spread is an unbounded inflation, none is no inflation.
        return 1.0 if sv == 0 else float("inf")
    return sv / sb


# ---------------------------------------------------------------- verdict
def verdict(metrics: pd.DataFrame, baseline: str, *, comparison: pd.DataFrame | None = None,
            min_reduction: float = 0.15, alpha: float = 0.05, max_test_acc_drop: float = 0.002,
            max_overhead_share: float = 0.05, max_std_ratio: float = 1.10) -> pd.DataFrame:
    """Each variant against the pre-registered success criteria (``CRITERIA``).

    1. ``t_tau_reduction``: 1 − median(T@τ var)/median(T@τ base) ≥ ``min_reduction`` and paired
       Wilcoxon p < ``alpha``;
    2. ``test_acc_drop``: median(base) − median(var) final test accuracy ≤ ``max_test_acc_drop``
       (0.002 = 0.2 percentage points, accuracies being fractions);
    3. ``overhead_share``: median warm-start share of trial compute ≤ ``max_overhead_share``;
    4. ``t_tau_std_ratio``: std(T@τ var)/std(T@τ base) ≤ ``max_std_ratio``.

    Boundaries pass (to within 1e-9). A criterion whose value cannot be computed (too few pairs,
    no test accuracies, no warm-start costs) fails, with a note. All values are over the paired
    seeds of the variant's (task, scheduler) group.

    Args:
        comparison: the output of ``compare_to_baseline`` if already computed (no bootstrap needed).

    Returns:
        One row per (task, scheduler, variant, criterion) with ``value``, ``threshold``, ``pass``,
        ``n``, ``p`` (criterion 1 only), ``n_censored_base``, ``n_censored_var`` and ``note``; plus a
        criterion ``overall`` per variant whose value counts the criteria passed and whose
        ``pass`` is all four.
    """
    cmp = compare_to_baseline(metrics, baseline, n_boot=0) if comparison is None else comparison
    gk = [k for k in GROUP_KEYS if k in cmp.columns]
    rows = []
    for _, c in cmp.iterrows():
        base = {**{k: c[k] for k in gk}, "variant": c["variant"], "n": int(c["n"]),
                "n_censored_base": int(c["n_censored_base"]), "n_censored_var": int(c["n_censored_var"])}
        red, p = float(c["reduction"]), float(c["wilcoxon_p"])
        crit = [
            ("t_tau_reduction", red, min_reduction, _ge(red, min_reduction) and p < alpha, p,
             "" if math.isfinite(p) else "no paired seeds"),
            ("test_acc_drop", float(c["test_acc_drop"]), max_test_acc_drop,
             _le(c["test_acc_drop"], max_test_acc_drop), float("nan"),
             "" if math.isfinite(c["test_acc_drop"]) else "no final test accuracy"),
            ("overhead_share", float(c["overhead_share"]), max_overhead_share,
             _le(c["overhead_share"], max_overhead_share), float("nan"),
             "" if math.isfinite(c["overhead_share"]) else "no warm-start cost recorded"),
            ("t_tau_std_ratio", float(c["std_ratio"]), max_std_ratio, _le(c["std_ratio"], max_std_ratio),
             float("nan"), "" if not math.isnan(c["std_ratio"]) else "fewer than 2 paired seeds"),
        ]
        for name, value, thr, ok, pv, note in crit:
            rows.append({**base, "criterion": name, "value": value, "threshold": thr, "pass": bool(ok),
                         "p": pv, "note": note})
        n_pass = sum(bool(x[3]) for x in crit)
        rows.append({**base, "criterion": "overall", "value": float(n_pass), "threshold": float(len(crit)),
                     "pass": n_pass == len(crit), "p": float("nan"), "note": f"{n_pass} of {len(crit)} criteria"})
    cols = gk + ["variant", "criterion", "value", "threshold", "pass", "n", "p", "n_censored_base",
                 "n_censored_var", "note"]
    return pd.DataFrame(rows, columns=cols)


def _ge(x, thr) -> bool:
    return bool(math.isfinite(float(x)) and float(x) >= thr - _TOL)


def _le(x, thr) -> bool:
    x = float(x)
    return bool(not math.isnan(x) and x <= thr + _TOL)


# ---------------------------------------------------------------- warm-start specs
def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"hypergradient:eta=0.001,steps=1"`` -> ``("hypergradient", {"eta": "0.001", "steps": "1"})``.

    A lenient reader for results already written (unknown options are kept, not rejected), unlike
    ``WarmStart.parse`` which validates specs before a run.
    """
    kind, _, rest = str(spec).strip().partition(":")
    opts = dict(m.groups() for m in re.finditer(r"\s*([A-Za-z_]\w*)\s*=\s*([^,]*)", rest))
    return kind.strip(), {k: v.strip() for k, v in opts.items()}
