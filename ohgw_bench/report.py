"""The report of one results directory: report.md, summary.json, metrics.parquet and figures.

``make_report(results_dir)`` reads the store written by a sweep (``ohgw_bench.store``),
computes per-replicate metrics and paired comparisons (``ohgw_bench.stats``), judges every
variant against the pre-registered criteria, and writes everything a reader needs to check the
claim, with n and spread next to every statistic, into ``results_dir/report``.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas rather than through
pyplot, so that making a report never switches the process-wide backend of a caller.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import stats
from .atomic import atomic_path
from .store import load, write_json_atomic, write_parquet_atomic
from .textfmt import fixed, pct
from .space import PSI_KEYS

FIGURES: dict[str, str] = {
    "a_best_val_vs_time": "best validation accuracy vs time, median and IQR band per variant",
    "b_t_tau": "Kaplan–Meier curves of T@τ per variant (share of replicates that reached τ by each time)",
    "c_rung_survival": "share of trials reaching each epoch milestone (rung survival)",
    "d_hypergrad_vs_benefit": "median |∂J/∂log10 lr| of a replicate vs its paired T@τ benefit",
    "e_eta_sensitivity": "reduction of the KM median T@τ vs η_h, with a LOESS fit of the per-pair ratios",
    "f_label_noise": "T@τ reduction per task (speed-up retained under label noise)",
    "g_frontier": "T@τ reduction vs measured warm-start step length per family (what a one-shot warm start can buy)",
}
_NOISE = re.compile(r"[-_]noise\d*$")


# ---------------------------------------------------------------- entry point
def make_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                show_progress: bool = True, n_boot: int = 10000) -> dict:
    """Write report.md, summary.json, metrics.parquet and figures (PNG + PDF) for a results store.

    Args:
        results_dir: a directory written by a sweep (results.parquet, replicates.parquet,
            config.yaml, provenance.json).
        out_dir: where to write; default ``results_dir/report``.
        show_progress: a tqdm bar over replicates.
        n_boot: bootstrap resamples for the CI of the T@τ reduction.

    Returns:
        ``{"out_dir", "report_md", "summary_json", "metrics_parquet", "figures", "summary"}``:
        paths as strings, ``figures`` maps a figure name to its files or to the note why it was
        skipped, ``summary`` is what summary.json holds.

    Raises:
        ValueError: not a results directory, a configured variant or the baseline has no results,
            or τ is not a fraction.
    """
    rdir = Path(results_dir)
    results, replicates, cfg = load(rdir)
    cfg = cfg or {}
    out = Path(out_dir) if out_dir is not None else rdir / "report"
    prov = _read_json(rdir / "provenance.json")
    rep_cfg = cfg.get("report") or {}

    results = stats.fill_keys(results)
    if results.empty:
        raise ValueError(f"results directory {str(rdir)!r} holds an empty results.parquet")
    variants = _variant_order(results, cfg)
    _check_variants(results, cfg, rdir)
    baseline = _resolve_baseline(results, cfg, variants)
    variants = [baseline] + [v for v in variants if v != baseline]
    groups = _groups(results)
    for g in groups:
        sub = results[(results["task"] == g[0]) & (results["scheduler"] == g[1])]
        if not (sub["variant"] == baseline).any():
            raise ValueError(f"baseline variant {baseline!r} has no results for task {g[0]!r}, scheduler "
                             f"{g[1]!r}; variants present there: {sorted(sub['variant'].unique())}")

    taus = _taus(results, baseline, rep_cfg, replicates=replicates,
                 budget=None if replicates is not None and "budget_s" in replicates.columns
                 else _as_float(cfg.get("budget_s")))
    out.mkdir(parents=True, exist_ok=True)   # only once the inputs passed every check
    metrics = stats.per_replicate_metrics(
        results, replicates, {t: v["tau"] for t, v in taus.items()},
        default_budget=_as_float(cfg.get("budget_s")), n_workers=_as_float(cfg.get("n_workers")),
        show_progress=show_progress)
    order = {v: i for i, v in enumerate(variants)}
    metrics = metrics.sort_values(["task", "scheduler", "variant", "seed"],
                                  key=lambda s: s.map(order) if s.name == "variant" else s).reset_index(drop=True)
    comparison = stats.compare_to_baseline(metrics, baseline, n_boot=n_boot, seed=0)
    verd = stats.verdict(metrics, baseline, comparison=comparison)
    trials = stats.trial_table(results)
    noise = _label_noise_table(comparison)

    ctx = _Ctx(results=results, metrics=metrics, comparison=comparison, trials=trials, baseline=baseline,
               variants=variants, groups=groups, taus=taus, noise=noise, n_boot=n_boot)
    figures = {
        "a_best_val_vs_time": _fig_best_vs_time(ctx, out),
        "b_t_tau": _fig_t_tau(ctx, out),
        "c_rung_survival": _fig_survival(ctx, out),
        "d_hypergrad_vs_benefit": _fig_hypergrad(ctx, out),
        "e_eta_sensitivity": _fig_eta(ctx, out),
        "f_label_noise": _fig_label_noise(ctx, out),
        "g_frontier": _fig_frontier(ctx, out),
    }

    summary = _summary(ctx, rdir, cfg, prov, verd, figures)
    write_parquet_atomic(metrics, out / "metrics.parquet")
    write_json_atomic(_jsonable(summary), out / "summary.json")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(_markdown(ctx, rdir, cfg, prov, verd, figures, summary))
    return {"out_dir": str(out), "report_md": str(out / "report.md"), "summary_json": str(out / "summary.json"),
            "metrics_parquet": str(out / "metrics.parquet"), "figures": figures, "summary": _jsonable(summary)}


class _Ctx:
    """What every figure and table reads; one object instead of nine arguments."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def group_metrics(self, g: tuple[str, str]) -> pd.DataFrame:
        m = self.metrics
        return m[(m["task"] == g[0]) & (m["scheduler"] == g[1])]

    def group_results(self, g: tuple[str, str]) -> pd.DataFrame:
        r = self.results
        return r[(r["task"] == g[0]) & (r["scheduler"] == g[1])]

    def group_variants(self, g) -> list[str]:
        present = set(self.group_metrics(g)["variant"])
        return [v for v in self.variants if v in present]


