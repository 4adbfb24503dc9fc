"""The step-size frontier: what a one-shot warm start can buy, against how far it moves ψ.

Input: the paired comparison table (``stats.compare_to_baseline``: one row per (task, scheduler,
variant) with ``n``, ``reduction`` (1 − median T@τ ratio), its CI, ``p_value`` and
``test_acc_drop``) and a table with each trial's x and x′ (``results.parquet`` rows or a per-trial
table). Each variant's warm-start spec puts it into a *family* with a nominal step parameter:

| family | parameter |
|---|---|
| ``placebo`` | — (pays the hyper-gradient's oracle calls, keeps ψ) |
| ``hypergradient-raw`` (``-<k>step`` for k > 1) | η |
| ``hypergradient-normalized`` | δ |
| ``oracle`` / ``oracle-greedy`` / ``random-dir`` | radius r |
| ``random`` | η |
| ``python:<module:function>`` | — |

The measured step length is the median over the variant's trials of ‖x′ − x‖ in unit-cube
coordinates (``space.to_unit``), the same unit as the oracle radii.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import space
from ..space import PSI_KEYS
from ..textfmt import num, pct
from ..warmstart.spec import WarmStart

CLAIM = 0.20   # the method's claimed reduction of median T@τ
# families whose nominal parameter is a step size (a frontier needs two or more sizes of one of them)
SIZED_FAMILIES = ("oracle", "oracle-greedy", "hypergradient-normalized", "hypergradient-raw", "random-dir")
FAMILY_ORDER = ("oracle", "oracle-greedy", "hypergradient-normalized", "hypergradient-raw", "random-dir",
                "placebo")
FRONTIER_COLUMNS = ["task", "scheduler", "variant", "warm_start", "family", "param_name", "param", "n",
                    "n_trials", "step_median", "step_q25", "step_q75", "reduction", "reduction_ci_low",
                    "reduction_ci_high", "p_value", "test_acc_drop"]


def family_of(spec: str) -> tuple[str, str, float]:
    """A warm-start spec -> (family, parameter name, nominal parameter value)."""
    ws = WarmStart.parse(spec)
    if ws.kind == "none":
        return "baseline", "", math.nan
    if ws.kind == "hypergradient":
        if ws.rule == "normalized":
            return "hypergradient-normalized" + (f"-{ws.steps}step" if ws.steps > 1 else ""), "delta", ws.delta
        return "hypergradient-raw" + (f"-{ws.steps}step" if ws.steps > 1 else ""), "eta", ws.eta
    if ws.kind in ("oracle", "oracle-greedy", "random-dir"):
        return ws.kind, "radius", ws.radius
    if ws.kind == "random":
        return "random", "eta", ws.eta
    if ws.kind == "placebo":
        return "placebo", "", math.nan
    return f"python:{ws.target}", "", math.nan


def unit_steps(trials: pd.DataFrame) -> pd.Series:
    """‖x′ − x‖ in unit-cube coordinates, one value per row."""
    x = trials[[f"x_{k}" for k in PSI_KEYS]].to_numpy(float)
    xp = trials[[f"xp_{k}" for k in PSI_KEYS]].to_numpy(float)
    return pd.Series(np.linalg.norm((xp - x) / space.widths(), axis=1), index=trials.index)


def _per_trial(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: results rows (several epochs per trial) are reduced to the first row."""
    keys = [k for k in ("task", "scheduler", "variant", "seed", "trial_id") if k in trials.columns]
    if "epoch" in trials.columns and "trial_id" in trials.columns:
        trials = trials.sort_values(keys + ["epoch"], kind="mergesort").groupby(keys, sort=False).head(1)
    return trials


