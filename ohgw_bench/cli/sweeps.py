"""The ``sweep`` verb: schedulers × warm-start variants × paired seeds, into a results store."""
from __future__ import annotations

import sys


def register(sub) -> None:
    s = sub.add_parser("sweep", help="schedulers x warm-start variants x paired seeds, into a results store")
    s.add_argument("config")
    s.add_argument("--seeds", default=None, help="A:B (B exclusive), overrides the config")
    s.add_argument("--backend", choices=["real", "surrogate"], default=None)
    s.add_argument("--resume", action="store_true", help="finish an interrupted sweep; redo only unfinished replicates")
    s.add_argument("--out", default=None)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (YAML value)")
    s.add_argument("--executor", choices=["local", "ray"], default="local")
    s.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    s.add_argument("--no-report", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--download", action="store_true",
                   help="real backend: download torchvision's CIFAR-10 into the data root if it holds no copy")
    s.set_defaults(fn=cmd_sweep)


def _overrides(items) -> dict:
    import yaml
    out = {}
    for it in items or []:
        key, eq, val = it.partition("=")
        if not eq:
            raise ValueError(f"--set expects key=value, but got {it!r}")
        out[key] = yaml.safe_load(val)
    return out


def cmd_sweep(args) -> int:
    from ..config import load_sweep
    from ..sweeps.sweep import run_sweep
    ov = _overrides(args.set)
    if args.seeds:
        ov["seeds"] = args.seeds
    if args.backend:
        ov["backend"] = args.backend
    if args.out:
        ov["out"] = args.out
    cfg = load_sweep(args.config, ov)
    if args.download and cfg.backend == "real":   # once, here, before any trial process looks for the data
        from ..trial.data import load_cifar10
        load_cifar10(cfg.data_root, download=True)
    out = run_sweep(cfg, resume=args.resume, progress=not args.no_progress, executor=args.executor,
                    address=args.address)
    print(f"results in {out}", file=sys.stderr)
    if not args.no_report:
        try:
            import pandas as pd

            from ..analysis.report.context import resolve_baseline
            from ..analysis.report.make import make_report
        except ImportError:
            return 0
        try:   # the report's own rule for which variant is the baseline, before any report is written
            resolve_baseline(pd.DataFrame({"variant": [], "warm_start": []}), cfg.model_dump(mode="json"),
                             list(cfg.variants))
        except ValueError as e:
            print(f"no report: sweep config key 'variants' has no baseline ({e}); report it with a store of the "
                  f"same task that has one: ohgw-bench report {out} OTHER_STORE --out DIR", file=sys.stderr)
            return 0
        if len(cfg.variants) < 2:
            print(f"no report: sweep config key 'variants' has only {list(cfg.variants)}, nothing to compare with "
                  f"it; report it with a store of the same task and seeds that has others: "
                  f"ohgw-bench report {out} OTHER_STORE --out DIR", file=sys.stderr)
            return 0
        rep = make_report(out, show_progress=not args.no_progress)
        print(f"report in {rep.get('out_dir', out / 'report')}", file=sys.stderr)
    return 0