# ---------------------------------------------------------------- config, baseline, τ
def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text()) if p.exists() else {}
    except json.JSONDecodeError:
        return {"error": f"{p.name} is not valid JSON"}


def _as_float(x) -> float | None:
    try:
        return float(x) if x is not None else None
    except (TypeError, ValueError):
        return None


def _config_variants(cfg: dict) -> list[str]:
    v = cfg.get("variants")
    if isinstance(v, dict):
        return [str(k) for k in v]
    if isinstance(v, list):
        return [str(x.get("name")) if isinstance(x, dict) else str(x) for x in v]
    return []


def _variant_order(results: pd.DataFrame, cfg: dict) -> list[str]:
    """Config order first (that is the order the reader chose), then order of appearance."""
    present = list(dict.fromkeys(results["variant"].astype(str)))
    return [v for v in _config_variants(cfg) if v in present] + \
        [v for v in present if v not in _config_variants(cfg)]


def _check_variants(results: pd.DataFrame, cfg: dict, rdir: Path) -> None:
    present = sorted(results["variant"].astype(str).unique())
    missing = [v for v in _config_variants(cfg) if v not in present]
    if missing:
        raise ValueError(f"variants {missing} of config.yaml have no results in {str(rdir)!r}; "
                         f"variants present: {present}")


def _resolve_baseline(results: pd.DataFrame, cfg: dict, variants: list[str]) -> str:
    name = str((cfg.get("report") or {}).get("baseline") or "baseline")
    if name in variants:
        return name
    if name != "baseline":   # named on purpose, so do not substitute another variant silently
        raise ValueError(f"baseline variant {name!r} (config report.baseline) has no results; "
                         f"variants present: {variants}")
    cfg_specs = cfg.get("variants") if isinstance(cfg.get("variants"), dict) else {}
    for v in variants:
        ws = results.loc[results["variant"] == v, "warm_start"].dropna().astype(str)
        spec = ws.iloc[0] if len(ws) else str(cfg_specs.get(v, ""))
        if stats.parse_spec(spec)[0] in ("none", "baseline"):
            return v
    raise ValueError(f"no baseline variant: none is named 'baseline' and none has warm_start 'none'; "
                     f"variants present: {variants}")


def _taus(results: pd.DataFrame, baseline: str, rep_cfg: dict, budget: float | None = None,
          replicates: pd.DataFrame | None = None) -> dict[str, dict]:
    """τ per task: from config.yaml report.tau (a number, or a mapping task -> number) or auto.

    Auto τ pools the baseline replicates of every scheduler on the task, so that all schedulers
    of a task race to the same target.
    """
    q = _as_float(rep_cfg.get("tau_quantile"))
    q = stats.DEFAULT_TAU_QUANTILE if q is None else q
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"report.tau_quantile must lie in [0, 1], but got tau_quantile={q!r}")
    raw = rep_cfg.get("tau", "auto")
    out = {}
    for task in sorted(results["task"].unique()):
        sub = results[results["task"] == task]
        finals = stats.final_best_val(sub, baseline, budget=budget, replicates=replicates)
        spread = stats.median_iqr(finals)
        t = raw.get(task, "auto") if isinstance(raw, dict) else raw
        if t is None or (isinstance(t, str) and t.strip().lower() == "auto"):
            out[task] = {"tau": stats.auto_tau(sub, baseline, q, budget=budget, replicates=replicates),
                         "source": "auto", "quantile": q,
                         "baseline_final_best": spread._asdict()}
            continue
        tau = _as_float(t)
        if tau is None or not math.isfinite(tau):
            raise ValueError(f"report.tau must be a number or 'auto', but got tau={t!r}")
        if tau > 1.0 and np.nanmax(sub["val_acc"].to_numpy(float)) <= 1.0:
            raise ValueError(f"report.tau must be a fraction like val_acc (at most 1), but got tau={tau!r}")
        out[task] = {"tau": tau, "source": "config", "quantile": None, "baseline_final_best": spread._asdict()}
    return out


def _groups(results: pd.DataFrame) -> list[tuple[str, str]]:
    return [tuple(g) for g in results[["task", "scheduler"]].drop_duplicates().sort_values(
        ["task", "scheduler"]).itertuples(index=False)]


