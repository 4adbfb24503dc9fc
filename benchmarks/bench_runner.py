"""Real ASHA replicates with both trial runners side by side: Syne Tune's LocalBackend (one process per
trial segment) and the persistent workers (ohgw_bench/sweeps/backends/persistent.py).

One run, the same sweep config and the same replicate seeds for both runners; replicates alternate
between the runners (seed by seed, the order flipped every seed) so that a change in the machine's
load hits both alike. Per replicate:

- ``utilization``: Σ epoch_time of the results the tuner received / (n_workers × budget_s), the share
  of worker time spent training and evaluating;
- ``start_latency_s``: per segment (a new trial or a resume), from the scheduler's start/resume
  decision (the tuner's ``on_start_trial``/``on_resume_trial``) to the segment's first training step
  (``train_start_ts`` in its first report); only segments that reported count;
- ``epochs``: results (epochs) the tuner received.

The persistent pool is started once, before the first replicate's clock (as ``ohgw-bench sweep`` does);
its start-up time is reported apart. The JSON's top level has ``utilization``, ``start_latency_s`` and
``epochs_per_replicate`` (medians, keyed by runner), ``ratio`` (persistent / local median epochs per
replicate), and the per-replicate values, spreads and conditions (load average, cores) behind them.

    python benchmarks/bench_runner.py --budget-s 60 --seeds 0:2 --json results/bench-runner.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUNNERS = ("local", "persistent")


def replicate_figures(df, meta, n_workers: int, budget_s: float) -> dict:
    """Utilization, per-segment start latencies and epochs of one replicate's result rows."""
    out = {"epochs": int(len(df)), "n_trials": int(df["trial_id"].nunique()) if len(df) else 0,
           "wall_s": float(meta["wall_s"])}
    if not len(df):
        return dict(out, utilization=0.0, latencies_s=[], n_segments=0)
    out["utilization"] = float(df["epoch_time"].sum() / (n_workers * budget_s))
    first = df.sort_values("elapsed_s").groupby(["trial_id", "segment_start_s"], as_index=False).first()
    lat = first["train_start_ts"] - (meta["t0_wall"] + first["segment_start_s"])
    lat = lat[np.isfinite(lat)]
    out["latencies_s"] = [float(x) for x in lat]
    out["n_segments"] = int(len(first))
    return out


def summary(values: list[float]) -> dict:
    a = np.asarray(values, float)
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()),
            "q25": float(np.quantile(a, 0.25)), "q75": float(np.quantile(a, 0.75))}


