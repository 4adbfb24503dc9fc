"""summary.json: everything the report states, as data."""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ...space import PSI_KEYS
from .. import stats
from .context import ReportContext


def _per_variant(ctx: ReportContext) -> list[dict]:
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


def _kl_table(ctx: ReportContext) -> list[dict]:
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


def summary(ctx: ReportContext, rdir: str, cfg: dict, prov: dict, verd: pd.DataFrame, figures: dict) -> dict:
    taus = ctx.taus
    overall = verd[verd["criterion"] == "overall"]
    return {
        "results_dir": rdir, "name": cfg.get("name", Path(rdir).name),
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
        "frontier": ctx.frontier.to_dict("records") if not ctx.frontier.empty else [],
        "figures": figures,
        "provenance": prov,
    }


def _first(s: pd.Series):
    s = s.dropna()
    return str(s.iloc[0]) if len(s) else None


def jsonable(x):
    """NaN/inf -> null and numpy scalars -> Python, so that summary.json is strict JSON."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (pd.Timestamp, _dt.datetime)):
        return x.isoformat()
    return x

