"""Verbs of the surrogate: ``collect`` real runs and hyper-gradients, ``fit`` the surrogate on them."""
from __future__ import annotations

import sys


def register(sub) -> None:
    c = sub.add_parser("collect", help="real full-budget runs + hyper-gradients at init, for the surrogate")
    c.add_argument("config")
    c.add_argument("--phase", choices=["all", "curves", "hypergrads"], default="all")
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


def cmd_collect(args) -> int:
    from ..config import load_collect
    from ..surrogate.collect import run_collect
    cfg = load_collect(args.config, {"workers": args.workers} if args.workers else None)
    if args.download:
        from ..trial.data import load_cifar10
        load_cifar10(cfg.data_root, download=True)
    phases = {"all": ("hypergrads", "curves"), "curves": ("curves",), "hypergrads": ("hypergrads",)}[args.phase]
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
    parts = cv_parts(curves, hgs, task.name, task.max_epochs, k=args.folds, seed=args.seed, rank=args.rank,
                     startup_s=startup, time_data=time_data)
    fid = pooled_fidelity(parts, seed=args.seed, k=args.folds)
    # the same folds' predictions beside what a rerun of each repeated configuration achieves
    fid["noise_ceiling"] = noise_ceiling(curves, parts, task.milestones(), task.max_epochs, seed=args.seed)
    fid["seed_noise_vs_psi"] = seed_noise_dependence(curves, task.milestones(), task.max_epochs)
    # 2) the shipped artifact: refit on all data
    sur = fit_surrogate(curves, hgs, task.name, task.max_epochs, rank=args.rank, seed=args.seed, startup_s=startup,
                        time_data=time_data)
    sur.meta["fidelity_heldout"] = fid
    if by_runner:
        sur.meta["startup_s_by_runner"] = {r: v["median_s"] for r, v in by_runner.items()}
        sur.meta["startup_calibration"] = by_runner
        sur.meta["epoch_time_scale_by_runner"] = {
            r: (1.0 if r == default_runner else sur.epoch_time_scale(sweep_epoch_times(stores_of[r])))
            for r in by_runner}
    if args.overhead_from:  # verify must not check the time model against the sweeps it was fitted on
        from ..store import store_record
        sur.meta["calibration_stores"] = [store_record(p) for p in args.overhead_from]
    sur.meta["fidelity_scheme"] = fid["scheme"]
    sur.save(d)
    write_json_atomic(fid, d / "fidelity.json")
    (d / "fidelity.md").write_text(format_markdown(fid, f"Surrogate fidelity: {task.name} ({fid['scheme']}; the "
                                                   f"shipped model is refit on all data)"))
    print(json.dumps({k: v for k, v in fid.items() if not isinstance(v, dict)}, indent=2))
    print(f"wrote {d / 'surrogate.npz'}, {d / 'surrogate.json'}, {d / 'fidelity.md'}", file=sys.stderr)
    return 0