def _finite(obj):
    """NaN/inf become null: strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget-s", type=float, default=120.0, help="each replicate's wall-clock budget (default 120)")
    p.add_argument("--seeds", default="0:2", help="replicate seeds A:B, B exclusive (default 0:2)")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--task", default="cifar10-mini")
    p.add_argument("--n-workers", type=int, default=2)
    p.add_argument("--scheduler", default="asha")
    p.add_argument("--tuner-sleep-time", type=float, default=None, help="default: the sweep config's default")
    p.add_argument("--data-root", default=None, help="default $OHGW_DATA")
    args = p.parse_args(argv)

    from ohgw_bench.config import SweepConfig, seed_list
    from ohgw_bench.sweeps.backends.persistent import WorkerPool
    from ohgw_bench.sweeps.backends.real import run_real_replicate
    try:
        seeds = seed_list(args.seeds)
    except ValueError as e:
        p.error(str(e))
    if args.budget_s <= 0:
        p.error(f"--budget-s must be > 0, but got {args.budget_s}")
    logging.getLogger("syne_tune").setLevel(logging.WARNING)

    base = dict(name="bench-runner", task=args.task, backend="real", schedulers=[args.scheduler],
                variants={"baseline": "none"}, seeds=args.seeds, n_workers=args.n_workers, budget_s=args.budget_s,
                data_root=args.data_root)
    if args.tuner_sleep_time is not None:
        base["tuner_sleep_time"] = args.tuner_sleep_time
    cfgs = {r: SweepConfig(**base, runner=r) for r in RUNNERS}
    work = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    t = time.time()
    pool = WorkerPool(args.n_workers, task=args.task, data_root=args.data_root, threads=cfgs["local"].threads_per_trial)
    pool_start_s = pool.wait_ready()
    print(f"persistent pool of {args.n_workers} workers ready in {time.time() - t:.1f} s (outside every replicate's "
          f"clock)", file=sys.stderr)
    reps = []
    try:
        for i, seed in enumerate(seeds):
            for runner in (RUNNERS if i % 2 == 0 else RUNNERS[::-1]):
                load0 = os.getloadavg()[0]
                d = work / f"{runner}-s{seed}"
                with contextlib.redirect_stdout(sys.stderr):  # the Tuner's closing status table
                    df, meta = run_real_replicate(cfgs[runner], args.scheduler, "baseline", seed, d,
                                                  pool=pool if runner == "persistent" else None)
                shutil.rmtree(d, ignore_errors=True)
                fig = replicate_figures(df, meta, args.n_workers, args.budget_s)
                fig.update(runner=runner, seed=seed, loadavg_1m_before=load0, loadavg_1m_after=os.getloadavg()[0])
                reps.append(fig)
                print(f"  {runner:>10} seed {seed}: utilization {fig['utilization']:.3f}, {fig['epochs']} epochs, "
                      f"{fig['n_trials']} trials, median start latency "
                      f"{np.median(fig['latencies_s']) if fig['latencies_s'] else float('nan'):.3f} s, "
                      f"load {load0:.1f}", file=sys.stderr)
    finally:
        replaced = pool.replaced
        pool.close()
        shutil.rmtree(work, ignore_errors=True)

    by = {r: [x for x in reps if x["runner"] == r] for r in RUNNERS}
    util = {r: summary([x["utilization"] for x in by[r]]) for r in RUNNERS}
    lat = {r: summary([v for x in by[r] for v in x["latencies_s"]]) for r in RUNNERS}
    eps = {r: summary([x["epochs"] for x in by[r]]) for r in RUNNERS}
    ratio = eps["persistent"]["median"] / eps["local"]["median"] if eps["local"].get("median") else float("nan")
    paired = [p["epochs"] / l["epochs"] for l, p in zip(by["local"], by["persistent"]) if l["epochs"]]
    loads = [x[k] for x in reps for k in ("loadavg_1m_before", "loadavg_1m_after")]
    out = {
        "utilization": {r: util[r].get("median") for r in RUNNERS},
        "start_latency_s": {r: lat[r].get("median") for r in RUNNERS},
        "epochs_per_replicate": {r: eps[r].get("median") for r in RUNNERS},
        "ratio": ratio,
        "spread": {"utilization": util, "start_latency_s": lat, "epochs_per_replicate": eps,
                   "ratio_per_seed": summary(paired)},
        "replicates": reps,
        "conditions": {"task": args.task, "scheduler": args.scheduler, "n_workers": args.n_workers,
                       "budget_s": args.budget_s, "seeds": seeds,
                       "tuner_sleep_time": cfgs["local"].tuner_sleep_time,
                       "threads_per_trial": cfgs["local"].threads_per_trial, "cpu_count": os.cpu_count(),
                       "loadavg_1m": summary(loads), "pool_start_s": pool_start_s, "workers_replaced": replaced,
                       "host": platform.node(), "python": platform.python_version()},
    }

    def cell(s, fmt):
        if not s.get("n"):
            return "–"
        return f"{s['median']:{fmt}} [{s['min']:{fmt}}, {s['max']:{fmt}}]"

    print(f"\nreal {args.scheduler} replicates, {args.task}, {args.n_workers} workers, {args.budget_s:g} s each, "
          f"seeds {seeds}; median [min, max] over replicates (latency: over segments)")
    print(f"{'runner':>10} | {'n':>2} | {'utilization':>22} | {'start latency s':>24} | {'epochs/replicate':>22}")
    for r in RUNNERS:
        print(f"{r:>10} | {len(by[r]):>2} | {cell(util[r], '.3f'):>22} | {cell(lat[r], '.3f'):>24} | "
              f"{cell(eps[r], '.0f'):>22}")
    print(f"ratio persistent/local epochs per replicate: {ratio:.2f} (per seed: {cell(summary(paired), '.2f')})")
    print(f"load average (1 min) during the run: {cell(summary(loads), '.1f')} on {os.cpu_count()} cores")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_finite(out), indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
