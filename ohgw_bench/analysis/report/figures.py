"""The report's figures, drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas rather than
through pyplot, so that making a report never switches the process-wide backend of a caller."""
from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path

import numpy as np

from .. import frontier, stats
from .context import ReportContext, as_float, group_title, time_unit

FIGURES: dict[str, str] = {
    "a_best_val_vs_time": "best validation accuracy vs time, median and IQR band per variant",
    "b_t_tau": "Kaplan–Meier curves of T@τ per variant (share of replicates that reached τ by each time)",
    "c_rung_survival": "share of trials reaching each epoch milestone (rung survival)",
    "d_hypergrad_vs_benefit": "median |∂J/∂log10 lr| of a replicate vs its paired T@τ benefit",
    "e_eta_sensitivity": "reduction of the KM median T@τ vs η_h, with a LOESS fit of the per-pair ratios",
    "f_label_noise": "T@τ reduction per task (speed-up retained under label noise)",
    "g_frontier": "T@τ reduction vs measured warm-start step length per family (what a one-shot warm start can buy)",
}


def draw_figures(ctx: ReportContext, out: Path) -> dict:
    """Every figure of ``FIGURES``: name -> {"files": [...]} or {"skipped": why}."""
    return {
        "a_best_val_vs_time": _fig_best_vs_time(ctx, out),
        "b_t_tau": _fig_t_tau(ctx, out),
        "c_rung_survival": _fig_survival(ctx, out),
        "d_hypergrad_vs_benefit": _fig_hypergrad(ctx, out),
        "e_eta_sensitivity": _fig_eta(ctx, out),
        "f_label_noise": _fig_label_noise(ctx, out),
        "g_frontier": _fig_frontier(ctx, out),
    }


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


def _fig_best_vs_time(ctx: ReportContext, out: Path) -> dict:
    fig, axes = _new_fig(len(ctx.groups))
    col = _colors(ctx.variants)
    for ax, g in zip(axes, ctx.groups):
        gm, gr = ctx.group_metrics(g), ctx.group_results(g)
        horizon = float(gm["budget_s"].max())
        unit, scale = time_unit(horizon)
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
        ax.set(xlabel=f"replicate time ({unit})", ylabel="best val acc so far", title=group_title(g))
        ax.legend(fontsize=8)
    return _save(fig, out, "a_best_val_vs_time",
                 "Best validation accuracy vs time: median, IQR band over seeds (n per legend)")


def _fig_t_tau(ctx: ReportContext, out: Path) -> dict:
    from scipy.stats import CensoredData, ecdf

    fig, axes = _new_fig(len(ctx.groups))
    col = _colors(ctx.variants)
    for ax, g in zip(axes, ctx.groups):
        gm = ctx.group_metrics(g)
        budget = float(gm["budget_s"].max())
        unit, scale = time_unit(budget)
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
               xlim=(0, budget / scale), title=f"{group_title(g)}, τ = {ctx.taus[g[0]]['tau']:.4f}")
        ax.legend(fontsize=8)
    return _save(fig, out, "b_t_tau",
                 "T@τ, censoring-aware: Kaplan–Meier share of replicates that reached τ by each time, 95 % "
                 "log-log band (a curve that ends below 0.5 has no median within the budget)")


def _fig_survival(ctx: ReportContext, out: Path) -> dict:
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
        ax.set(xlabel="epoch milestone", ylabel="share of trials reaching it", ylim=(0, 1.05), title=group_title(g))
        ax.legend(fontsize=8)
    return _save(fig, out, "c_rung_survival",
                 "Rung survival: share of trials (pooled over seeds) reaching each epoch")


def _kind(spec: str) -> str:
    return stats.parse_spec(spec)[0]


def _hg_variants(ctx: ReportContext) -> dict[str, str]:
    """Hypergradient variants and their warm-start spec (as the trials recorded it)."""
    m = ctx.metrics
    out = {}
    for v in ctx.variants[1:]:
        ws = m.loc[m["variant"] == v, "warm_start"]
        spec = str(ws.iloc[0]) if len(ws) else ""
        if _kind(spec) in ("hypergradient", "ohgw", "hg"):
            out[v] = spec
    return out


def _fig_hypergrad(ctx: ReportContext, out: Path) -> dict:
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
    unit, scale = time_unit(float(ctx.metrics["budget_s"].max()))
    markers = dict(zip(ctx.groups, "osD^vP*X"))
    for key, d in pr.groupby(["task", "scheduler", "variant"], sort=False):
        x = d["var_hg_abs_log10_lr"].to_numpy(float)
        y = (d["base_t_tau_s"] - d["var_t_tau_s"]).to_numpy(float) / scale
        cens = (d["base_censored"] | d["var_censored"]).to_numpy(bool)
        rho = ""
        if len(d) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            rho = f", Spearman ρ = {spearmanr(x, y).statistic:.2f}"
        label = f"{key[2]}{' [' + group_title(key[:2]) + ']' if multi else ''} (n={len(d)}{rho})"
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


def _fig_eta(ctx: ReportContext, out: Path) -> dict:
    from statsmodels.nonparametric.smoothers_lowess import lowess

    hgv = _hg_variants(ctx)
    info = {}
    for v, spec in hgv.items():
        opts = stats.parse_spec(spec)[1]
        eta = as_float(opts.get("eta"))
        # The normalised rule steps by delta in the unit cube; η_h does not enter it.
        if eta is None or eta <= 0 or opts.get("rule", "raw") == "normalized":
            continue
        info[v] = (eta, int(as_float(opts.get("steps")) or 1))
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
               title=f"{group_title((task, sched))}, {steps} step(s)")
        ax.legend(fontsize=8)
    return _save(fig, out, "e_eta_sensitivity",
                 "η_h sensitivity: reduction of the Kaplan–Meier median T@τ with its 95 % paired-bootstrap CI "
                 "per η_h (black, n annotated); per-pair ratios and their LOESS where both reached τ")



def _fig_frontier(ctx: ReportContext, out: Path) -> dict:
    """The step-size frontier when the sweep holds warm starts of several sizes (``frontier``)."""
    if ctx.frontier.empty:
        return {"skipped": ctx.frontier_note}
    frontier.frontier_figure(ctx.frontier, out, name="fig_g_frontier")
    return {"files": ["fig_g_frontier.png", "fig_g_frontier.pdf"]}


def _fig_label_noise(ctx: ReportContext, out: Path) -> dict:
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

