"""How long the schedulers take to decide, against the budget they decide in.

The simulated clock leaves the scheduler's own compute time out (bit-identical reruns). This script
measures that time: it runs simulated replicates of each scheduler (the same Syne Tune scheduler
objects a real sweep runs; their state — trials, results, rungs — grows as in a real replicate of the
same budget) and times every call the Tuner makes into the scheduler (``suggest``,
``on_trial_add``, ``on_trial_result``, ``on_trial_complete``, ``on_trial_error``,
``on_trial_remove``). Per scheduler it prints the calls per replicate, the median and the 99th
percentile of one call, and the total per replicate as a share of the replicate's budget — the time a
real sweep spends deciding that the simulated one does not. Both thread CPU time (robust to a busy
machine) and wall time are recorded.

    python benchmarks/bench_decision_time.py --config configs/exp1-mini-surrogate.yaml \\
        --schedulers asha,pasha,dyhpo --seeds 0:5 --out results/bench-decision-time.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohgw_bench.config import load_sweep  # noqa: E402
from ohgw_bench.sweeps.backends import simulated  # noqa: E402

CALLS = ("suggest", "on_trial_add", "on_trial_result", "on_trial_complete", "on_trial_error", "on_trial_remove")


def instrumented(make, log: list):
    """``make_scheduler`` whose schedulers record (call, cpu_s, wall_s) for every call in ``CALLS``."""
    def wrapped(*args, **kwargs):
        sched = make(*args, **kwargs)
        for name in CALLS:
            fn = getattr(sched, name, None)
            if fn is None:
                continue

            def timed(*a, _fn=fn, _name=name, **k):
                c0, w0 = time.thread_time(), time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    log.append((_name, time.thread_time() - c0, time.perf_counter() - w0))
            setattr(sched, name, timed)
        return sched
    return wrapped


def measure(cfg, scheduler: str, variant: str, seeds: list[int]) -> dict:
    sur = simulated._load(str(cfg.surrogate))
    per_rep = []
    make = simulated.make_scheduler
    try:
        for seed in tqdm(seeds, desc=f"{scheduler}/{variant}", leave=False):
            log: list = []
            simulated.make_scheduler = instrumented(make, log)
            simulated.run_one(sur, cfg, scheduler, variant, seed)
            cpu = np.array([c for _, c, _ in log])
            wall = np.array([w for _, _, w in log])
            per_rep.append({"seed": seed, "calls": len(log), "cpu_s": float(cpu.sum()), "wall_s": float(wall.sum()),
                            "call_cpu_ms": (cpu * 1e3).tolist()})
    finally:
        simulated.make_scheduler = make
    calls = np.concatenate([r["call_cpu_ms"] for r in per_rep])
    tot = np.array([r["cpu_s"] for r in per_rep])
    return {"scheduler": scheduler, "variant": variant, "n_replicates": len(per_rep),
            "budget_s": float(cfg.replicate_budget_s),
            "calls_per_replicate_median": float(np.median([r["calls"] for r in per_rep])),
            "call_cpu_ms_median": float(np.median(calls)), "call_cpu_ms_p99": float(np.quantile(calls, 0.99)),
            "replicate_cpu_s_median": float(np.median(tot)), "replicate_cpu_s_min": float(tot.min()),
            "replicate_cpu_s_max": float(tot.max()),
            "replicate_wall_s_median": float(np.median([r["wall_s"] for r in per_rep])),
            "share_of_budget_median": float(np.median(tot) / cfg.replicate_budget_s),
            "replicates": [{k: v for k, v in r.items() if k != "call_cpu_ms"} for r in per_rep]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/exp1-mini-surrogate.yaml"),
                   help="a surrogate sweep config (task, budget, workers, surrogate)")
    p.add_argument("--schedulers", default="asha,pasha,dyhpo")
    p.add_argument("--variant", default="baseline", help="a variant of the config")
    p.add_argument("--seeds", default="0:5", help="simulated replicate seeds, 'a:b'")
    p.add_argument("--out", default="results/bench-decision-time.json")
    a = p.parse_args()
    scheds = [s.strip() for s in a.schedulers.split(",") if s.strip()]
    cfg = load_sweep(a.config, {"schedulers": scheds, "seeds": a.seeds})
    if cfg.backend != "surrogate":
        p.error(f"--config {a.config!r}: backend must be 'surrogate', not {cfg.backend!r}")
    if a.variant not in cfg.variants:
        p.error(f"--variant {a.variant!r} is not a variant of {a.config!r}: {list(cfg.variants)}")
    rows = [measure(cfg, s, a.variant, cfg.seed_list) for s in scheds]
    print(f"{'scheduler':9s} {'n':>3s} {'calls/rep':>9s} {'call ms (median, p99)':>22s} "
          f"{'decide s/rep [min, max]':>24s} {'share of budget':>15s}")
    for r in rows:
        print(f"{r['scheduler']:9s} {r['n_replicates']:3d} {r['calls_per_replicate_median']:9.0f} "
              f"{r['call_cpu_ms_median']:10.3f}, {r['call_cpu_ms_p99']:9.3f} "
              f"{r['replicate_cpu_s_median']:9.3f} [{r['replicate_cpu_s_min']:.3f}, {r['replicate_cpu_s_max']:.3f}] "
              f"{100 * r['share_of_budget_median']:14.3f}%")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": a.config, "seeds": a.seeds, "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
