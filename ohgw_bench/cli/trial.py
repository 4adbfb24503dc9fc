"""Verbs of real trials: ``train`` one configuration, ``hypergrad`` measure hyper-gradients and their cost."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def register(sub) -> None:
    t = sub.add_parser("train", help="train one configuration; one JSON line per epoch")
    t.add_argument("--task", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None, help="default: the task's maximum budget")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="a ψ hyperparameter, e.g. log10_lr=-1.5")
    t.add_argument("--warm-start", default="none", help="none | random | hypergradient:eta=1e-3,steps=1,rule=raw | placebo | random-dir:radius=0.1 "
                   "| python:package.module:function[,key=value,...] (docs/warm-starts.md)")
    add_data_args(t)
    t.add_argument("--out", default=None, help="run directory (default runs/train-TASK-sSEED)")
    t.add_argument("--device", default=None)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--flops", action="store_true", help="count the warm start's FLOPs")
    t.set_defaults(fn=cmd_train)

    h = sub.add_parser("hypergrad", help="the five hyper-gradients at initialisation and their cost ratios")
    h.add_argument("--task", required=True)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--set", action="append", metavar="KEY=VALUE")
    h.add_argument("--batches", type=int, default=4)
    h.add_argument("--repeats", type=int, default=5, help="timing repeats")
    add_data_args(h)
    h.add_argument("--device", default=None)
    h.add_argument("--threads", type=int, default=0)
    h.set_defaults(fn=cmd_hypergrad)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="CIFAR-10 directory (ImageFolder train/ and test/, or torchvision's cifar-10-batches-py); "
                        "default $OHGW_DATA, else ~/.cache/ohgw-bench/data")
    p.add_argument("--download", action="store_true",
                   help="download torchvision's CIFAR-10 into the data root if it holds no copy")


def _parse_sets(items: list[str]) -> dict[str, float]:
    from ..space import PSI_KEYS
    out = {}
    for it in items or []:
        key, eq, val = it.partition("=")
        if not eq:
            raise ValueError(f"--set expects key=value, but got {it!r}")
        if key not in PSI_KEYS:
            raise ValueError(f"--set key {key!r} is not a hyperparameter; valid keys are {list(PSI_KEYS)}")
        try:
            out[key] = float(val)
        except ValueError:
            raise ValueError(f"--set {key}={val!r} is not a number") from None
    return out


def _json_line(row: dict) -> str:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return json.dumps(clean, sort_keys=False)


def cmd_train(args) -> int:
    import torch

    from .. import provenance, space
    from ..tasks import get_task
    from ..trial.data import task_data
    from ..trial.trainer import Trial, default_device
    from ..warmstart.spec import WarmStart

    task = get_task(args.task)
    psi = space.center() | {"log10_lr": -1.0, "log10_wd": -3.3, "momentum": 0.9, "ra_magnitude": 9.0,
                            "label_smoothing": 0.1}
    psi.update(_parse_sets(args.set))
    psi = space.check_psi(psi)
    ws = WarmStart.parse(args.warm_start)
    ws.check_backend("real")
    epochs = args.epochs or task.max_epochs
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    data = task_data(task, args.data_root, download=args.download)
    run_dir = Path(args.out or f"runs/train-{task.name}-s{args.seed}")
    run_dir.mkdir(parents=True, exist_ok=True)
    trial = Trial(task, psi, args.seed, data, device=device, warm_start=ws, count_flops=args.flops)
    rows = []

    def report(row):
        rows.append(row)
        print(_json_line(row), flush=True)

    trial.run(epochs, report)
    import pandas as pd

    from ..store import write_json_atomic, write_parquet_atomic
    write_parquet_atomic(pd.DataFrame(rows), run_dir / "curves.parquet")
    write_json_atomic({"task": task.to_dict(), "psi": psi, "psi_effective": trial.psi, "seed": args.seed,
                       "epochs": epochs, "warm_start": ws.spec(), "device": str(device),
                       "warm_start_record": trial.ws.to_dict() if trial.ws else None,
                       **provenance.collect(device)}, run_dir / "run.json")
    print(f"wrote {run_dir}", file=sys.stderr)
    return 0


def cmd_hypergrad(args) -> int:
    import torch

    from .. import space
    from ..tasks import get_task
    from ..trial.data import task_data
    from ..trial.hgcost import measure
    from ..trial.trainer import default_device

    task = get_task(args.task)
    psi = {"log10_lr": -1.0, "log10_wd": -3.3, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}
    psi.update(_parse_sets(args.set))
    psi = space.check_psi(psi)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    data = task_data(task, args.data_root, download=args.download)
    out = measure(task, psi, args.seed, data, device, n_batches=args.batches, repeats=args.repeats)
    print(json.dumps(out, indent=2))
    return 0
