"""Statistics of a sweep: per-replicate metrics, paired tests against the baseline, the verdict.

Pure functions on DataFrames from the results store (``ohgw_bench.store``); no plotting, no I/O.

Conventions used throughout:

- A *replicate* is one HPO run, keyed by ``REPLICATE_KEYS`` = (task, scheduler, variant, seed).
  Variants are compared with the baseline of the same (task, scheduler) on the same seed
  ("paired": the same seed samples the same configurations).
- Only results that arrived within the replicate's budget (``elapsed_s <= budget``) count.
- T@τ of a replicate that never reaches τ is *right-censored* at the replicate's budget: all we
  know is T@τ > budget. It is never dropped (that would flatter whichever variant fails more
  often), and never averaged or ranked as if the budget were its value: per arm, Kaplan–Meier
  estimates (``km_summary``); between arms, the reduction of the KM median with a paired bootstrap
  CI and a paired permutation test of that same reduction (the verdict's effect and test), the
  log-rank test and a paired sign test on which arm reached τ
  first. Every T@τ statistic is reported with its number of censored replicates.
- Accuracies are fractions in [0, 1].
"""
from __future__ import annotations

import math
import re
import warnings
from typing import Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..config import DEFAULT_TAU_QUANTILE
from ..space import PSI_KEYS

REPLICATE_KEYS: tuple[str, ...] = ("task", "scheduler", "variant", "seed")
GROUP_KEYS: tuple[str, ...] = ("task", "scheduler")   # a baseline is paired within one group
# Boundaries of the pre-registered criteria count as passing ("≥ 15 %" includes 15 %), but
# 1 − 85/100 or 0.900 − 0.898 miss them by one ulp in floating point; this absorbs that.
_TOL = 1e-9

# The seed-spread criterion compares stds over the pairs in which both arms reached τ; below this
# many such pairs a std ratio is noise and the criterion is undecidable.
MIN_UNCENSORED_PAIRS = 10

CRITERIA: dict[str, str] = {
    "t_tau_reduction": "≥15 % lower Kaplan–Meier median T@τ than the baseline, with p < 0.05 in the paired "
                       "permutation test of that same reduction",
    "test_acc_drop": "≤0.2 percentage-point drop in median final test accuracy",
    "overhead_share": "≤5 % extra compute (median warm-start share of trial compute)",
    "t_tau_std_ratio": "seed std of T@τ not inflated by more than 10 % (std(var)/std(base) ≤ 1.10 over the "
                       f"seed pairs in which both arms reached τ; at least {MIN_UNCENSORED_PAIRS} such pairs)",
}


class KMSummary(NamedTuple):
    median: float       # inf: not reached within the budget
    ci_low: float
    ci_high: float
    q25: float
    q75: float
    n: int
    n_censored: int


class MedianReduction(NamedTuple):
    estimate: float     # 1 − KM median(var) / KM median(base)
    ci_low: float
    ci_high: float
    p: float            # two-sided paired permutation p-value of "reduction = 0"
    n: int              # seed pairs
    n_boot: int
    undecidable: str    # why the reduction cannot be estimated; "" when it can


