"""report.md: the tables, figures, definitions and provenance of a report, section by section."""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

import pandas as pd
import yaml

from ...space import PSI_KEYS
from ...textfmt import fixed, pct
from .. import frontier, stats
from .context import ReportContext, group_title, time_unit
from .figures import FIGURES


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


def markdown(ctx: ReportContext, rdir: str, cfg: dict, prov: dict, verd: pd.DataFrame, figures: dict,
             summary: dict) -> str:
    """report.md: the sections below, in order."""
    chunks = _header(ctx, rdir, cfg, summary) + _tau_section(ctx)
    for g in ctx.groups:
        chunks += ([f"## {group_title(g)}\n"] + _metrics_table(ctx, g, summary) + _comparison_table(ctx, g)
                   + _verdict_table(verd, g) + _shift_table(ctx, g, summary))
    chunks += (_frontier_section(ctx) + _label_noise_section(ctx) + _figures_section(figures) + _definitions(ctx)
               + _provenance(prov, cfg, summary))
    return "\n".join(chunks)


def _header(ctx: ReportContext, rdir: str, cfg: dict, summary: dict) -> list[str]:
    """Title, what the results are, how to read the statistics, and missing replicates."""
    seeds = summary["seeds"]
    lines = [f"# ohgw-bench report: {summary['name']}\n",
             f"Results: `{rdir}` · backend: {summary['backend'] or 'unknown'} · baseline: `{ctx.baseline}` · "
             f"variants: {', '.join(f'`{v}`' for v in ctx.variants)} · "
             f"{len(ctx.metrics)} replicates over {len(seeds)} seeds ({_seed_str(seeds)}) · "
             f"generated {_dt.datetime.now().isoformat(timespec='seconds')}\n",
             "All statistics are over seeds (one replicate = one HPO run) and given as median [IQR], n. "
             "T@τ of a replicate that never reaches τ is right-censored at its budget: T@τ statistics are "
             "Kaplan–Meier estimates, never averages of budget values, and the number censored is given beside "
             "each. Comparisons are seed-paired within a task and scheduler; only seeds both sides ran enter "
             "them (see Definitions).\n"]
    missing = _missing_replicates(ctx, cfg)
    if missing:
        lines.append(f"**Incomplete sweep:** {len(missing)} configured (scheduler, variant, seed) replicates have "
                     f"no results, e.g. {missing[:5]}.\n")
    return lines


def _tau_section(ctx: ReportContext) -> list[str]:
    """τ per task and where it came from."""
    lines = ["## Target τ\n"]
    for t, info in ctx.taus.items():
        how = (f"auto: the {info['quantile']:g}-quantile of the baseline's final best val acc"
               if info["source"] == "auto" else "from config.yaml report.tau")
        lines.append(f"- `{t or 'task n/a'}`: τ = {info['tau']:.4f} ({how}); baseline final best val acc "
                     f"{_mi(info['baseline_final_best'], 100, 2, ' %')} replicates.")
    return lines + [""]


def _metrics_table(ctx: ReportContext, g: tuple[str, str], summary: dict) -> list[str]:
    """Each variant's metrics in one (task, scheduler) group."""
    unit, scale = time_unit(float(ctx.group_metrics(g)["budget_s"].max()))
    rows = [[f"`{pv['variant']}`", pv["n"], pv["n_censored"],
             _km(pv["t_tau_s"], 1 / scale, 2), _km(pv["t_tau_gpu_h"], 1, 3),
             _mi(pv["final_test_acc"], 100, 2, " %"), _mi(pv["auc"], 1, 4),
             _mi(pv["ws_overhead_share"], 100, 2, " %"), _mi(pv["n_trials"], 1, 0),
             _mi(pv["budget_s"], 1 / scale, 1)] for pv in _in_group(summary["per_variant"], g)]
    return ["### Metrics per variant\n",
            _table(["variant", "n", "censored", f"T@τ ({unit}), KM median (95 % CI) [IQR]", "T@τ (GPU-h)",
                    "final test acc", "AUC (best val / budget)", "warm-start share", "trials", f"budget ({unit})"],
                   rows),
            ""]