def _label_noise_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per noisy task ("<clean>-noise10"), each variant's reduction there and on the clean task."""
    if comparison.empty or comparison["task"].nunique() < 2:
        return pd.DataFrame()
    rows = []
    tasks = set(comparison["task"])
    for noisy in sorted(tasks):
        clean = _NOISE.sub("", noisy)
        if clean == noisy or clean not in tasks:
            continue
        for _, r in comparison[comparison["task"] == noisy].iterrows():
            c = comparison[(comparison["task"] == clean) & (comparison["scheduler"] == r["scheduler"])
                           & (comparison["variant"] == r["variant"])]
            if c.empty:
                continue
            c = c.iloc[0]
            rows.append({"scheduler": r["scheduler"], "variant": r["variant"], "clean_task": clean,
                         "noisy_task": noisy, "reduction_clean": c["reduction"], "n_clean": c["n"],
                         "ci_clean": (c["reduction_ci_low"], c["reduction_ci_high"]),
                         "reduction_noisy": r["reduction"], "n_noisy": r["n"],
                         "ci_noisy": (r["reduction_ci_low"], r["reduction_ci_high"]),
                         "retained": r["reduction"] / c["reduction"]
                         if math.isfinite(c["reduction"]) and c["reduction"] != 0 else float("nan")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- figures
def _new_fig(n_panels: int, width: float = 4.8, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(3, max(1, n_panels))
    nrows = int(math.ceil(max(1, n_panels) / ncols))
    fig = Figure(figsize=(width * ncols, height * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:max(1, n_panels)]


def _save(fig, out: Path, name: str, title: str) -> dict:
    # Suptitles carry n and are long; wrap them to the figure's width instead of clipping them.
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 10)))
    files = []
    for ext in ("png", "pdf"):
        p = out / f"fig_{name}.{ext}"
        fig.savefig(p, dpi=150)
        files.append(p.name)   # relative to the report directory, so the report can move
    return {"files": files}


def _colors(variants: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(variants)}


def _time_unit(max_s: float) -> tuple[str, float]:
    if not math.isfinite(max_s) or max_s < 2 * 3600:
        return ("s", 1.0) if not math.isfinite(max_s) or max_s < 600 else ("min", 60.0)
    return "h", 3600.0


def _gtitle(g: tuple[str, str]) -> str:
    return " / ".join(x for x in g if x) or "all"


def _fig_best_vs_time(ctx: _Ctx, out: Path) -> dict:
    fig, axes = _new_fig(len(ctx.groups))
    col = _colors(ctx.variants)
    for ax, g in zip(axes, ctx.groups):
        gm, gr = ctx.group_metrics(g), ctx.group_results(g)
        horizon = float(gm["budget_s"].max())
        unit, scale = _time_unit(horizon)
        grid = np.linspace(0.0, horizon, 200)
        for v in ctx.group_variants(g):
            reps = gr[gr["variant"] == v]
            curves = np.array([stats.best_so_far_on_grid(d, grid) for _, d in reps.groupby("seed")])
            with warnings.catch_warnings():   # grid points before any seed's first result are all-NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, med, hi = np.nanpercentile(curves, [25, 50, 75], axis=0)
            ax.plot(grid / scale, med, color=col[v], label=f"{v} (n={len(curves)})")
            ax.fill_between(grid / scale, lo, hi, color=col[v], alpha=0.2, linewidth=0)
        tau = ctx.taus[g[0]]["tau"]
        ax.axhline(tau, color="k", ls="--", lw=0.8, label=f"τ = {tau:.4f}")
        ax.set(xlabel=f"replicate time ({unit})", ylabel="best val acc so far", title=_gtitle(g))
        ax.legend(fontsize=8)
    return _save(fig, out, "a_best_val_vs_time",
                 "Best validation accuracy vs time: median, IQR band over seeds (n per legend)")


def _fig_t_tau(ctx: _Ctx, out: Path) -> dict:
    from scipy.stats import CensoredData, ecdf

    fig, axes = _new_fig(len(ctx.groups))
    col = _colors(ctx.variants)
    for ax, g in zip(axes, ctx.groups):
        gm = ctx.group_metrics(g)
        budget = float(gm["budget_s"].max())
        unit, scale = _time_unit(budget)
        for v in ctx.group_variants(g):
            sub = gm[gm["variant"] == v]
            t, c = sub["t_tau_s"].to_numpy(float), sub["censored"].to_numpy(bool)
            label = f"{v} (n={len(sub)}, {int(c.sum())} censored)"
            if not (~c).any():
                ax.plot([0, budget / scale], [0, 0], color=col[v], label=label)
                continue
            cdf = ecdf(CensoredData(uncensored=t[~c], right=t[c])).cdf
            with warnings.catch_warnings():   # the band is undefined where the CDF is 0 or 1
                warnings.simplefilter("ignore", RuntimeWarning)
                band = cdf.confidence_interval(0.95, method="log-log")
            x = np.concatenate([[0.0], cdf.quantiles, [budget]]) / scale
            y = np.concatenate([[0.0], cdf.probabilities, [cdf.probabilities[-1]]])
            ax.step(x, y, where="post", color=col[v], label=label)
            lo = np.concatenate([[0.0], np.nan_to_num(band.low.probabilities, nan=0.0), [np.nan]])
            hi = np.concatenate([[0.0], np.nan_to_num(band.high.probabilities, nan=1.0), [np.nan]])
            lo[-1], hi[-1] = lo[-2], hi[-2]
            ax.fill_between(x, lo, hi, step="post", color=col[v], alpha=0.15, linewidth=0)
        ax.axhline(0.5, color="grey", ls=":", lw=0.8)
        ax.set(xlabel=f"replicate time ({unit})", ylabel="share of replicates that reached τ", ylim=(0, 1.02),
               xlim=(0, budget / scale), title=f"{_gtitle(g)}, τ = {ctx.taus[g[0]]['tau']:.4f}")
        ax.legend(fontsize=8)
    return _save(fig, out, "b_t_tau",
                 "T@τ, censoring-aware: Kaplan–Meier share of replicates that reached τ by each time, 95 % "
                 "log-log band (a curve that ends below 0.5 has no median within the budget)")


def _fig_survival(ctx: _Ctx, out: Path) -> dict:
    fig, axes = _new_fig(len(ctx.groups))
    col = _colors(ctx.variants)
    tr = ctx.trials
    for ax, g in zip(axes, ctx.groups):
        gt = tr[(tr["task"] == g[0]) & (tr["scheduler"] == g[1])]
        # Milestones from the data: where trials stopped or paused, i.e. the rung levels actually used.
        milestones = np.sort(gt["max_epoch"].dropna().unique())
        for v in ctx.group_variants(g):
            me = gt.loc[gt["variant"] == v, "max_epoch"].to_numpy(float)
            share = [(me >= e).mean() for e in milestones]
            n_seeds = gt.loc[gt["variant"] == v, "seed"].nunique()
            ax.plot(milestones, share, "o-", ms=3, color=col[v],
                    label=f"{v} ({len(me)} trials, n={n_seeds} seeds)")
        if len(milestones) and milestones.min() > 0 and milestones.max() / milestones.min() >= 9:
            ax.set_xscale("log")
        ax.set(xlabel="epoch milestone", ylabel="share of trials reaching it", ylim=(0, 1.05), title=_gtitle(g))
        ax.legend(fontsize=8)
    return _save(fig, out, "c_rung_survival",
                 "Rung survival: share of trials (pooled over seeds) reaching each epoch")


def _kind(spec: str) -> str:
    return stats.parse_spec(spec)[0]


def _hg_variants(ctx: _Ctx) -> dict[str, str]:
    """Hypergradient variants and their warm-start spec (as the trials recorded it)."""
    m = ctx.metrics
    out = {}
    for v in ctx.variants[1:]:
        ws = m.loc[m["variant"] == v, "warm_start"]
        spec = str(ws.iloc[0]) if len(ws) else ""
        if _kind(spec) in ("hypergradient", "ohgw", "hg"):
            out[v] = spec
    return out


def _fig_hypergrad(ctx: _Ctx, out: Path) -> dict:
    from scipy.stats import spearmanr

    hgv = _hg_variants(ctx)
    if not hgv:
        return {"skipped": "no hypergradient variant in the results"}
    pr = stats.paired(ctx.metrics[ctx.metrics["variant"].isin([ctx.baseline, *hgv])], ctx.baseline,
                      ["t_tau_s", "censored", "hg_abs_log10_lr"])
    pr = pr[np.isfinite(pr["var_hg_abs_log10_lr"].to_numpy(float))]
    if pr.empty:
        return {"skipped": "hg_log10_lr is NaN for every hypergradient trial (no hyper-gradients recorded)"}
    fig, axes = _new_fig(1, width=8.0, height=4.2)
    ax = axes[0]
    col = _colors(ctx.variants)
    multi = len(ctx.groups) > 1
    unit, scale = _time_unit(float(ctx.metrics["budget_s"].max()))
    markers = dict(zip(ctx.groups, "osD^vP*X"))
    for key, d in pr.groupby(["task", "scheduler", "variant"], sort=False):
        x = d["var_hg_abs_log10_lr"].to_numpy(float)
        y = (d["base_t_tau_s"] - d["var_t_tau_s"]).to_numpy(float) / scale
        cens = (d["base_censored"] | d["var_censored"]).to_numpy(bool)
        rho = ""
        if len(d) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            rho = f", Spearman ρ = {spearmanr(x, y).statistic:.2f}"
        label = f"{key[2]}{' [' + _gtitle(key[:2]) + ']' if multi else ''} (n={len(d)}{rho})"
        mk = markers.get(tuple(key[:2]), "o")
        ax.scatter(x[~cens], y[~cens], s=14, marker=mk, color=col[key[2]], label=label)
        ax.scatter(x[cens], y[cens], s=14, marker=mk, facecolors="none", edgecolors=col[key[2]])
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xlabel="median |∂J/∂log10 lr| over the replicate's trials",
           ylabel=f"paired benefit T@τ base − variant ({unit})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(fig, out, "d_hypergrad_vs_benefit",
                 f"Hyper-gradient magnitude vs paired T@τ benefit (n = {len(pr)} seed pairs; "
                 "open marker = τ not reached on one side)")


