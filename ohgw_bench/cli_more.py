"""Verbs beyond train/hypergrad: collect, fit, sweep, report, verify, calibrate."""
from __future__ import annotations

import sys


def cmd_collect(args) -> int:
    from .collect import run_collect
    from .config import load_collect
    cfg = load_collect(args.config, {"workers": args.workers} if args.workers else None)
    phases = {"all": ("hypergrads", "curves"), "curves": ("curves",), "hypergrads": ("hypergrads",)}[args.phase]
    out = run_collect(cfg, phases, progress=not args.no_progress)
    print(f"collected into {out}", file=sys.stderr)
    return 0


def add_verbs(sub) -> None:
    c = sub.add_parser("collect", help="real full-budget runs + hyper-gradients at init, for the surrogate")
    c.add_argument("config")
    c.add_argument("--phase", choices=["all", "curves", "hypergrads"], default="all")
    c.add_argument("--workers", type=int, default=None)
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(fn=cmd_collect)
