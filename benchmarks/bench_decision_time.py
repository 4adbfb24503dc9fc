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
        --schedulers asha,pasha,dyhpo --seeds 0:5 --out results/bench-decision-time.json [--write-calibration]

``--write-calibration`` stores per scheduler and call a model, CPU seconds = a + b × (results the
scheduler has seen), fitted by non-negative least squares, in
``ohgw_bench/calibration/scheduler_decision_time.json``; simulated sweeps charge it to the simulated
clock for the schedulers it marks as modelled. Each replicate's total is also predicted by the model
fitted on the other replicates (leave-one-out), printed beside the measured one.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohgw_bench.config import load_sweep  # noqa: E402
from ohgw_bench.store import write_json_atomic  # noqa: E402
from ohgw_bench.sweeps.backends import simulated  # noqa: E402
from ohgw_bench.sweeps.schedulers import DECISION_TIME_FILE  # noqa: E402

CALLS = ("suggest", "on_trial_add", "on_trial_result", "on_trial_complete", "on_trial_error", "on_trial_remove")


def instrumented(make, log: list):
    """``make_scheduler`` whose schedulers record (call, results seen before it, cpu_s, wall_s) for
    every call in ``CALLS``."""
    @contextlib.contextmanager
    def timed(call: str, seen: int):
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            log.append((call, seen, time.thread_time() - c0, time.perf_counter() - w0))

    def wrapped(*args, **kwargs):
        sched = make(*args, **kwargs)
        simulated.wrap_calls(sched, CALLS, timed)
        return sched
    return wrapped


def fit_calls(log: list) -> dict:
    """Per call: CPU seconds = intercept + per_result × results seen, non-negative least squares."""
    out = {}
    for call in sorted({c for c, *_ in log}):
        n = np.array([k for c, k, _, _ in log if c == call], float)
        y = np.array([cpu for c, _, cpu, _ in log if c == call], float)
        coef, _ = nnls(np.column_stack([np.ones_like(n), n]), y)
        out[call] = {"intercept_s": float(coef[0]), "per_result_s": float(coef[1]), "n_calls": int(y.size),
                     "cpu_s_total": float(y.sum())}
    return out


def measure(cfg, scheduler: str, variant: str, seeds: list[int]) -> dict:
    sur = simulated._load(str(cfg.surrogate))
    per_rep = []
    make = simulated.make_scheduler
    try:
        for seed in tqdm(seeds, desc=f"{scheduler}/{variant}", leave=False):
            log: list = []
            simulated.make_scheduler = instrumented(make, log)
            simulated.run_one(sur, cfg, scheduler, variant, seed)
            cpu = np.array([c for _, _, c, _ in log])
            wall = np.array([w for *_, w in log])
            per_rep.append({"seed": seed, "calls": len(log), "cpu_s": float(cpu.sum()), "wall_s": float(wall.sum()),
                            "call_cpu_ms": (cpu * 1e3).tolist(), "log": log})
    finally:
        simulated.make_scheduler = make
    # the per-call model fitted on all but one replicate predicts that replicate's total (leave-one-out)
    fits = fit_calls([x for r in per_rep for x in r["log"]])
    for i, r in enumerate(per_rep):
        rest = [x for j, q in enumerate(per_rep) if j != i for x in q["log"]]
        f = fit_calls(rest) if rest else fits
        r["cpu_s_predicted_loo"] = float(sum(f[c]["intercept_s"] + f[c]["per_result_s"] * k
                                             for c, k, _, _ in r["log"] if c in f))
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
            "calls": fits, "tuner_sleep_time": float(cfg.tuner_sleep_time),
            "modelled": bool(np.median(tot) >= cfg.tuner_sleep_time),
            "replicates": [{k: v for k, v in r.items() if k not in ("call_cpu_ms", "log")} for r in per_rep]}


def _rel(path: str) -> str:
    """A path inside the repository as the repository sees it (no machine-specific prefix)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/exp1-mini-surrogate.yaml"),
                   help="a surrogate sweep config (task, budget, workers, surrogate)")
    p.add_argument("--schedulers", default="asha,pasha,dyhpo")
    p.add_argument("--variant", default="baseline", help="a variant of the config")
    p.add_argument("--seeds", default="0:5", help="simulated replicate seeds, 'a:b'")
    p.add_argument("--out", default="results/bench-decision-time.json")
    p.add_argument("--write-calibration", action="store_true",
                   help=f"also write the per-call models to {DECISION_TIME_FILE.relative_to(ROOT)} (used by simulated sweeps)")
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
              f"{100 * r['share_of_budget_median']:14.3f}%  modelled: {r['modelled']}")
        for rep in r["replicates"]:
            print(f"    seed {rep['seed']}: decide {rep['cpu_s']:.3f} s, per-call model (fitted on the other "
                  f"replicates) predicts {rep['cpu_s_predicted_loo']:.3f} s")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": a.config, "seeds": a.seeds, "rows": rows}, indent=1))
    print(f"wrote {out}")
    if a.write_calibration:
        cal = {"rule": "a scheduler is modelled when its median decision time per replicate is at least the Tuner's "
                       "polling interval (tuner_sleep_time), the resolution of the simulated clock",
               "measured": {"config": _rel(a.config), "variant": a.variant, "seeds": a.seeds, "timer": "thread CPU time",
                            "tuner_sleep_time": rows[0]["tuner_sleep_time"],
                            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                            "command": " ".join(["python", "benchmarks/bench_decision_time.py", *sys.argv[1:]])},
               "schedulers": {r["scheduler"]: {"modelled": r["modelled"], "calls": r["calls"],
                                               "n_replicates": r["n_replicates"],
                                               "replicate_cpu_s_median": r["replicate_cpu_s_median"],
                                               "share_of_budget_median": r["share_of_budget_median"]} for r in rows}}
        write_json_atomic(cal, DECISION_TIME_FILE)
        print(f"wrote {DECISION_TIME_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