def _fig_eta(ctx: _Ctx, out: Path) -> dict:
    from statsmodels.nonparametric.smoothers_lowess import lowess

    hgv = _hg_variants(ctx)
    info = {}
    for v, spec in hgv.items():
        opts = stats.parse_spec(spec)[1]
        eta = _as_float(opts.get("eta"))
        # The normalised rule steps by delta in the unit cube; η_h does not enter it.
        if eta is None or eta <= 0 or opts.get("rule", "raw") == "normalized":
            continue
        info[v] = (eta, int(_as_float(opts.get("steps")) or 1))
    pr = stats.paired(ctx.metrics[ctx.metrics["variant"].isin([ctx.baseline, *info])], ctx.baseline,
                      ["t_tau_s", "censored"])
    if pr.empty:
        return {"skipped": "no raw-rule hypergradient variant paired with the baseline"}
    pr["eta"] = pr["variant"].map(lambda v: info[v][0])
    pr["steps"] = pr["variant"].map(lambda v: info[v][1])
    # a per-seed ratio exists only where both replicates reached τ; the KM reduction uses every pair
    both = ~(pr["base_censored"].astype(bool) | pr["var_censored"].astype(bool))
    pr["speedup"] = (1.0 - pr["var_t_tau_s"] / pr["base_t_tau_s"]).where(both)
    cohorts = [(k, d) for k, d in pr.groupby(["task", "scheduler", "steps"]) if d["eta"].nunique() >= 2]
    if not cohorts:
        etas = sorted({e for e, _ in info.values()})
        return {"skipped": f"the hypergradient variants share one η_h per steps value ({etas}); "
                           "no sensitivity to fit"}
    fig, axes = _new_fig(len(cohorts), width=5.2, height=3.8)
    rng = np.random.default_rng(0)
    for ax, ((task, sched, steps), d) in zip(axes, cohorts):
        x = np.log10(d["eta"].to_numpy(float))
        y = d["speedup"].to_numpy(float)
        ok = np.isfinite(y)
        ax.scatter(x[ok] + rng.uniform(-0.03, 0.03, ok.sum()), y[ok], s=10, alpha=0.4, color="tab:blue",
                   label=f"seed pairs that both reached τ (n={int(ok.sum())})")
        c = ctx.comparison
        c = c[(c["task"] == task) & (c["scheduler"] == sched) & c["variant"].isin(set(d["variant"]))]
        for r in c.itertuples():
            e = info[r.variant][0]
            if math.isfinite(r.reduction):
                ax.errorbar(np.log10(e), r.reduction, yerr=[[max(0.0, r.reduction - r.reduction_ci_low)],
                                                            [max(0.0, r.reduction_ci_high - r.reduction)]],
                            fmt="s", color="k", ms=5, capsize=3)
            ax.annotate(f"n={r.n}", (np.log10(e), r.reduction if math.isfinite(r.reduction) else 0.0),
                        textcoords="offset points", xytext=(6, 4), fontsize=7)
        if ok.sum() >= 4:
            fit = lowess(y[ok], x[ok], frac=0.8, it=1, return_sorted=True)
            ax.plot(fit[:, 0], fit[:, 1], color="tab:red", label="LOESS of the per-pair ratios (frac 0.8)")
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel="log10 η_h", ylabel="1 − T@τ(variant) / T@τ(baseline)",
               title=f"{_gtitle((task, sched))}, {steps} step(s)")
        ax.legend(fontsize=8)
    return _save(fig, out, "e_eta_sensitivity",
                 "η_h sensitivity: reduction of the Kaplan–Meier median T@τ with its 95 % paired-bootstrap CI "
                 "per η_h (black, n annotated); per-pair ratios and their LOESS where both reached τ")