def frontier_table(comparison: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, scheduler, variant) of ``comparison``: family, nominal parameter, measured
    unit-cube step length (median and quartiles over trials), the paired T@τ reduction with its CI,
    the test's p-value, the test-accuracy change and n.

    Args:
        comparison: ``stats.compare_to_baseline`` output.
        trials: rows with ``scheduler``, ``variant``, ``warm_start``, ``x_*`` and ``xp_*`` (results
            rows or a per-trial table; a ``task`` column is used when present).
    """
    need = {"scheduler", "variant", "warm_start"} | {f"{p}_{k}" for p in ("x", "xp") for k in PSI_KEYS}
    missing = sorted(need - set(trials.columns))
    if missing:
        raise ValueError(f"frontier: the trial table lacks columns {missing}")
    need_c = {"scheduler", "variant", "n", "reduction", "p_value", "reduction_ci_low", "reduction_ci_high", "test_acc_drop"}
    missing = sorted(need_c - set(comparison.columns))
    if missing:
        raise ValueError(f"frontier: the comparison table lacks columns {missing}")
    t = _per_trial(trials).copy()
    t["step"] = unit_steps(t)
    by = ["scheduler", "variant"] + (["task"] if "task" in t.columns and "task" in comparison.columns else [])
    g = t.groupby(by, sort=False)
    steps = pd.DataFrame({"n_trials": g["step"].size(), "step_median": g["step"].median(),
                          "step_q25": g["step"].quantile(0.25), "step_q75": g["step"].quantile(0.75),
                          "warm_start": g["warm_start"].first()}).reset_index()
    comp = comparison.copy()
    if "task" not in comp.columns:
        comp["task"] = ""
    out = comp.merge(steps, on=by, how="left", validate="one_to_one")
    fam = out["warm_start"].map(lambda s: family_of(s) if isinstance(s, str) and s else ("", "", math.nan))
    out["family"] = [f[0] for f in fam]
    out["param_name"] = [f[1] for f in fam]
    out["param"] = [f[2] for f in fam]
    out = out[out["family"] != "baseline"]
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    out["_r"] = out["family"].map(lambda f: rank.get(f, len(rank)))
    out = out.sort_values(["task", "scheduler", "_r", "family", "param", "variant"], kind="mergesort")
    return out[FRONTIER_COLUMNS].reset_index(drop=True)


# ----------------------------------------------------------------------------- summaries
def claim_radius(table: pd.DataFrame, scheduler: str, family: str = "oracle", claim: float = CLAIM) -> dict:
    """The smallest radius of ``family`` whose median reduction reaches ``claim``, and the smallest
    whose CI lower bound does (NaN where none does)."""
    f = table[(table["scheduler"] == scheduler) & (table["family"] == family)].sort_values("param")
    point = f[f["reduction"] >= claim]
    sure = f[f["reduction_ci_low"] >= claim]
    return {"radius_point": float(point["param"].iloc[0]) if len(point) else math.nan,
            "radius_ci": float(sure["param"].iloc[0]) if len(sure) else math.nan,
            "best_reduction": float(f["reduction"].max()) if len(f) else math.nan,
            "best_radius": float(f.loc[f["reduction"].idxmax(), "param"]) if len(f) else math.nan}


def harm_onset(table: pd.DataFrame, scheduler: str, family: str) -> dict:
    """The smallest nominal step of ``family`` whose whole reduction CI lies below 0 (T@τ worse than
    the baseline), with its measured step length (NaN where none is)."""
    f = table[(table["scheduler"] == scheduler) & (table["family"] == family)].sort_values("param")
    bad = f[f["reduction_ci_high"] < 0]
    if not len(bad):
        return {"param": math.nan, "step_median": math.nan, "reduction": math.nan}
    r = bad.iloc[0]
    return {"param": float(r["param"]), "step_median": float(r["step_median"]), "reduction": float(r["reduction"])}


def loess_raw(table: pd.DataFrame, scheduler: str, frac: float = 2 / 3) -> pd.DataFrame:
    """LOESS (statsmodels lowess) of the raw rule's reduction over log10 η, at the grid's η."""
    from statsmodels.nonparametric.smoothers_lowess import lowess
    f = table[(table["scheduler"] == scheduler) & (table["family"] == "hypergradient-raw")]
    f = f[np.isfinite(f["reduction"].to_numpy(float))].sort_values("param")
    if len(f) < 3:
        return pd.DataFrame(columns=["eta", "step_median", "reduction_loess"])
    fit = lowess(f["reduction"].to_numpy(float), np.log10(f["param"].to_numpy(float)), frac=frac,
                 return_sorted=False)
    return pd.DataFrame({"eta": f["param"].to_numpy(float), "step_median": f["step_median"].to_numpy(float),
                         "reduction_loess": fit})


# ----------------------------------------------------------------------------- figure and section
_STYLE = {"oracle": ("C3", "o"), "oracle-greedy": ("C1", "s"), "hypergradient-normalized": ("C0", "^"),
          "hypergradient-raw": ("C2", "v"), "random-dir": ("C7", "D"), "placebo": ("k", "x")}


def frontier_figure(table: pd.DataFrame, out_dir: str | Path, name: str = "frontier") -> list[Path]:
    """T@τ reduction against measured unit-cube step length, one panel per scheduler: each family
    with CI bars, LOESS over log η for the raw rule, placebo as a band, the claim as a line.
    Writes PNG and PDF; returns their paths."""
    # a Figure on the Agg canvas, not pyplot: drawing a report never switches a caller's backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scheds = list(dict.fromkeys(table["scheduler"]))
    fig = Figure(figsize=(6.0 * max(len(scheds), 1), 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(scheds), 1), squeeze=False, sharey=True)
    pos = table["step_median"].to_numpy(float)
    pos = pos[np.isfinite(pos) & (pos > 0)]
    floor = float(pos.min()) / 2 if len(pos) else 1.0  # zero-length steps (placebo) are drawn here
    vals = table[["reduction", "reduction_ci_low", "reduction_ci_high"]].to_numpy(float)
    vals = vals[np.isfinite(vals)]
    span = (float(vals.min()), float(vals.max())) if len(vals) else (-1.0, 1.0)
    pad = 0.05 * (span[1] - span[0] or 1.0)
    ylim = (min(span[0], 0.0) - pad, max(span[1], CLAIM) + pad)
    for ax, s in zip(axes[0], scheds):
        t = table[table["scheduler"] == s]
        for j, fam in enumerate(dict.fromkeys(t["family"])):
            f = t[t["family"] == fam].sort_values(["step_median", "param"])
            color, marker = _STYLE.get(fam, ("C4", "x"))
            # families share radii: a small horizontal dodge keeps their bars apart
            x = np.maximum(f["step_median"].to_numpy(float), floor) * 1.06 ** j
            y = f["reduction"].to_numpy(float)
            # an infinite CI end (median T@τ not reached in the resample) runs to the panel's edge
            lo = np.nan_to_num(f["reduction_ci_low"].to_numpy(float), neginf=ylim[0], posinf=ylim[1])
            hi = np.nan_to_num(f["reduction_ci_high"].to_numpy(float), neginf=ylim[0], posinf=ylim[1])
            err = np.clip(np.vstack([y - lo, hi - y]), 0, None)
            label = f"{fam} (step 0, drawn at the left edge)" if fam == "placebo" else fam
            ax.errorbar(x, y, yerr=err, fmt=marker, color=color, capsize=2, ms=5, label=label,
                        ls="none" if fam in ("hypergradient-raw", "placebo") else "-", lw=1)
        lo = loess_raw(t, s)
        if len(lo):
            ax.plot(np.maximum(lo["step_median"], floor), lo["reduction_loess"], color=_STYLE["hypergradient-raw"][0],
                    lw=1.5, label="raw η, LOESS over log η")
        ax.axhline(CLAIM, color="k", lw=0.8, ls=":", label=f"claim ({CLAIM:.0%})")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set_ylim(*ylim)
        ax.set(xlabel="median step ‖x′ − x‖ (unit cube)", title=f"{s}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("reduction of median T@τ vs baseline")
    axes[0][-1].legend(fontsize=7, loc="best")
    paths = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{name}.{ext}"
        fig.savefig(p, dpi=130)
        paths.append(p)
    return paths


def _spct(x) -> str:
    return pct(x, signed=True)


def markdown_section(table: pd.DataFrame, figure: str | None = None, level: int = 2) -> str:
    """The report section "What a one-shot warm start can buy": the frontier table, the figure, the
    radius at which the claim becomes reachable (oracle) and where harm begins, per scheduler."""
    h = "#" * level
    lines = [f"{h} What a one-shot warm start can buy", ""]
    lines.append("Median T@τ reduction against the baseline (paired by seed; CI and test as in the comparison "
                 "table) for warm starts of growing size. Step: median unit-cube ‖x′ − x‖ over the variant's "
                 "trials. `oracle` moves to the surrogate's best predicted final accuracy within the radius at "
                 "zero cost, the ceiling of any one-shot warm start of that size; `oracle-greedy` to the best "
                 "predicted first-epoch accuracy; `random-dir` in a random direction; `placebo` pays the "
                 "hyper-gradient's cost and keeps ψ.")
    lines.append("")
    if figure:
        lines += [f"![frontier]({figure})", ""]
    for s in dict.fromkeys(table["scheduler"]):
        t = table[table["scheduler"] == s]
        c = claim_radius(t, s)
        n = t["n"].to_numpy(float)
        n_txt = f"{int(np.nanmin(n))}" if np.nanmin(n) == np.nanmax(n) else f"{int(np.nanmin(n))}–{int(np.nanmax(n))}"
        lines.append(f"**{s}** (n = {n_txt} paired seeds per point)")
        lines.append("")
        if np.isfinite(c["best_reduction"]):
            if np.isfinite(c["radius_point"]):
                reach = (f"the oracle reaches the claimed {CLAIM:.0%} at radius {c['radius_point']:g}"
                         + (f" (CI lower bound above it from radius {c['radius_ci']:g})" if np.isfinite(c["radius_ci"])
                            else "; no radius has its CI lower bound above it"))
            else:
                reach = (f"no oracle radius reaches the claimed {CLAIM:.0%}: the best is {_spct(c['best_reduction'])} "
                         f"at radius {c['best_radius']:g}")
            lines.append(f"- Claim: {reach}.")
        harms = []
        for fam in ("hypergradient-raw", "hypergradient-normalized", "random-dir", "oracle-greedy", "oracle"):
            if not (t["family"] == fam).any():
                continue
            hm = harm_onset(t, s, fam)
            pn = t.loc[t["family"] == fam, "param_name"].iloc[0]
            harms.append(f"{fam}: none in the grid" if not np.isfinite(hm["param"]) else
                         f"{fam}: from {pn} = {hm['param']:g} (step {num(hm['step_median'])}, {_spct(hm['reduction'])})")
        if harms:
            lines.append("- Harm (whole CI below 0) begins — " + "; ".join(harms) + ".")
        lines.append("")
        lines.append("| family | parameter | step (median) | n | reduction | 95 % CI | p | test-acc drop (pp) |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for _, r in t.iterrows():
            par = f"{r['param_name']} = {r['param']:g}" if r["param_name"] else r["variant"]
            lines.append(f"| {r['family']} | {par} | {num(r['step_median'])} | {num(r['n'], '{:.0f}')} | "
                         f"{_spct(r['reduction'])} | {_spct(r['reduction_ci_low'])} to {_spct(r['reduction_ci_high'])} | "
                         f"{num(r['p_value'], '{:.2g}')} | {num(100 * r['test_acc_drop'], '{:+.2f}')} |")
        lines.append("")
    return "\n".join(lines)