class SignTest(NamedTuple):
    n_var_first: int    # pairs in which the variant reached τ first
    n_base_first: int
    n_ties: int         # both censored, or equal times: left out of the test
    p: float            # exact two-sided binomial test, p = 1/2 under the null


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
def auto_tau(results: pd.DataFrame, baseline: str, quantile: float = DEFAULT_TAU_QUANTILE, *,
             budget: float | None = None, replicates: pd.DataFrame | None = None) -> float:
    """τ as the ``quantile`` (numpy's linear interpolation) of the baseline's best val_acc within budget.

    Each baseline replicate contributes its best val_acc among the results inside its budget (a
    result after the budget cannot count for T@τ, so it must not set τ either); τ is the
    ``quantile``-quantile over those replicates, so the baseline reaches τ within the budget in a
    share of about ``1 − quantile`` of its seeds (three in four at the default).

    Args:
        budget: every replicate's budget (s); else each replicate's ``budget_s`` from
            ``replicates``; with neither, all results count.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"tau_quantile must lie in [0, 1], but got {quantile=}")
    if not (results["variant"] == baseline).any():
        raise ValueError(f"baseline variant {baseline!r} has no results; variants present: "
                         f"{sorted(results['variant'].dropna().unique())}")
    finals = final_best_val(results, baseline, budget=budget, replicates=replicates)
    if finals.size == 0:
        raise ValueError(f"baseline variant {baseline!r} reported no finite val_acc within the budget")
    return float(np.quantile(finals, quantile))


def final_best_val(results: pd.DataFrame, variant: str, *, budget: float | None = None,
                   replicates: pd.DataFrame | None = None) -> np.ndarray:
    """Each replicate's best val_acc within its budget for one variant (what ``auto_tau`` ranks)."""
    sub = fill_keys(results[results["variant"] == variant])
    keys = [k for k in REPLICATE_KEYS if k in sub.columns]
    if budget is not None:
        sub = sub[sub["elapsed_s"].to_numpy(float) <= float(budget)]
    elif replicates is not None and not replicates.empty and "budget_s" in replicates.columns \
            and "elapsed_s" in sub.columns:
        rep_keys, rep = _replicate_info(replicates)
        if rep_keys:
            b = sub.merge(rep[["budget_s"]].reset_index(), on=rep_keys, how="left")["budget_s"].to_numpy(float)
            t = sub["elapsed_s"].to_numpy(float)
            sub = sub[~np.isfinite(b) | (t <= b)]
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
    keys = list(REPLICATE_KEYS)
    df = _with_columns(fill_keys(results))
    df = df.sort_values(keys + ["elapsed_s", "epoch"], kind="mergesort").reset_index(drop=True)
    index = df.groupby(keys, sort=True).indices
    reps = _replicate_frame(pd.DataFrame(list(index), columns=keys), replicates)

    loop = _time_metrics(df, index, reps, tau, budget, default_budget, show_progress)
    if not loop:
        return pd.DataFrame(columns=keys + ["t_tau_s", "censored"])
    out = pd.concat([reps, pd.DataFrame(loop)], axis=1)
    train = df.groupby(keys, sort=False)["epoch_time"].sum().rename("train_s").reset_index()
    out = out.merge(_trial_aggregates(df, keys), on=keys, how="left").merge(train, on=keys, how="left")

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


def _time_metrics(df: pd.DataFrame, index: dict, reps: pd.DataFrame, tau, budget, default_budget,
                  show_progress: bool) -> list[dict]:
    """The time-dependent metrics of each replicate (``index``: key -> row positions in ``df``, sorted
    by time). They need each replicate's rows in time order: a loop over numpy slices. Everything per
    trial is aggregated by groupby (``_trial_aggregates``), which is far cheaper than per-replicate
    pandas calls when a surrogate sweep has thousands of replicates."""
    from tqdm.auto import tqdm

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
    return loop