def _fig_frontier(ctx: _Ctx, out: Path) -> dict:
    """The step-size frontier when the sweep holds warm starts of several sizes (``frontier``)."""
    from . import frontier
    if ctx.comparison.empty:
        ctx.frontier = pd.DataFrame()
        return {"skipped": "no variant is paired with the baseline"}
    try:
        table = frontier.frontier_table(ctx.comparison, ctx.trials)
    except ValueError as e:   # a hand-made store without x / x′ columns
        ctx.frontier = pd.DataFrame()
        return {"skipped": str(e)}
    sized = table[table["family"].isin(frontier.SIZED_FAMILIES) & np.isfinite(table["param"].to_numpy(float))]
    if sized.groupby(["scheduler", "family"])["param"].nunique().max() < 2 if len(sized) else True:
        ctx.frontier = pd.DataFrame()
        return {"skipped": "no warm-start family at two or more step sizes; no frontier to draw"}
    ctx.frontier = table
    frontier.frontier_figure(table, out, name="fig_g_frontier")
    return {"files": ["fig_g_frontier.png", "fig_g_frontier.pdf"]}


def _fig_label_noise(ctx: _Ctx, out: Path) -> dict:
    cmp = ctx.comparison
    tasks = sorted(ctx.results["task"].unique())
    if len(tasks) < 2:
        return {"skipped": f"the results hold one task ({tasks[0]!r}); no label-noise comparison"}
    if cmp.empty:
        return {"skipped": "no variant is paired with the baseline"}
    scheds = sorted(cmp["scheduler"].unique())
    fig, axes = _new_fig(len(scheds), width=max(4.8, 1.4 * len(ctx.variants)), height=3.8)
    for ax, sched in zip(axes, scheds):
        c = cmp[cmp["scheduler"] == sched]
        vs = [v for v in ctx.variants if v in set(c["variant"])]
        w = 0.8 / len(tasks)
        for j, t in enumerate(tasks):
            ct = c[c["task"] == t].set_index("variant").reindex(vs)
            y = ct["reduction"].to_numpy(float)
            err = np.abs(np.vstack([y - ct["reduction_ci_low"].to_numpy(float),
                                    ct["reduction_ci_high"].to_numpy(float) - y]))
            x = np.arange(len(vs)) + (j - (len(tasks) - 1) / 2) * w
            ns = sorted(set(ct["n"].fillna(0).astype(int)))
            n_txt = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
            ax.bar(x, y, width=w, yerr=np.nan_to_num(err), capsize=3, label=f"{t} (n={n_txt} pairs)")
        ax.axhline(0, color="k", lw=0.6)
        ax.axhline(0.15, color="grey", ls="--", lw=0.8, label="15 % criterion")
        ax.set_xticks(range(len(vs)), vs, fontsize=8)
        ax.set(ylabel="median T@τ reduction vs baseline", title=sched or "all")
        ax.legend(fontsize=8)
    return _save(fig, out, "f_label_noise",
                 "Speed-up per task: reduction of the Kaplan–Meier median T@τ, 95 % paired-bootstrap CI")


# ---------------------------------------------------------------- summary.json
def _per_variant(ctx: _Ctx) -> list[dict]:
    rows = []
    for g in ctx.groups:
        gm = ctx.group_metrics(g)
        for v in ctx.group_variants(g):
            m = gm[gm["variant"] == v]
            row = {"task": g[0], "scheduler": g[1], "variant": v, "n": len(m),
                   "n_censored": int(m["censored"].sum()), "warm_start": str(m["warm_start"].iloc[0])}
            for c in ("final_test_acc", "best_val_acc", "auc", "ws_overhead_share",
                      "flops_overhead_share", "n_trials", "budget_s"):
                row[c] = stats.median_iqr(m[c])._asdict()
            # T@τ is censored: Kaplan–Meier median, its CI and quartiles (inf: not reached in the budget)
            for c in ("t_tau_s", "t_tau_gpu_h"):
                row[c] = stats.km_summary(m[c], m["censored"])._asdict()
            row["shift"] = {k: stats.median_iqr(m[f"shift_{k}"])._asdict() for k in PSI_KEYS}
            rows.append(row)
    return rows