def _comparison_table(ctx: ReportContext, g: tuple[str, str]) -> list[str]:
    """Each variant against the baseline on paired seeds."""
    unit, scale = time_unit(float(ctx.group_metrics(g)["budget_s"].max()))
    c = ctx.comparison
    c = c[(c["task"] == g[0]) & (c["scheduler"] == g[1])] if not c.empty else c
    if c.empty:
        return ["### Paired comparison with the baseline\n", "No variant besides the baseline.\n"]
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
    return ["### Paired comparison with the baseline\n",
            _table(["variant", "n pairs", "censored base / var", f"KM median T@τ ({unit}) base → var",
                    "reduction of the KM median (paired bootstrap CI, p)",
                    "reached τ first: variant / baseline / tie (sign test)", "log-rank",
                    "median test acc base → var", f"seed std T@τ ({unit}), pairs that both reached τ"], rows),
            ""]


def _verdict_table(verd: pd.DataFrame, g: tuple[str, str]) -> list[str]:
    """Each variant against the pre-registered criteria."""
    vd = verd[(verd["task"] == g[0]) & (verd["scheduler"] == g[1])]
    if vd.empty:
        return ["### Verdict (pre-registered criteria)\n", "No variant to judge.\n"]
    rows = [[f"`{r.variant}`", r.criterion, _crit_value(r), _crit_thr(r),
             {"pass": "**PASS**", "fail": "fail"}.get(r.decision, "*undecidable*"), r.n,
             f"{r.n_censored_base} / {r.n_censored_var}", r.note]
            for r in vd.rename(columns={"pass": "passed"}).itertuples()]
    return ["### Verdict (pre-registered criteria)\n",
            _table(["variant", "criterion", "value", "threshold", "result", "n pairs", "censored base / var", "note"],
                   rows),
            ""]


def _shift_table(ctx: ReportContext, g: tuple[str, str], summary: dict) -> list[str]:
    """How far the warm starts moved the configurations."""
    kl = _in_group(summary["hyperparameter_kl"], g)
    rows = []
    for pv in _in_group(summary["per_variant"], g):
        cells = []
        for k in PSI_KEYS:
            s = _mi(pv["shift"][k], 1, 4)
            klr = [x for x in kl if x["variant"] == pv["variant"] and x["key"] == k]
            if klr:
                k0 = klr[0]
                s += f"; KL {fixed(k0['kl'], 3)} (trials {k0['n_trials_var']} vs {k0['n_trials_base']})"
            cells.append(s)
        rows.append([f"`{pv['variant']}`"] + cells)
    return ["### Hyperparameter shift\n",
            "Mean |x′ − x| per replicate (median [IQR] over replicates), and KL(x′ of the variant ‖ x′ of "
            "the baseline) over pooled trials (20 bins, ε = 1e-6 smoothing).\n",
            _table(["variant"] + list(PSI_KEYS), rows), ""]


def _frontier_section(ctx: ReportContext) -> list[str]:
    """What a one-shot warm start can buy, where the sweep holds warm starts of several sizes."""
    if ctx.frontier.empty:
        return []
    return [frontier.markdown_section(ctx.frontier, "fig_g_frontier.png", level=2), ""]


