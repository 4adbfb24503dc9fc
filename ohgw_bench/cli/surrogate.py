"""Verbs of the surrogate: ``collect`` real runs and hyper-gradients, ``fit`` the surrogate on them."""
from __future__ import annotations

import sys


def register(sub) -> None:
    c = sub.add_parser("collect", help="real full-budget runs + hyper-gradients at init, for the surrogate")
    c.add_argument("config")
    c.add_argument("--phase", choices=["all", "curves", "hypergrads", "targeted"], default="all",
                   help="all: hyper-gradients, the design's curves, then the config's targeted block (if any)")
    c.add_argument("--workers", type=int, default=None)
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--download", action="store_true",
                   help="download torchvision's CIFAR-10 into the data root if it holds no copy")
    c.set_defaults(fn=cmd_collect)
    f = sub.add_parser("fit", help="fit the surrogate on collected real runs; writes the artifact and a fidelity report")
    f.add_argument("directory", help="e.g. surrogates/cifar10-mini")
    f.add_argument("--task", default=None, help="only if the directory lacks collect.yaml")
    f.add_argument("--rank", type=int, default=4)
    f.add_argument("--folds", type=int, default=5, help="cross-validation folds for the fidelity report")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--startup-s", type=float, default=0.0, help="per-(re)start overhead of a real trial process")
    f.add_argument("--overhead-from", default=None, action="append",
                   help="a real sweep's results dir: start-up overhead and epoch times are fitted on its trials "
                        "(repeat to pool several sweeps run on the same machine and workers)")
    f.set_defaults(fn=cmd_fit)
    g = sub.add_parser("gains", help="real paired runs with and without warm starts, against the surrogate's "
                                     "predicted gains")
    g.add_argument("surrogate_dir", help="e.g. surrogates/cifar10-mini")
    g.add_argument("--configs", type=int, default=15, help="configurations of the gain design (default 15)")
    g.add_argument("--variant", action="append", default=None, metavar="NAME=SPEC",
                   help="a warm start to pair with the baseline (repeat; default: the frontier's raw-eta1, "
                        "raw-eta10, norm-d0.3)")
    g.add_argument("--design-seed", type=int, default=0)
    g.add_argument("--pair-seeds", type=int, default=1,
                   help="seeds per (configuration, warm start) pair (default 1; more extend a stored collection)")
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--out", default=None, help="default SURROGATE_DIR/gains")
    g.add_argument("--check-only", action="store_true", help="no new runs: score the runs the directory holds")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(fn=cmd_gains)


def cmd_collect(args) -> int:
    from ..config import load_collect
    from ..surrogate.collect import run_collect
    cfg = load_collect(args.config, {"workers": args.workers} if args.workers else None)
    if args.download:
        from ..trial.data import load_cifar10
        load_cifar10(cfg.data_root, download=True)
    phases = {"all": ("hypergrads", "curves", "targeted"), "curves": ("curves",), "hypergrads": ("hypergrads",),
              "targeted": ("targeted",)}[args.phase]
    out = run_collect(cfg, phases, progress=not args.no_progress)
    print(f"collected into {out}", file=sys.stderr)
    return 0