def _kl_table(ctx: _Ctx) -> list[dict]:
    """KL(x′ of a variant ‖ x′ of the baseline) per ψ key: how far the evaluated configs moved."""
    tr = ctx.trials
    rows = []
    for g in ctx.groups:
        gt = tr[(tr["task"] == g[0]) & (tr["scheduler"] == g[1])]
        base = gt[gt["variant"] == ctx.baseline]
        for v in ctx.group_variants(g)[1:]:
            var = gt[gt["variant"] == v]
            for k in PSI_KEYS:
                rows.append({"task": g[0], "scheduler": g[1], "variant": v, "key": k,
                             "kl": stats.kl_divergence_1d(var[f"xp_{k}"], base[f"xp_{k}"], bins=20),
                             "n_trials_var": int(var[f"xp_{k}"].notna().sum()),
                             "n_trials_base": int(base[f"xp_{k}"].notna().sum())})
    return rows


def _summary(ctx: _Ctx, rdir: Path, cfg: dict, prov: dict, verd: pd.DataFrame, figures: dict) -> dict:
    taus = ctx.taus
    overall = verd[verd["criterion"] == "overall"]
    return {
        "results_dir": str(rdir), "name": cfg.get("name", rdir.name),
        "backend": cfg.get("backend") or _first(ctx.results["backend"]) or prov.get("backend"),
        "baseline": ctx.baseline, "variants": ctx.variants,
        "groups": [{"task": g[0], "scheduler": g[1]} for g in ctx.groups],
        "seeds": sorted(int(s) for s in ctx.metrics["seed"].unique()),
        "n_replicates": len(ctx.metrics),
        # One task (the usual sweep): τ is a number; several: see tau_by_task.
        "tau": taus[next(iter(taus))]["tau"] if len(taus) == 1 else None,
        "tau_by_task": taus,
        "per_variant": _per_variant(ctx),
        "tests": ctx.comparison.to_dict("records"),
        "verdict": verd.to_dict("records"),
        "overall": overall[["task", "scheduler", "variant", "pass", "n"]].to_dict("records"),
        "criteria": stats.CRITERIA,
        "hyperparameter_kl": _kl_table(ctx),
        "label_noise": ctx.noise.to_dict("records") if not ctx.noise.empty else [],
        "frontier": ctx.frontier.to_dict("records") if getattr(ctx, "frontier", None) is not None
        and not ctx.frontier.empty else [],
        "figures": figures,
        "provenance": prov,
    }


def _first(s: pd.Series):
    s = s.dropna()
    return str(s.iloc[0]) if len(s) else None


