"""Verbs of analysis: ``report`` a results store, ``verify`` the surrogate against real sweeps."""
from __future__ import annotations

import json
import sys

from ..analysis.verify import REQUIRED, run_verify


def register(sub) -> None:
    r = sub.add_parser("report", help="metrics, statistics, verdict and figures of a results store")
    r.add_argument("results_dir", nargs="+", help="one results store, or several over different tasks with "
                   "the same variants (reported together: per-task verdicts and the label-noise figure)")
    r.add_argument("--out", default=None, help="default RESULTS_DIR/report; required with several stores")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(fn=cmd_report)
    v = sub.add_parser("verify", help="check the surrogate against real runs (config and HPO level)")
    v.add_argument("surrogate_dir")
    v.add_argument("--real", required=True, action="append",
                   help="results directory of a real sweep (repeat to merge stores of the same task and budget)")
    v.add_argument("--sim-seeds", type=int, default=200)
    v.add_argument("--heldout-curves", default=None, help="curves.parquet of real runs the surrogate never saw")
    v.add_argument("--out", default=None, help="default REAL/verify")
    v.add_argument("--min-real", type=int, default=10,
                   help="variants with fewer real replicates are reported but enter no check (default 10)")
    v.add_argument("--require", default=None,
                   help="comma-separated scheduler/variant keys that must have --min-real real replicates "
                        f"(default {','.join(REQUIRED)}; only schedulers the real sweep ran)")
    v.add_argument("--gains", default=None,
                   help="paired real runs of `ohgw-bench gains` (default SURROGATE_DIR/gains, if it exists)")
    v.add_argument("--no-progress", action="store_true")
    v.set_defaults(fn=cmd_verify)


def cmd_report(args) -> int:
    from ..analysis.report.make import make_report
    dirs = args.results_dir if len(args.results_dir) > 1 else args.results_dir[0]
    rep = make_report(dirs, out_dir=args.out, show_progress=not args.no_progress)
    print(f"wrote {rep['out_dir']}", file=sys.stderr)
    return 0


def cmd_verify(args) -> int:
    if args.min_real < 1:
        raise ValueError(f"--min-real must be >= 1, got {args.min_real}")
    req = tuple(x for x in args.require.split(",") if x) if args.require is not None else REQUIRED
    for k in req:
        if "/" not in k:
            raise ValueError(f"--require entries are scheduler/variant, got {k!r}")
    res = run_verify(args.surrogate_dir, args.real, out=args.out, sim_seeds=args.sim_seeds,
                     heldout_curves=args.heldout_curves, progress=not args.no_progress, min_real=args.min_real,
                     required=req, gains_dir=args.gains)
    print(json.dumps({"pass": res["pass"], "checks": res["checks"]}, indent=2))
    return 0