def cmd_fit(args) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    from ..store import write_json_atomic
    from ..surrogate.fidelity import format_markdown
    from ..surrogate.fit import fit_surrogate
    from ..tasks import get_task
    d = Path(args.directory)
    cur, hg = d / "curves.parquet", d / "hypergrads.parquet"
    for f in (cur, hg):
        if not f.exists():
            raise ValueError(f"surrogate data directory {str(d)!r} lacks {f.name} (run `ohgw-bench collect` first)")
    curves, hgs = pd.read_parquet(cur), pd.read_parquet(hg)
    import yaml
    task_name = yaml.safe_load((d / "collect.yaml").read_text())["task"] if (d / "collect.yaml").exists() else args.task
    task = get_task(task_name)
    startup, time_data, by_runner = args.startup_s, None, {}
    if args.overhead_from:
        from ..surrogate.overhead import runner_of, startup_by_runner, sweep_epoch_times

        # one start-up calibration per trial runner; startup_s (the default clock) is the first one's
        by_runner = startup_by_runner(args.overhead_from)
        startup = next(iter(by_runner.values()))["median_s"]
        # epochs run faster when no other trial process is starting beside them, so the time model is
        # the default runner's; the other runners get a measured scale on it (below)
        default_runner = next(iter(by_runner))
        stores_of = {r: [p for p in args.overhead_from if runner_of(p) == r] for r in by_runner}
        time_data = sweep_epoch_times(stores_of[default_runner])
    # 1) fidelity: k-fold cross-validation over configurations (each scored by a fit that never saw it)
    from ..surrogate.fidelity import cv_parts, pooled_fidelity
    from ..surrogate.noise_ceiling import noise_ceiling, seed_noise_dependence
    # seed noise that depends on ψ is modelled where the repeated seeds show it (the test's own rule)
    dep = seed_noise_dependence(curves, task.milestones(), task.max_epochs)
    het = dep.get("covariate") or False
    parts = cv_parts(curves, hgs, task.name, task.max_epochs, k=args.folds, seed=args.seed, rank=args.rank,
                     startup_s=startup, time_data=time_data, heteroscedastic_noise=het)
    fid = pooled_fidelity(parts, seed=args.seed, k=args.folds)
    # the same folds' predictions beside what a rerun of each repeated configuration achieves
    from ..surrogate.targets import subsets
    fid["noise_ceiling"] = noise_ceiling(curves, parts, task.milestones(), task.max_epochs, seed=args.seed,
                                         subsets=subsets(d, curves))
    fid["seed_noise_vs_psi"] = dep
    # 2) the shipped artifact: refit on all data
    sur = fit_surrogate(curves, hgs, task.name, task.max_epochs, rank=args.rank, seed=args.seed, startup_s=startup,
                        time_data=time_data, heteroscedastic_noise=het)
    sur.meta["fidelity_heldout"] = fid
    if by_runner:
        sur.meta["startup_s_by_runner"] = {r: v["median_s"] for r, v in by_runner.items()}
        sur.meta["startup_calibration"] = by_runner
        sur.meta["epoch_time_scale_by_runner"] = {
            r: (1.0 if r == default_runner else sur.epoch_time_scale(sweep_epoch_times(stores_of[r])))
            for r in by_runner}
        # a warm start's hyper-gradient batches cost what the runner's trials measured (a fresh process
        # pays autograd's first-use set-up, a persistent worker does not); other runners keep the
        # collection's measurement
        from ..surrogate.overhead import ws_batch_by_runner
        ws_cal = ws_batch_by_runner(args.overhead_from)
        if ws_cal:
            sur.meta["hg_batch_seconds_by_runner"] = {r: v["median_s"] for r, v in ws_cal.items()}
            sur.meta["hg_batch_calibration"] = ws_cal
    if args.overhead_from:  # verify must not check the time model against the sweeps it was fitted on
        from ..store import store_record
        sur.meta["calibration_stores"] = [store_record(p) for p in args.overhead_from]
    tsweeps = ((yaml.safe_load((d / "collect.yaml").read_text()) or {}).get("targeted") or {}).get("sweeps") \
        if (d / "targets.parquet").exists() and (d / "collect.yaml").exists() else None
    if tsweeps:  # nor against sweeps that chose configurations the surrogate was trained on
        from ..store import store_record
        sur.meta["targeted_stores"] = [store_record(p) for p in tsweeps]
    sur.meta["fidelity_scheme"] = fid["scheme"]
    sur.save(d)
    write_json_atomic(fid, d / "fidelity.json")
    (d / "fidelity.md").write_text(format_markdown(fid, f"Surrogate fidelity: {task.name} ({fid['scheme']}; the "
                                                   f"shipped model is refit on all data)"))
    print(json.dumps({k: v for k, v in fid.items() if not isinstance(v, dict)}, indent=2))
    print(f"wrote {d / 'surrogate.npz'}, {d / 'surrogate.json'}, {d / 'fidelity.md'}", file=sys.stderr)
    return 0


def cmd_gains(args) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    from ..store import write_json_atomic
    from ..surrogate.gains import DEFAULT_VARIANTS, collect_gains, gain_check, gains_markdown
    from ..surrogate.model import Surrogate
    if args.configs < 1:
        raise ValueError(f"--configs must be >= 1, got {args.configs}")
    if args.pair_seeds < 1:
        raise ValueError(f"--pair-seeds must be >= 1, got {args.pair_seeds}")
    variants = dict(DEFAULT_VARIANTS)
    if args.variant:
        variants = {}
        for item in args.variant:
            name, eq, spec = item.partition("=")
            if not eq or not name.strip() or not spec.strip():
                raise ValueError(f"--variant must be NAME=SPEC, got {item!r}")
            variants[name.strip()] = spec.strip()
    sur = Surrogate.load(args.surrogate_dir)
    out = Path(args.out or Path(args.surrogate_dir) / "gains")
    if args.check_only:
        if not (out / "gains.parquet").exists():
            raise FileNotFoundError(f"--check-only: {out / 'gains.parquet'} does not exist")
        runs = pd.read_parquet(out / "gains.parquet")
    else:
        runs = collect_gains(sur.task, out, variants, n_configs=args.configs, design_seed=args.design_seed,
                             workers=args.workers, progress=not args.no_progress, pair_seeds=args.pair_seeds)
    res = gain_check(sur, runs, sur_dir=args.surrogate_dir)
    write_json_atomic(res, out / "gains.json")
    (out / "gains.md").write_text("\n".join([f"# Warm-start gains: {sur.task}", ""] + gains_markdown(res)[2:]))
    print(json.dumps({"final": res["final"], "meets": res["meets"], "collapses": res["collapses"]["n"]}, indent=2))
    print(f"wrote {out / 'gains.md'}", file=sys.stderr)
    return 0