def _label_noise_section(ctx: ReportContext) -> list[str]:
    """The speed-up on clean and on noisy labels, where the store holds both."""
    if ctx.noise.empty:
        return []
    rows = [[r.scheduler, f"`{r.variant}`", f"`{r.clean_task}` → `{r.noisy_task}`",
             f"{pct(r.reduction_clean)} (CI {pct(r.ci_clean[0])} to {pct(r.ci_clean[1])}, n={r.n_clean})",
             f"{pct(r.reduction_noisy)} (CI {pct(r.ci_noisy[0])} to {pct(r.ci_noisy[1])}, n={r.n_noisy})",
             f"{pct(r.difference, signed=True)} (CI {pct(r.ci_difference[0], signed=True)} to "
             f"{pct(r.ci_difference[1], signed=True)})",
             fixed(r.retained, 2)] for r in ctx.noise.itertuples()]
    return ["## Speed-up retained under label noise\n",
            _table(["scheduler", "variant", "clean → noisy task", "T@τ reduction, clean (bootstrap CI)",
                    "T@τ reduction, noisy (bootstrap CI)", "noisy − clean (independent bootstrap CI)",
                    "retained (noisy / clean, point estimates)"], rows),
            "The difference's CI resamples the seed pairs of each task independently (the tasks share seed "
            "numbers, not randomness); where it includes 0 the data do not show that label noise changes the "
            "effect.\n",
            ""]


def _figures_section(figures: dict) -> list[str]:
    """Each figure, or why it was skipped."""
    lines = ["## Figures\n"]
    for name, f in figures.items():
        if "files" in f:
            png = Path(f["files"][0]).name
            lines.append(f"- **{name}**: {FIGURES[name]} ([PDF]({Path(f['files'][1]).name}))\n\n  ![{name}]({png})")
        else:
            lines.append(f"- **{name}**: skipped: {f['skipped']}.")
    return lines + [""]


def _definitions(ctx: ReportContext) -> list[str]:
    """What every statistic of the report means, and the criteria."""
    return ["## Definitions\n",
            "- T@τ: first replicate-clock time at which any result has val acc ≥ τ; a replicate that never "
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
            "KM medians give one reduction r*), the k-th smallest to the k-th largest r*, "
            "k = ⌈0.025 · resamples⌉. Test (the verdict's p): paired permutation test of the same statistic: with no effect the two "
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
            "(the note says why); a variant passes overall only when all four criteria pass.",
            "",
            "| criterion | rule |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in stats.CRITERIA.items()),
            ""]


def _provenance(prov: dict, cfg: dict, summary: dict) -> list[str]:
    """Where the results came from: revision, device, versions, config."""
    seeds = summary["seeds"]
    lines = ["## Provenance\n", f"- git revision: `{prov.get('git_revision', 'unknown')}`",
             f"- device: {prov.get('device_name', 'unknown')}; host: {prov.get('host', 'unknown')}",
             f"- backend: {summary['backend'] or 'unknown'}; seeds: {_seed_str(seeds)} (n={len(seeds)})"]
    vers = prov.get("versions") or {}
    if vers:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    extra = {k: v for k, v in prov.items() if k not in ("git_revision", "device_name", "host", "versions")}
    if extra:
        lines.append("- other provenance: `" + json.dumps(extra, sort_keys=True, default=str)[:2000] + "`")
    return lines + ["\nconfig.yaml:\n\n```yaml\n" + (yaml.safe_dump(cfg, sort_keys=False).strip() or "{}") + "\n```\n"]


def _in_group(records: list[dict], g: tuple[str, str]) -> list[dict]:
    """The summary's records of one (task, scheduler) group."""
    return [r for r in records if (r["task"], r["scheduler"]) == g]


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


def _missing_replicates(ctx: ReportContext, cfg: dict) -> list[tuple]:
    try:
        from ...config import seed_list
        seeds = seed_list(cfg["seeds"]) if "seeds" in cfg else []
    except Exception:   # an old or hand-written config: nothing to check against
        return []
    have = set(zip(ctx.metrics["scheduler"], ctx.metrics["variant"], ctx.metrics["seed"]))
    scheds = cfg.get("schedulers") or sorted(ctx.metrics["scheduler"].unique())
    return [(s, v, seed) for s in scheds for v in ctx.variants for seed in seeds if (s, v, seed) not in have]

