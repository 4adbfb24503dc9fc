"""``make_report``: a results store in, report.md, summary.json, metrics.parquet and figures out."""
from __future__ import annotations

import os
from pathlib import Path

from ...atomic import atomic_path
from ...store import write_json_atomic, write_parquet_atomic
from .. import stats
from .context import (ReportContext, as_float, check_variants, frontier_of, groups_of, label_noise_table, load_stores,
                      resolve_baseline, taus_by_task, variant_order)
from .figures import draw_figures
from .markdown import markdown
from .summary import jsonable, summary


# ---------------------------------------------------------------- entry point
def make_report(results_dir: str | os.PathLike | list, out_dir: str | os.PathLike | None = None,
                show_progress: bool = True, n_boot: int = 10000) -> dict:
    """Write report.md, summary.json, metrics.parquet and figures (PNG + PDF) for a results store.

    Args:
        results_dir: a directory written by a sweep (results.parquet, replicates.parquet,
            config.yaml, provenance.json), or a list of them over different tasks with the same
            variants, budget and report settings (exp-1 on clean and noisy labels: figure f).
        out_dir: where to write; default ``results_dir/report`` (required for several stores).
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
    dirs = [Path(d) for d in results_dir] if isinstance(results_dir, (list, tuple)) else [Path(results_dir)]
    if len(dirs) > 1 and out_dir is None:
        raise ValueError(f"a report over {len(dirs)} results directories needs an output directory (--out)")
    results, replicates, cfg, prov = load_stores(dirs)
    rdir = ", ".join(map(str, dirs))
    out = Path(out_dir) if out_dir is not None else dirs[0] / "report"
    rep_cfg = cfg.get("report") or {}

    results = stats.fill_keys(results)
    if results.empty:
        raise ValueError(f"results directory {rdir!r} holds an empty results.parquet")
    variants = variant_order(results, cfg)
    check_variants(results, cfg, rdir)
    baseline = resolve_baseline(results, cfg, variants)
    variants = [baseline] + [v for v in variants if v != baseline]
    if len(variants) < 2:
        raise ValueError(f"results directory {rdir!r} holds only the baseline variant {baseline!r}: nothing to "
                         f"compare with it (report it together with a store of the same task that has others)")
    groups = groups_of(results)
    for g in groups:
        sub = results[(results["task"] == g[0]) & (results["scheduler"] == g[1])]
        if not (sub["variant"] == baseline).any():
            raise ValueError(f"baseline variant {baseline!r} has no results for task {g[0]!r}, scheduler "
                             f"{g[1]!r}; variants present there: {sorted(sub['variant'].unique())}")

    taus = taus_by_task(results, baseline, rep_cfg, replicates=replicates,
                        budget=None if replicates is not None and "budget_s" in replicates.columns
                        else as_float(cfg.get("budget_s")))
    out.mkdir(parents=True, exist_ok=True)   # only once the inputs passed every check
    metrics = stats.per_replicate_metrics(
        results, replicates, {t: v["tau"] for t, v in taus.items()},
        default_budget=as_float(cfg.get("budget_s")), n_workers=as_float(cfg.get("n_workers")),
        show_progress=show_progress)
    order = {v: i for i, v in enumerate(variants)}
    metrics = metrics.sort_values(["task", "scheduler", "variant", "seed"],
                                  key=lambda s: s.map(order) if s.name == "variant" else s).reset_index(drop=True)
    comparison = stats.compare_to_baseline(metrics, baseline, n_boot=n_boot, seed=0)
    verd = stats.verdict(metrics, baseline, comparison=comparison)
    trials = stats.trial_table(results)
    noise = label_noise_table(comparison, metrics, baseline, n_boot)

    ctx = ReportContext(results=results, metrics=metrics, comparison=comparison, trials=trials, baseline=baseline,
                        variants=variants, groups=groups, taus=taus, noise=noise, n_boot=n_boot)
    ctx.frontier, ctx.frontier_note = frontier_of(comparison, trials)
    figures = draw_figures(ctx, out)

    summ = summary(ctx, rdir, cfg, prov, verd, figures)
    write_parquet_atomic(metrics, out / "metrics.parquet")
    write_json_atomic(jsonable(summ), out / "summary.json")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(ctx, rdir, cfg, prov, verd, figures, summ))
    return {"out_dir": str(out), "report_md": str(out / "report.md"), "summary_json": str(out / "summary.json"),
            "metrics_parquet": str(out / "metrics.parquet"), "figures": figures, "summary": jsonable(summ)}