def _trial_aggregates(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per replicate: warm-start spec, cost and FLOPs summed over trials, trials seen, mean |x′ − x| and
    median |∂J/∂ψ| over trials."""
    tt = trial_table(df)
    for k in PSI_KEYS:
        tt[f"shift_{k}"] = (tt[f"xp_{k}"] - tt[f"x_{k}"]).abs()
        tt[f"hg_abs_{k}"] = tt[f"hg_{k}"].abs()
    g = tt.groupby(keys, sort=False)
    return pd.DataFrame({"warm_start": g["warm_start"].first(), "ws_cost_s": g["ws_cost_s"].sum(min_count=1),
                         "ws_flops": g["ws_flops"].sum(min_count=1), "n_trials_seen": g.size(),
                         **{f"shift_{k}": g[f"shift_{k}"].mean() for k in PSI_KEYS},
                         **{f"hg_abs_{k}": g[f"hg_abs_{k}"].median() for k in PSI_KEYS}}).reset_index()


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


# ---------------------------------------------------------------- censored T@τ: one arm
def km_summary(times: Iterable[float], censored: Iterable[bool], confidence: float = 0.95) -> KMSummary:
    """Kaplan–Meier summary of one arm's T@τ (``scipy.stats.ecdf`` on ``scipy.stats.CensoredData``).

    A quantile q is the smallest time at which the estimated survival S(t) = P(T@τ > t) falls to
    ``1 − q`` or below; where S never falls that far (too many replicates censored) it is ``inf``:
    "not reached within the budget". The median's CI inverts the pointwise log-log confidence band
    of S (Brookmeyer–Crowley style): from the first time the upper band reaches 0.5 to the first
    time the lower band does.

    Returns:
        ``KMSummary(median, ci_low, ci_high, q25, q75, n, n_censored)``; NaN everywhere if n = 0.
    """
    t, c = _clean_arm(times, censored)
    if t.size == 0:
        nan = float("nan")
        return KMSummary(nan, nan, nan, nan, nan, 0, 0)
    if not (~c).any():   # nothing reached τ: every quantile lies beyond the budget
        inf = float("inf")
        return KMSummary(inf, inf, inf, inf, inf, int(t.size), int(c.sum()))
    res = _st.ecdf(_st.CensoredData(uncensored=t[~c], right=t[c]))
    sf = res.sf
    with warnings.catch_warnings():   # the log-log band is undefined where S is 0 or 1: NaN there, read as 1
        warnings.simplefilter("ignore", RuntimeWarning)
        band = sf.confidence_interval(confidence, method="log-log")

    q, s = sf.quantiles, sf.probabilities

    def first_at_or_below(x: np.ndarray, p: np.ndarray, level: float) -> float:
        # the band is NaN only where S itself is 0 or 1, and there it collapses onto S
        p = np.where(np.isnan(p), s, p) if p.shape == s.shape else np.nan_to_num(p, nan=1.0)
        hit = np.flatnonzero(p <= level + _TOL)
        return float(x[hit[0]]) if hit.size else float("inf")

    # the lower band of S reaches 0.5 first: it bounds the median from below, the upper band from above
    return KMSummary(first_at_or_below(q, s, 0.5), first_at_or_below(band.low.quantiles, band.low.probabilities, 0.5),
                     first_at_or_below(band.high.quantiles, band.high.probabilities, 0.5),
                     first_at_or_below(q, s, 0.75), first_at_or_below(q, s, 0.25), int(t.size), int(c.sum()))


def km_quantile_batch(times: np.ndarray, censored: np.ndarray, q: float = 0.5) -> np.ndarray:
    """The Kaplan–Meier q-quantile of every row of ``times`` at once (``inf`` where not reached).

    The same estimator as ``km_summary`` (checked against scipy in the tests), vectorised over the
    leading axes so that a paired bootstrap of thousands of resamples costs one sort. At tied times
    events come before censorings, as in the Kaplan–Meier convention; then
    S after the i-th sorted value = Π over events j ≤ i of (1 − 1/(n − j)).
    """
    t = np.asarray(times, float)
    c = np.asarray(censored, bool)
    n = t.shape[-1]
    order = np.lexsort((c, t), axis=-1)
    ts, cs = np.take_along_axis(t, order, -1), np.take_along_axis(c, order, -1)
    at_risk = n - np.arange(n)
    with np.errstate(divide="ignore"):
        log_factor = np.where(cs, 0.0, np.log1p(-1.0 / at_risk))
    surv = np.exp(np.cumsum(log_factor, axis=-1))
    below = surv <= (1.0 - q) + _TOL
    first = np.argmax(below, axis=-1)
    out = np.take_along_axis(ts, first[..., None], -1)[..., 0]
    return np.where(below.any(axis=-1), out, np.inf)


def _clean_arm(times, censored) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, float)
    c = np.asarray(censored, bool)
    if t.shape != c.shape:
        raise ValueError(f"times and censored must have equal length, but got {t.shape} and {c.shape}")
    ok = np.isfinite(t)
    return t[ok], c[ok]


# ---------------------------------------------------------------- censored T@τ: two arms, paired by seed
def _paired_arms(base_t, base_c, var_t, var_c):
    bt, bc, vt, vc = (np.asarray(x) for x in (base_t, base_c, var_t, var_c))
    if not (bt.shape == bc.shape == vt.shape == vc.shape):
        raise ValueError(f"paired arms must have equal length, but got {bt.shape}, {bc.shape}, {vt.shape}, {vc.shape}")
    ok = np.isfinite(bt.astype(float)) & np.isfinite(vt.astype(float))
    return bt[ok].astype(float), bc[ok].astype(bool), vt[ok].astype(float), vc[ok].astype(bool)


def _reduction(med_base, med_var):
    """1 − med_var / med_base, elementwise, with "not reached" (inf) medians ordered as the longest:
    neither arm reached → 0 (no difference), only the variant → 1, only the baseline → −inf."""
    mb, mv = np.asarray(med_base, float), np.asarray(med_var, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 1.0 - mv / mb
    r = np.where(np.isinf(mb) & np.isinf(mv), 0.0, r)
    return np.where(np.isinf(mb) & np.isfinite(mv), 1.0, r)


def paired_median_reduction(base_t, base_c, var_t, var_c, n_boot: int = 10000, seed: int = 0,
                            alpha: float = 0.05, n_perm: int | None = None) -> MedianReduction:
    """Reduction of the Kaplan–Meier median T@τ, ``1 − median(var) / median(base)``, with a paired
    bootstrap CI and a paired permutation test of the same statistic.

    - CI: seeds are resampled with replacement, each variant replicate staying with its baseline
      partner, ``n_boot`` times; each resample's two KM medians give one reduction r*; the CI is the
      k-th smallest and k-th largest r*, k = ⌈(α/2)·n_boot⌉.
    - Test: under "the warm start changes nothing" the two replicates of a seed are exchangeable, so
      swapping the arms within random pairs (``n_perm`` sign flips, all 2^n when that is fewer) gives
      the null distribution of |log(median(var) / median(base))|; two-sided mid-p
      p = (#(s* > s) + ½·#(s* = s)) / #swaps, the observed assignment counted among the swaps. It is
      valid at every n without asymptotics (4 pairs all halved give p = 1/16: no more than the pairs
      can show), and it judges the very statistic the effect reports, so effect and test answer one
      question. Ties count half because KM medians of clumped T@τ tie often (docs/statistics.md).
    Both use ``np.random.default_rng(seed)``: deterministic. A median that is not reached (half or
    more of an arm censored) counts as longer than any reached one in resamples; on the full sample
    it makes the reduction undecidable (estimate NaN, ``undecidable`` says why).
    """
    bt, bc, vt, vc = _paired_arms(base_t, base_c, var_t, var_c)
    n = int(bt.size)
    nan = float("nan")
    if n == 0:
        return MedianReduction(nan, nan, nan, nan, 0, 0, "no paired seeds")
    mb, mv, why = _km_medians(bt, bc, vt, vc)
    if why:
        return MedianReduction(nan, nan, nan, nan, n, 0, why)
    est = float(_reduction(mb, mv))
    if n_boot <= 0:
        return MedianReduction(est, nan, nan, nan, n, 0, "")
    rng = np.random.default_rng(seed)
    lo, hi = percentile_ci(_bootstrap_reductions(bt, bc, vt, vc, int(n_boot), rng), alpha)
    n_perm = int(n_boot if n_perm is None else n_perm)
    if 2 ** n <= n_perm:   # every assignment of the arms within pairs: the exact null distribution
        flip = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(bool)
    else:
        flip = rng.random((n_perm, n)) < 0.5
    pb_t, pv_t = np.where(flip, vt, bt), np.where(flip, bt, vt)
    pb_c, pv_c = np.where(flip, vc, bc), np.where(flip, bc, vc)
    null = _abs_log_ratio(km_quantile_batch(pb_t, pb_c), km_quantile_batch(pv_t, pv_c))
    obs = float(_abs_log_ratio(mb, mv))
    if len(null) != 2 ** n:   # a random subset of swaps: the observed assignment is one of them
        null = np.append(null, obs)
    # mid-p: ties with the observed value count half. KM medians of clumped T@τ tie often, and
    # counting ties whole made the test reject half as often as its nominal level (docs/statistics.md)
    above = int((null > obs + 1e-12).sum())
    ties = int(((np.abs(null - obs) <= 1e-12) | (np.isinf(null) & np.isinf(obs))).sum())
    p = (above + 0.5 * ties) / len(null)
    return MedianReduction(est, lo, hi, float(p), n, int(n_boot), "")


def _bootstrap_reductions(bt, bc, vt, vc, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` reductions of the KM median, each on seed pairs resampled with replacement."""
    idx = rng.integers(0, bt.size, size=(n_boot, bt.size))
    return _reduction(km_quantile_batch(bt[idx], bc[idx]), km_quantile_batch(vt[idx], vc[idx]))


def reduction_difference(first, second, n_boot: int = 10000, seed: int = 0,
                         alpha: float = 0.05) -> tuple[float, float, float]:
    """Difference ``r_second − r_first`` of the KM-median reductions of two independent paired
    experiments (the same variant on a task with clean and one with noisy labels), with a percentile
    CI from independent paired-bootstrap resamples of each (the resampling of
    ``paired_median_reduction``'s CI). ``first``, ``second``: ``(base_t, base_c, var_t, var_c)``.

    Returns ``(estimate, ci_low, ci_high)``; NaN where an experiment has no pairs or its median
    reduction is not estimable (an arm censored half the time or more).
    """
    rng = np.random.default_rng(seed)
    est, draws = [], []
    for arms in (first, second):
        bt, bc, vt, vc = _paired_arms(*arms)
        if bt.size == 0 or n_boot <= 0:
            return float("nan"), float("nan"), float("nan")
        mb, mv, why = _km_medians(bt, bc, vt, vc)
        if why:
            return float("nan"), float("nan"), float("nan")
        est.append(float(_reduction(mb, mv)))
        draws.append(_bootstrap_reductions(bt, bc, vt, vc, int(n_boot), rng))
    with np.errstate(invalid="ignore"):
        d = draws[1] - draws[0]
    # −inf − (−inf): both resamples lost the baseline median; no difference to order
    return (est[1] - est[0], *percentile_ci(d[~np.isnan(d)], alpha))


def _km_medians(bt, bc, vt, vc) -> tuple[float, float, str]:
    """Both arms' KM median T@τ and, when either is not reached (half or more of the arm censored),
    why the reduction between them is not estimable ("" when it is)."""
    mb, mv = float(km_quantile_batch(bt, bc)), float(km_quantile_batch(vt, vc))
    why = [f"{name}: {int(c.sum())} of {c.size} replicates never reach τ, so its median T@τ is not estimable"
           for name, m, c in (("baseline", mb, bc), ("variant", mv, vc)) if not math.isfinite(m)]
    return mb, mv, "; ".join(why)


def percentile_ci(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of bootstrap draws: the k-th smallest and k-th largest, k = ⌈(α/2)·n⌉
    (NaN, NaN without draws)."""
    d = np.sort(np.asarray(draws, float))
    if d.size == 0:
        return float("nan"), float("nan")
    k = max(1, int(math.ceil(alpha / 2 * d.size)))
    return float(d[k - 1]), float(d[d.size - k])


def _abs_log_ratio(med_base, med_var):
    """|log(median var / median base)|: the swap-symmetric form of the reduction, 0 when both medians
    are not reached, inf when only one is."""
    mb, mv = np.asarray(med_base, float), np.asarray(med_var, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.abs(np.log(mv / mb))
    return np.where(np.isinf(mb) & np.isinf(mv), 0.0, np.where(np.isinf(mb) ^ np.isinf(mv), np.inf, s))


def logrank(base_t, base_c, var_t, var_c) -> tuple[float, float]:
    """Two-sided log-rank test of equal T@τ survival curves (``scipy.stats.logrank``); ignores pairing.

    Returns ``(statistic, p)``; NaN when an arm is empty or neither arm has an event.
    """
    bt, bc, vt, vc = _paired_arms(base_t, base_c, var_t, var_c)
    if bt.size == 0 or (bc.all() and vc.all()):
        return float("nan"), float("nan")
    r = _st.logrank(_st.CensoredData(uncensored=vt[~vc], right=vt[vc]),
                    _st.CensoredData(uncensored=bt[~bc], right=bt[bc]))
    return float(r.statistic), float(r.pvalue)


def paired_sign_test(base_t, base_c, var_t, var_c, base_budget=None, var_budget=None) -> SignTest:
    """Which arm of each seed pair reached τ first; exact two-sided binomial test on the decided pairs.

    A pair is decided when both reached τ at different times, or when one reached τ before the
    other's budget ran out without it. Both censored, equal times, or one censored before the
    other's finish: a tie, left out of the test (the sign test's usual handling of zeros).
    Budgets default to each censored replicate's own T@τ (a censored T@τ is the budget).
    """
    ok = np.isfinite(np.asarray(base_t, float)) & np.isfinite(np.asarray(var_t, float))
    bt, bc, vt, vc = _paired_arms(base_t, base_c, var_t, var_c)
    bb = bt if base_budget is None else np.asarray(base_budget, float)[ok]
    vb = vt if var_budget is None else np.asarray(var_budget, float)[ok]
    var_first = (~vc & ((bc & (vt <= bb)) | (~bc & (vt < bt))))
    base_first = (~bc & ((vc & (bt <= vb)) | (~vc & (bt < vt))))
    wins, losses = int(var_first.sum()), int(base_first.sum())
    ties = int(bt.size) - wins - losses
    p = float(_st.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else float("nan")
    return SignTest(wins, losses, ties, p)


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


def uncensored_pair_spread(base_t, base_c, var_t, var_c) -> tuple[float, float, int]:
    """Seed std (ddof 1) of T@τ of each arm over the pairs in which *both* arms reached τ.

    Censored values sit at the budget and would shrink any spread computed with them; restricted to
    pairs that both finished, censoring cannot shrink it, and the two stds stay paired.
    Returns ``(std_base, std_var, n_pairs)``.
    """
    bt, bc, vt, vc = _paired_arms(base_t, base_c, var_t, var_c)
    both = ~bc & ~vc
    n = int(both.sum())
    if n < 2:
        return float("nan"), float("nan"), n
    return float(np.std(bt[both], ddof=1)), float(np.std(vt[both], ddof=1)), n


def compare_to_baseline(metrics: pd.DataFrame, baseline: str, n_boot: int = 10000, seed: int = 0,
                        alpha: float = 0.05) -> pd.DataFrame:
    """Paired comparison of every variant with the baseline, within each (task, scheduler).

    Only seeds that both the variant and the baseline ran enter (``n``). T@τ is right-censored at
    each replicate's budget and treated so throughout (``km_summary``, ``paired_median_reduction``,
    ``logrank``, ``paired_sign_test``, ``uncensored_pair_spread``).

    Returns:
        One row per (task, scheduler, variant): ``n``, ``n_censored_base`` / ``_var``; per arm the
        KM median T@τ with its CI and quartiles (``t_tau_median_base``, ``t_tau_median_ci_low_base``,
        ``..._high_base``, ``t_tau_q25_base``, ``t_tau_q75_base``, and ``_var``); ``reduction`` of
        the KM median with paired-bootstrap ``reduction_ci_low`` / ``_high`` and the paired permutation
        test's ``p_value`` (``n_boot`` resamples and permutations; 0: NaN), ``undecidable`` (why the reduction cannot be estimated, or
        ""); ``logrank_stat``, ``logrank_p``; ``n_var_first``, ``n_base_first``, ``n_ties``,
        ``sign_p``; ``test_acc_median_base`` / ``_var``, ``test_acc_drop`` (base − var),
        ``n_test_acc``; ``overhead_share`` (median over the variant's paired replicates);
        ``t_tau_std_base`` / ``_var`` over pairs that both reached τ, ``n_uncensored_pairs`` and
        ``std_ratio``.
    """
    cols = ["t_tau_s", "censored", "final_test_acc", "ws_overhead_share", "budget_s"]
    pr = paired(metrics, baseline, [c for c in cols if c in metrics.columns])
    gk = [k for k in GROUP_KEYS if k in metrics.columns]
    rows = []
    for key, g in pr.groupby(gk + ["variant"], sort=False):
        kd = dict(zip(gk + ["variant"], key))
        tb, cb = g["base_t_tau_s"].to_numpy(float), g["base_censored"].to_numpy(bool)
        tv, cv = g["var_t_tau_s"].to_numpy(float), g["var_censored"].to_numpy(bool)
        kb, kv = km_summary(tb, cb), km_summary(tv, cv)
        red = paired_median_reduction(tb, cb, tv, cv, n_boot=n_boot, seed=seed, alpha=alpha)
        lr = logrank(tb, cb, tv, cv)
        budgets = {f"{a}_budget": g[f"{a}_budget_s"].to_numpy(float) for a in ("base", "var")
                   if f"{a}_budget_s" in g.columns}
        st = paired_sign_test(tb, cb, tv, cv, **budgets)
        sb, sv, n_unc = uncensored_pair_spread(tb, cb, tv, cv)
        ab, av = median_iqr(g["base_final_test_acc"]), median_iqr(g["var_final_test_acc"])
        arm = {}
        for suffix, k in (("base", kb), ("var", kv)):
            arm |= {f"t_tau_median_{suffix}": k.median, f"t_tau_median_ci_low_{suffix}": k.ci_low,
                    f"t_tau_median_ci_high_{suffix}": k.ci_high, f"t_tau_q25_{suffix}": k.q25,
                    f"t_tau_q75_{suffix}": k.q75}
        rows.append({**kd, "n": len(g), "n_censored_base": int(cb.sum()), "n_censored_var": int(cv.sum()), **arm,
                     "reduction": red.estimate, "reduction_ci_low": red.ci_low, "reduction_ci_high": red.ci_high,
                     "p_value": red.p, "n_boot": red.n_boot, "undecidable": red.undecidable,
                     "logrank_stat": lr[0], "logrank_p": lr[1],
                     "n_var_first": st.n_var_first, "n_base_first": st.n_base_first, "n_ties": st.n_ties,
                     "sign_p": st.p,
                     "test_acc_median_base": ab.median, "test_acc_median_var": av.median,
                     "test_acc_drop": ab.median - av.median,
                     "n_test_acc": int((g["base_final_test_acc"].notna() & g["var_final_test_acc"].notna()).sum()),
                     "overhead_share": median_iqr(g["var_ws_overhead_share"]).median,
                     "t_tau_std_base": sb, "t_tau_std_var": sv, "n_uncensored_pairs": n_unc,
                     "std_ratio": _std_ratio(sv, sb)})
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
            max_overhead_share: float = 0.05, max_std_ratio: float = 1.10,
            min_uncensored_pairs: int = MIN_UNCENSORED_PAIRS) -> pd.DataFrame:
    """Each variant against the pre-registered success criteria (``CRITERIA``).

    1. ``t_tau_reduction``: reduction of the Kaplan–Meier median T@τ ≥ ``min_reduction`` and the
       paired permutation test of that reduction p < ``alpha``;
       undecidable when an arm's median is not reached within the budget;
    2. ``test_acc_drop``: median(base) − median(var) final test accuracy ≤ ``max_test_acc_drop``
       (0.002 = 0.2 percentage points, accuracies being fractions);
    3. ``overhead_share``: median warm-start share of trial compute ≤ ``max_overhead_share``;
    4. ``t_tau_std_ratio``: std(T@τ var)/std(T@τ base) over the seed pairs in which both arms
       reached τ ≤ ``max_std_ratio``; undecidable with fewer than ``min_uncensored_pairs`` such pairs.

    Boundaries pass (to within 1e-9). Each row's ``decision`` is ``pass``, ``fail`` or
    ``undecidable`` (a value that cannot be estimated from these data: the note says why); ``pass``
    is True only for ``pass``. The ``overall`` row passes when all four pass, is undecidable when
    none fails but one is undecidable, and fails otherwise.

    Args:
        comparison: the output of ``compare_to_baseline`` if already computed. Without it the
            comparison is computed with 2000 bootstrap resamples (the test needs them).
    """
    cmp = compare_to_baseline(metrics, baseline, n_boot=2000, alpha=alpha) if comparison is None else comparison
    gk = [k for k in GROUP_KEYS if k in cmp.columns]
    rows = []
    for _, c in cmp.iterrows():
        base = {**{k: c[k] for k in gk}, "variant": c["variant"], "n": int(c["n"]),
                "n_censored_base": int(c["n_censored_base"]), "n_censored_var": int(c["n_censored_var"])}
        red, p = float(c["reduction"]), float(c["p_value"])
        if c["undecidable"]:
            t1 = ("undecidable", str(c["undecidable"]))
        elif not math.isfinite(p):
            t1 = ("undecidable", "no bootstrap test was run (n_boot = 0)")
        else:
            t1 = (_decide(_ge(red, min_reduction) and p < alpha), "")
        drop, share, ratio = float(c["test_acc_drop"]), float(c["overhead_share"]), float(c["std_ratio"])
        n_unc = int(c["n_uncensored_pairs"])
        crit = [
            ("t_tau_reduction", red, min_reduction, *t1, p),
            ("test_acc_drop", drop, max_test_acc_drop,
             *((_decide(_le(drop, max_test_acc_drop)), "") if math.isfinite(drop)
               else ("undecidable", "no final test accuracy")), float("nan")),
            ("overhead_share", share, max_overhead_share,
             *((_decide(_le(share, max_overhead_share)), "") if math.isfinite(share)
               else ("undecidable", "no warm-start cost recorded")), float("nan")),
            ("t_tau_std_ratio", ratio, max_std_ratio,
             *((_decide(_le(ratio, max_std_ratio)), f"{n_unc} pairs in which both reached τ")
               if n_unc >= min_uncensored_pairs and not math.isnan(ratio)
               else ("undecidable", f"only {n_unc} seed pairs in which both arms reached τ "
                                    f"(at least {min_uncensored_pairs} needed)")), float("nan")),
        ]
        for name, value, thr, decision, note, pv in crit:
            rows.append({**base, "criterion": name, "value": value, "threshold": thr, "decision": decision,
                         "pass": decision == "pass", "p": pv, "note": note})
        decisions = [x[3] for x in crit]
        n_pass = decisions.count("pass")
        overall = ("fail" if "fail" in decisions else "undecidable" if "undecidable" in decisions else "pass")
        rows.append({**base, "criterion": "overall", "value": float(n_pass), "threshold": float(len(crit)),
                     "decision": overall, "pass": overall == "pass", "p": float("nan"),
                     "note": f"{n_pass} of {len(crit)} criteria pass"
                             + (f", {decisions.count('undecidable')} undecidable" if "undecidable" in decisions else "")})
    cols = gk + ["variant", "criterion", "value", "threshold", "decision", "pass", "n", "p", "n_censored_base",
                 "n_censored_var", "note"]
    return pd.DataFrame(rows, columns=cols)


def _decide(ok: bool) -> str:
    return "pass" if ok else "fail"


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
