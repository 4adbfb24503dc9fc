"""What the report is made of: the configured variants and baseline, τ per task, the (task, scheduler)
groups, and the context that every figure and table reads (``ReportContext``)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...store import merge_stores
from .. import frontier, stats

_NOISE = re.compile(r"[-_]noise\d*$")


@dataclass
class ReportContext:
    """What every figure and table reads."""
    results: pd.DataFrame        # results.parquet rows, task/scheduler filled
    metrics: pd.DataFrame        # one row per replicate (``stats.per_replicate_metrics``)
    comparison: pd.DataFrame     # each variant against the baseline (``stats.compare_to_baseline``)
    trials: pd.DataFrame         # one row per trial (``stats.trial_table``)
    baseline: str
    variants: list[str]          # the baseline first, then the config's order
    groups: list[tuple[str, str]]  # (task, scheduler)
    taus: dict[str, dict]        # task -> τ and where it came from
    noise: pd.DataFrame          # reductions on clean vs noisy tasks (``label_noise_table``)
    n_boot: int
    frontier: pd.DataFrame = field(default_factory=pd.DataFrame)  # empty: no frontier (frontier_note says why)
    frontier_note: str = ""

    def group_metrics(self, g: tuple[str, str]) -> pd.DataFrame:
        m = self.metrics
        return m[(m["task"] == g[0]) & (m["scheduler"] == g[1])]

    def group_results(self, g: tuple[str, str]) -> pd.DataFrame:
        r = self.results
        return r[(r["task"] == g[0]) & (r["scheduler"] == g[1])]

    def group_variants(self, g) -> list[str]:
        present = set(self.group_metrics(g)["variant"])
        return [v for v in self.variants if v in present]


def group_title(g: tuple[str, str]) -> str:
    return " / ".join(x for x in g if x) or "all"


def time_unit(max_s: float) -> tuple[str, float]:
    if not math.isfinite(max_s) or max_s < 2 * 3600:
        return ("s", 1.0) if not math.isfinite(max_s) or max_s < 600 else ("min", 60.0)
    return "h", 3600.0



# ---------------------------------------------------------------- stores, config, baseline, τ
# Keys that must agree for stores to be reported together: the same budget, workers and τ rule (and,
# across tasks, the same arms: see store.merge_stores).
_SHARED_KEYS = ("budget_s", "n_workers", "report")


def load_stores(dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """(results, replicates, config, provenance) of one store, or of several stores read as one: other
    arms of the same task, or other tasks with the same arms (one-line error naming the key otherwise)."""
    results, replicates, cfg, prov, _ = merge_stores(dirs, _SHARED_KEYS)
    return results, replicates, cfg, prov


def as_float(x) -> float | None:
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


def variant_order(results: pd.DataFrame, cfg: dict) -> list[str]:
    """Config order first (that is the order the reader chose), then order of appearance."""
    present = list(dict.fromkeys(results["variant"].astype(str)))
    return [v for v in _config_variants(cfg) if v in present] + \
        [v for v in present if v not in _config_variants(cfg)]


def check_variants(results: pd.DataFrame, cfg: dict, rdir: str) -> None:
    present = sorted(results["variant"].astype(str).unique())
    missing = [v for v in _config_variants(cfg) if v not in present]
    if missing:
        raise ValueError(f"variants {missing} of config.yaml have no results in {rdir!r}; "
                         f"variants present: {present}")


def resolve_baseline(results: pd.DataFrame, cfg: dict, variants: list[str]) -> str:
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


def taus_by_task(results: pd.DataFrame, baseline: str, rep_cfg: dict, budget: float | None = None,
          replicates: pd.DataFrame | None = None) -> dict[str, dict]:
    """τ per task: from config.yaml report.tau (a number, or a mapping task -> number) or auto.

    Auto τ pools the baseline replicates of every scheduler on the task, so that all schedulers
    of a task race to the same target.
    """
    q = as_float(rep_cfg.get("tau_quantile"))
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
        tau = as_float(t)
        if tau is None or not math.isfinite(tau):
            raise ValueError(f"report.tau must be a number or 'auto', but got tau={t!r}")
        if tau > 1.0 and np.nanmax(sub["val_acc"].to_numpy(float)) <= 1.0:
            raise ValueError(f"report.tau must be a fraction like val_acc (at most 1), but got tau={tau!r}")
        out[task] = {"tau": tau, "source": "config", "quantile": None, "baseline_final_best": spread._asdict()}
    return out


def groups_of(results: pd.DataFrame) -> list[tuple[str, str]]:
    return [tuple(g) for g in results[["task", "scheduler"]].drop_duplicates().sort_values(
        ["task", "scheduler"]).itertuples(index=False)]


def label_noise_table(comparison: pd.DataFrame, metrics: pd.DataFrame, baseline: str,
                      n_boot: int) -> pd.DataFrame:
    """Per noisy task ("<clean>-noise10"), each variant's reduction there and on the clean task, and
    their difference (noisy − clean) with a bootstrap CI: whether label noise changes the effect."""
    if comparison.empty or comparison["task"].nunique() < 2:
        return pd.DataFrame()
    rows = []
    tasks = set(comparison["task"])
    # every variant's replicates joined with their baseline partners once; arms looked up per row below
    pairs = {k: g for k, g in stats.paired(metrics, baseline, ["t_tau_s", "censored"])
             .groupby(["task", "scheduler", "variant"], sort=False)}
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
            arms = [(pr["base_t_tau_s"], pr["base_censored"], pr["var_t_tau_s"], pr["var_censored"])
                    for pr in (pairs[(task, r["scheduler"], r["variant"])] for task in (clean, noisy))]
            diff = stats.reduction_difference(*arms, n_boot=n_boot, seed=0)
            rows.append({"scheduler": r["scheduler"], "variant": r["variant"], "clean_task": clean,
                         "noisy_task": noisy, "reduction_clean": c["reduction"], "n_clean": c["n"],
                         "ci_clean": (c["reduction_ci_low"], c["reduction_ci_high"]),
                         "reduction_noisy": r["reduction"], "n_noisy": r["n"],
                         "ci_noisy": (r["reduction_ci_low"], r["reduction_ci_high"]),
                         "retained": r["reduction"] / c["reduction"]
                         if math.isfinite(c["reduction"]) and c["reduction"] != 0 else float("nan"),
                         "difference": diff[0], "ci_difference": (diff[1], diff[2])})
    return pd.DataFrame(rows)



def frontier_of(comparison: pd.DataFrame, trials: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The step-size frontier (``frontier.frontier_table``) when the sweep holds a warm-start family at
    two or more step sizes; otherwise an empty table and why there is none."""
    if comparison.empty:
        return pd.DataFrame(), "no variant is paired with the baseline"
    try:
        table = frontier.frontier_table(comparison, trials)
    except ValueError as e:   # a hand-made store without x / x′ columns
        return pd.DataFrame(), str(e)
    sized = table[table["family"].isin(frontier.SIZED_FAMILIES) & np.isfinite(table["param"].to_numpy(float))]
    if sized.groupby(["scheduler", "family"])["param"].nunique().max() < 2 if len(sized) else True:
        return pd.DataFrame(), "no warm-start family at two or more step sizes; no frontier to draw"
    return table, ""
