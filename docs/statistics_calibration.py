"""Calibrate the verdict's statistics on synthetic censored T@τ; writes docs/statistics_calibration.json
and docs/figures/statistics_*.png, which docs/statistics.md shows.

    python docs/statistics_calibration.py            # the full study (minutes)
    python docs/statistics_calibration.py --quick    # a smoke run with few experiments
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ohgw_bench.results import write_json_atomic
from ohgw_bench.stat_calibration import SyntheticLaw, run_study

DOCS = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(DOCS / "statistics_calibration.json"))
    args = ap.parse_args(argv)
    k = 10 if args.quick else 1
    smooth, clumped = SyntheticLaw(), SyntheticLaw(clump_s=3.0)   # clumped: a stress test with many ties
    studies = []

    def study(name, n, n_exp, reduction, law, n_boot, seed):
        r = run_study(n, max(20, n_exp // k), reduction, law=law, n_boot=n_boot, seed=seed, progress=True)
        r["name"] = name
        studies.append(r)
        print(f"{name}: n={n} exps={r['n_experiments']} true={r['true_reduction']:.3f} "
              f"reject={r['rejection_rate']:.3f} {r['rejection_ci95']} coverage={r['coverage']:.3f}", file=sys.stderr)

    # false-positive rate and coverage under the null, at the protocol's two sizes
    study("null", 32, 2000, 0.0, smooth, 1000, 1)
    study("null", 1000, 500, 0.0, smooth, 400, 3)
    study("null", 32, 1000, 0.0, clumped, 1000, 2)
    # power curve at n = 32 (25 % of the baseline censored); one small effect at n = 1000
    for i, r in enumerate((0.05, 0.10, 0.15, 0.20, 0.30)):
        study("effect", 32, 600, r, smooth, 1000, 10 + i)
    study("effect", 32, 600, 0.15, clumped, 1000, 20)
    study("effect", 1000, 100, 0.05, smooth, 400, 21)
    write_json_atomic({"studies": studies, "quick": args.quick}, Path(args.out))
    _figures(studies, DOCS / "figures")
    return 0


def _figures(studies: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for clump, marker in ((0.0, "o"), (3.0, "s")):
        for n, color in ((32, "tab:blue"), (1000, "tab:red")):
            pts = sorted((s for s in studies if s["n_pairs"] == n and s["law"]["clump_s"] == clump),
                         key=lambda s: s["true_reduction"])
            if not pts:
                continue
            x = np.array([s["true_reduction"] for s in pts])
            y = np.array([s["rejection_rate"] for s in pts])
            lo = np.array([s["rejection_ci95"][0] for s in pts])
            hi = np.array([s["rejection_ci95"][1] for s in pts])
            label = f"n = {n} pairs, {f'clumped ({clump:g} s)' if clump else 'continuous'} T@τ"
            ax1.errorbar(x, y, yerr=[y - lo, hi - y], marker=marker, color=color, capsize=3, label=label,
                         ls=":" if clump else "-")
            cov = np.array([s["coverage"] for s in pts])
            clo = np.array([s["coverage_ci95"][0] for s in pts])
            chi = np.array([s["coverage_ci95"][1] for s in pts])
            ax2.errorbar(x, cov, yerr=[cov - clo, chi - cov], marker=marker, color=color, capsize=3, label=label,
                         ls=":" if clump else "-")
    ax1.axhline(0.05, color="k", lw=0.8, ls="--", label="α = 0.05")
    ax1.set(xlabel="true reduction of the median T@τ", ylabel="share of experiments with p < 0.05",
            title="False-positive rate (x = 0) and power", ylim=(0, 1.02))
    ax2.axhline(0.95, color="k", lw=0.8, ls="--", label="nominal 95 %")
    ax2.set(xlabel="true reduction of the median T@τ", ylabel="share of CIs covering the truth",
            title="Coverage of the paired-bootstrap 95 % CI", ylim=(0.85, 1.005))
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    fig.suptitle("Verdict statistics on synthetic censored T@τ (25 % of the baseline censored; Wilson 95 % CIs)")
    fig.savefig(out / "statistics_calibration.png", dpi=130)


if __name__ == "__main__":
    sys.exit(main())