def _jsonable(x):
    """NaN/inf -> null and numpy scalars -> Python, so that summary.json is strict JSON."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (pd.Timestamp, _dt.datetime)):
        return x.isoformat()
    return x


# ---------------------------------------------------------------- report.md
def _mi(mi: dict | stats.MedianIQR, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    d = mi._asdict() if isinstance(mi, tuple) else mi
    if not d["n"]:
        return "– (n=0)"
    f = lambda v: f"{v * scale:.{digits}f}"   # noqa: E731
    return f"{f(d['median'])}{unit} [IQR {f(d['q25'])}–{f(d['q75'])}], n={d['n']}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _p(p) -> str:
    return "–" if p is None or not math.isfinite(p) else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def _markdown(ctx: _Ctx, rdir: Path, cfg: dict, prov: dict, verd: pd.DataFrame, figures: dict,
              summary: dict) -> str:
    L: list[str] = []
    add = L.append
    seeds = summary["seeds"]
    add(f"# ohgw-bench report: {summary['name']}\n")
    add(f"Results: `{rdir}` · backend: {summary['backend'] or 'unknown'} · baseline: `{ctx.baseline}` · "
        f"variants: {', '.join(f'`{v}`' for v in ctx.variants)} · "
        f"{len(ctx.metrics)} replicates over {len(seeds)} seeds ({_seed_str(seeds)}) · "
        f"generated {_dt.datetime.now().isoformat(timespec='seconds')}\n")
    add("All statistics are over seeds (one replicate = one HPO run) and given as median [IQR], n. "
        "T@τ of a replicate that never reaches τ is right-censored at its budget: T@τ statistics are "
        "Kaplan–Meier estimates, never averages of budget values, and the number censored is given beside "
        "each. Comparisons are seed-paired within a task and scheduler; only seeds both sides ran enter "
        "them (see Definitions).\n")
    missing = _missing_replicates(ctx, cfg)
    if missing:
        add(f"**Incomplete sweep:** {len(missing)} configured (scheduler, variant, seed) replicates have no "
            f"results, e.g. {missing[:5]}.\n")

    add("## Target τ\n")
    for t, info in ctx.taus.items():
        how = (f"auto: the {info['quantile']:g}-quantile of the baseline's final best val acc"
               if info["source"] == "auto" else "from config.yaml report.tau")
        add(f"- `{t or 'task n/a'}`: τ = {info['tau']:.4f} ({how}); baseline final best val acc "
            f"{_mi(info['baseline_final_best'], 100, 2, ' %')} replicates.")
    add("")

    for g in ctx.groups:
        add(f"## {_gtitle(g)}\n")
        add("### Metrics per variant\n")
        rows = []
        gm = ctx.group_metrics(g)
        unit, scale = _time_unit(float(gm["budget_s"].max()))
        for pv in [r for r in summary["per_variant"] if (r["task"], r["scheduler"]) == g]:
            rows.append([f"`{pv['variant']}`", pv["n"], pv["n_censored"],
                         _km(pv["t_tau_s"], 1 / scale, 2), _km(pv["t_tau_gpu_h"], 1, 3),
                         _mi(pv["final_test_acc"], 100, 2, " %"), _mi(pv["auc"], 1, 4),
                         _mi(pv["ws_overhead_share"], 100, 2, " %"), _mi(pv["n_trials"], 1, 0),
                         _mi(pv["budget_s"], 1 / scale, 1)])
        add(_table(["variant", "n", "censored", f"T@τ ({unit}), KM median (95 % CI) [IQR]", "T@τ (GPU-h)",
                    "final test acc",
                    "AUC (best val / budget)", "warm-start share", "trials", f"budget ({unit})"], rows))
        add("")

        add("### Paired comparison with the baseline\n")
        c = ctx.comparison
        c = c[(c["task"] == g[0]) & (c["scheduler"] == g[1])] if not c.empty else c
        if c.empty:
            add("No variant besides the baseline.\n")
        else:
            rows = [[f"`{r.variant}`", r.n, f"{r.n_censored_base} / {r.n_censored_var}",
                     f"{_t(r.t_tau_median_base, scale)} → {_t(r.t_tau_median_var, scale)}",
                     (f"undecidable: {r.undecidable}" if r.undecidable else
                      pct(r.reduction) + f" (95 % CI {pct(r.reduction_ci_low)} to {pct(r.reduction_ci_high)}), "
                      f"p = {_p(r.p_value)}"),
                     f"{r.n_var_first} / {r.n_base_first} / {r.n_ties}, p = {_p(r.sign_p)}",
                     f"p = {_p(r.logrank_p)}",
                     f"{pct(r.test_acc_median_base, 2)} → {pct(r.test_acc_median_var, 2)} (n={r.n_test_acc})",
                     f"{fixed(r.t_tau_std_base / scale, 2)} → {fixed(r.t_tau_std_var / scale, 2)} "
                     f"(ratio {fixed(r.std_ratio, 2)}, {r.n_uncensored_pairs} pairs)"]
                    for r in c.itertuples()]
            add(_table(["variant", "n pairs", "censored base / var", f"KM median T@τ ({unit}) base → var",
                        "reduction of the KM median (paired bootstrap CI, p)",
                        "reached τ first: variant / baseline / tie (sign test)", "log-rank",
                        "median test acc base → var", f"seed std T@τ ({unit}), pairs that both reached τ"], rows))
            add("")

        add("### Verdict (pre-registered criteria)\n")
        vd = verd[(verd["task"] == g[0]) & (verd["scheduler"] == g[1])]
        if vd.empty:
            add("No variant to judge.\n")
        else:
            rows = []
            for r in vd.rename(columns={"pass": "passed"}).itertuples():
                rows.append([f"`{r.variant}`", r.criterion, _crit_value(r), _crit_thr(r),
                             {"pass": "**PASS**", "fail": "fail"}.get(r.decision, "*undecidable*"), r.n,
                             f"{r.n_censored_base} / {r.n_censored_var}", r.note])
            add(_table(["variant", "criterion", "value", "threshold", "result", "n pairs",
                        "censored base / var", "note"], rows))
            add("")

        add("### Hyperparameter shift\n")
        kl = [k for k in summary["hyperparameter_kl"] if (k["task"], k["scheduler"]) == g]
        rows = []
        for pv in [r for r in summary["per_variant"] if (r["task"], r["scheduler"]) == g]:
            cells = []
            for k in PSI_KEYS:
                s = _mi(pv["shift"][k], 1, 4)
                klr = [x for x in kl if x["variant"] == pv["variant"] and x["key"] == k]
                if klr:
                    k0 = klr[0]
                    s += f"; KL {fixed(k0['kl'], 3)} (trials {k0['n_trials_var']} vs {k0['n_trials_base']})"
                cells.append(s)
            rows.append([f"`{pv['variant']}`"] + cells)
        add("Mean |x′ − x| per replicate (median [IQR] over replicates), and KL(x′ of the variant ‖ x′ of "
            "the baseline) over pooled trials (20 bins, ε = 1e-6 smoothing).\n")
        add(_table(["variant"] + list(PSI_KEYS), rows))
        add("")

    if getattr(ctx, "frontier", None) is not None and not ctx.frontier.empty:
        from . import frontier
        add(frontier.markdown_section(ctx.frontier, "fig_g_frontier.png", level=2))
        add("")

    if not ctx.noise.empty:
        add("## Speed-up retained under label noise\n")
        rows = [[r.scheduler, f"`{r.variant}`", f"`{r.clean_task}` → `{r.noisy_task}`",
                 f"{pct(r.reduction_clean)} (CI {pct(r.ci_clean[0])} to {pct(r.ci_clean[1])}, n={r.n_clean})",
                 f"{pct(r.reduction_noisy)} (CI {pct(r.ci_noisy[0])} to {pct(r.ci_noisy[1])}, n={r.n_noisy})",
                 fixed(r.retained, 2)] for r in ctx.noise.itertuples()]
        add(_table(["scheduler", "variant", "clean → noisy task", "T@τ reduction, clean (bootstrap CI)",
                    "T@τ reduction, noisy (bootstrap CI)", "retained (noisy / clean, point estimates)"], rows))
        add("")

    add("## Figures\n")
    for name, f in figures.items():
        if "files" in f:
            png = Path(f["files"][0]).name
            add(f"- **{name}**: {FIGURES[name]} ([PDF]({Path(f['files'][1]).name}))\n\n  ![{name}]({png})")
        else:
            add(f"- **{name}**: skipped: {f['skipped']}.")
    add("")

    add("## Definitions\n")
    add("- T@τ: first replicate-clock time at which any result has val acc ≥ τ; a replicate that never "
        "reaches τ within its budget is right-censored there (we only know T@τ > budget). "
        "GPU-hours = T@τ · n_workers / 3600 (censored alike).\n"
        "- KM median: the Kaplan–Meier estimate of each arm's T@τ distribution (`scipy.stats.ecdf` on "
        "`scipy.stats.CensoredData`); a quantile is the first time at which the estimated share still "
        "without τ falls to 1 − q or below; \"not reached\" when that never happens within the budget "
        "(half or more of the arm censored, for the median). The median's CI inverts the 95 % log-log band. "
        "With a common budget this median equals the sample median with censored values at the budget "
        "whenever fewer than half are censored; the estimator differs where it must: unequal budgets, and "
        "arms where the median is not reached, which no budget value can stand in for.\n"
        "- Reduction (the verdict's effect): 1 − KM median(variant) / KM median(baseline) over the paired "
        f"seeds. CI: paired bootstrap ({ctx.n_boot} resamples of seed pairs, rng seed 0; each resample's two "
        "KM medians give one reduction r*), the k-th smallest to the k-th largest r*, k = ⌈0.025 · resamples⌉. "
        "Test (the verdict's p): paired permutation test of the same statistic: with no effect the two "
        "replicates of a seed are exchangeable, so swapping the arms within random pairs "
        f"({ctx.n_boot} swaps, or all 2^n when fewer) gives the null distribution of |log(KM median ratio)|; "
        "two-sided mid-p = (#(null > observed) + ½ · #(null = observed)) / swaps, the observed assignment "
        "counted among the swaps; valid at every n without asymptotics. Effect and test judge "
        "one statistic, so they answer one question. A resample in which an arm does not reach its median "
        "counts that arm's median as longer than any reached one; on the full sample it makes the "
        "criterion undecidable. The false-positive rate, CI coverage and power of this machinery on "
        "synthetic censored data are in docs/statistics.md.\n"
        "- Reached τ first (sign test): per seed pair, the arm that reached τ earlier; both censored, equal "
        "times, or one censored before the other's finish are ties. Exact two-sided binomial test on the "
        "decided pairs. It answers a different question (which arm wins a paired race), shown as a check, "
        "not used by the verdict.\n"
        "- Log-rank: two-sided test of equal T@τ survival curves (`scipy.stats.logrank`); it ignores the "
        "pairing; shown as a check, not used by the verdict.\n"
        "- Seed std of T@τ: std (ddof 1) over the seed pairs in which both arms reached τ (censored values "
        "would sit at the budget and shrink it); the criterion is undecidable with fewer than "
        f"{stats.MIN_UNCENSORED_PAIRS} such pairs.\n"
        "- Final test acc: test acc of the incumbent (the trial with the highest val acc within the budget, "
        "ties to the first to reach it) at its last epoch with a test evaluation.\n"
        "- AUC: exact integral of the best-so-far val acc step function over [0, budget] / budget "
        "(0 before the first result).\n"
        "- Warm-start share: Σ ws_cost_s / Σ epoch_time over the replicate's trials. The warm start runs "
        "inside a trial's first epoch and its epoch_time includes it (real trials time it there; the "
        "surrogate adds it there), so the denominator is all trial compute, warm starts included.\n"
        "- Decisions: pass / fail, or *undecidable* when the data cannot estimate the criterion's value "
        "(the note says why); a variant passes overall only when all four criteria pass.")
    add("")
    add("| criterion | rule |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in stats.CRITERIA.items()))
    add("")

    add("## Provenance\n")
    add(f"- git revision: `{prov.get('git_revision', 'unknown')}`")
    add(f"- device: {prov.get('device_name', 'unknown')}; host: {prov.get('host', 'unknown')}")
    add(f"- backend: {summary['backend'] or 'unknown'}; seeds: {_seed_str(seeds)} (n={len(seeds)})")
    vers = prov.get("versions") or {}
    if vers:
        add("- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    extra = {k: v for k, v in prov.items() if k not in ("git_revision", "device_name", "host", "versions")}
    if extra:
        add("- other provenance: `" + json.dumps(extra, sort_keys=True, default=str)[:2000] + "`")
    add("\nconfig.yaml:\n\n```yaml\n" + (yaml.safe_dump(cfg, sort_keys=False).strip() or "{}") + "\n```\n")
    return "\n".join(L)


def _crit_value(r) -> str:
    if r.criterion == "t_tau_reduction":
        return "–" if not math.isfinite(r.value) else f"{pct(r.value)} (p = {_p(r.p)})"
    if r.criterion in ("test_acc_drop",):
        return f"{fixed(r.value * 100, 3)} pp"
    if r.criterion == "overhead_share":
        return pct(r.value, 2)
    if r.criterion == "overall":
        return f"{int(r.value)} of {int(r.threshold)}"
    return fixed(r.value, 3)


def _crit_thr(r) -> str:
    return {"t_tau_reduction": f"≥ {pct(r.threshold)}, p < 0.05",
            "test_acc_drop": f"≤ {r.threshold * 100:g} pp",
            "overhead_share": f"≤ {pct(r.threshold)}", "t_tau_std_ratio": f"≤ {r.threshold:g}",
            "overall": "all"}.get(r.criterion, str(r.threshold))


def _km(d: dict, scale: float = 1.0, digits: int = 1) -> str:
    """A Kaplan–Meier summary: median (95 % CI) [IQR], n; "not reached" for quantiles beyond the budget."""
    if not d["n"]:
        return "– (n=0)"

    def f(v):
        return "not reached" if v is not None and math.isinf(v) else fixed(None if v is None else v * scale, digits)
    return f"{f(d['median'])} ({f(d['ci_low'])}–{f(d['ci_high'])}) [IQR {f(d['q25'])}–{f(d['q75'])}], n={d['n']}"


def _t(x, scale: float) -> str:
    return "not reached" if x is not None and math.isinf(float(x)) else fixed(None if x is None else x / scale, 2)


def _seed_str(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _missing_replicates(ctx: _Ctx, cfg: dict) -> list[tuple]:
    try:
        from .config import seed_list
        seeds = seed_list(cfg["seeds"]) if "seeds" in cfg else []
    except Exception:   # an old or hand-written config: nothing to check against
        return []
    have = set(zip(ctx.metrics["scheduler"], ctx.metrics["variant"], ctx.metrics["seed"]))
    scheds = cfg.get("schedulers") or sorted(ctx.metrics["scheduler"].unique())
    return [(s, v, seed) for s in scheds for v in ctx.variants for seed in seeds if (s, v, seed) not in have]
