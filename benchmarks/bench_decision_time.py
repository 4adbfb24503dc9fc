"""How long the schedulers take to decide, against the budget they decide in.

Simulated replicates (default): the script runs simulated replicates of each scheduler (the same Syne
Tune scheduler objects a real sweep runs; their state — trials, results, rungs — grows as in a real
replicate of the same budget), under each trial runner's start-up (local: ~25 results per 120 s
replicate, persistent: ~150), and times every call the Tuner makes into the scheduler (``suggest``,
``on_trial_add``, ``on_trial_result``, ``on_trial_complete``, ``on_trial_error``,
``on_trial_remove``) in the calling thread's CPU time.

Real sweeps (``--from-real STORE``): every real replicate times the same calls in its own Tuner (wall
clock and CPU, ``<store>/replicates/*.decisions.parquet``), with the training workers busy on the
same cores — the time a real trial slot waits for the scheduler. These wall times are fitted instead.

Per scheduler it prints the calls per replicate, the median and the 99th percentile of one call, and
the total per replicate as a share of the replicate's budget.

    python benchmarks/bench_decision_time.py --schedulers asha,pasha,dyhpo --seeds 0:5 --write-calibration
    python benchmarks/bench_decision_time.py --from-real surrogates/cifar10-mini/real-sweeps/dyhpo-mini-real-decisions --write-calibration

``--write-calibration`` stores per scheduler and call a model, seconds = a + b × (results the
scheduler has seen), fitted by non-negative least squares, in
``ohgw_bench/calibration/scheduler_decision_time.json`` (replacing the entries of the schedulers just
measured, each with its own ``measured`` record); simulated sweeps charge it to the simulated clock
for the schedulers it marks as modelled. Each replicate's total is also predicted by the model fitted
on the other replicates (leave-one-out), printed beside the measured one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohgw_bench.config import load_sweep  # noqa: E402
from ohgw_bench.store import write_json_atomic  # noqa: E402
from ohgw_bench.sweeps.backends import simulated  # noqa: E402
from ohgw_bench.sweeps.schedulers import DECISION_CALLS, DECISION_TIME_FILE, call_timer, wrap_calls  # noqa: E402


def instrumented(make, log: list):
    """``make_scheduler`` whose schedulers record (call, results seen before it, cpu_s, wall_s) for
    every call in ``DECISION_CALLS``, as real sweeps do."""
    def wrapped(*args, **kwargs):
        sched = make(*args, **kwargs)
        wrap_calls(sched, DECISION_CALLS, call_timer(log))
        return sched
    return wrapped


def fit_calls(log: list, t: int) -> dict:
    """Per call: seconds (entry ``t`` of a log entry: 2 CPU, 3 wall) = intercept + per_result × results
    seen, non-negative least squares."""
    out = {}
    for call in sorted({x[0] for x in log}):
        n = np.array([x[1] for x in log if x[0] == call], float)
        y = np.array([x[t] for x in log if x[0] == call], float)
        coef, _ = nnls(np.column_stack([np.ones_like(n), n]), y)
        out[call] = {"intercept_s": float(coef[0]), "per_result_s": float(coef[1]), "n_calls": int(y.size),
                     "s_total": float(y.sum())}
    return out


def simulated_replicates(cfg, scheduler: str, variant: str, seeds: list[int], runners: list[str]) -> list[dict]:
    """Replicates of every seed under every trial runner: the runners differ in start-up overhead, hence
    in how many results a replicate's scheduler sees, and the per-call model is fitted on all of them
    so that it holds over the whole range."""
    per_rep = []
    make = simulated.make_scheduler
    try:
        for runner in runners:
            rcfg = cfg.model_copy(update={"runner": runner})
            sur = simulated._load(str(cfg.surrogate)).for_runner(runner)  # start-up of that runner
            for seed in tqdm(seeds, desc=f"{scheduler}/{variant}/{runner}", leave=False):
                log: list = []
                simulated.make_scheduler = instrumented(make, log)
                simulated.run_one(sur, rcfg, scheduler, variant, seed)
                per_rep.append({"seed": seed, "runner": runner, "log": log})
    finally:
        simulated.make_scheduler = make
    return per_rep


def real_replicates(stores: list[str]) -> dict[str, list[dict]]:
    """Per scheduler, the real replicates' timed calls (``*.decisions.parquet``) of the given stores."""
    import pandas as pd
    out: dict[str, list[dict]] = {}
    for store in stores:
        files = sorted((Path(store) / "replicates").glob("*.decisions.parquet"))
        if not files:
            raise SystemExit(f"--from-real {store!r}: no replicates/*.decisions.parquet (a real sweep records its "
                             f"scheduler's calls there)")
        for f in files:
            d = pd.read_parquet(f)
            for (sched, variant, seed), g in d.groupby(["scheduler", "variant", "seed"], sort=True):
                log = list(zip(g["call"], g["results_seen"].astype(int), g["cpu_s"], g["wall_s"]))
                out.setdefault(sched, []).append({"seed": int(seed), "variant": variant, "store": _rel(store),
                                                  "runner": "real", "log": log})
    return out


def summarize(per_rep: list[dict], scheduler: str, budget_s: float, sleep_s: float, t: int) -> dict:
    for r in per_rep:
        r["calls"] = len(r["log"])
        r["decide_s"] = float(sum(x[t] for x in r["log"]))
        r["cpu_s"] = float(sum(x[2] for x in r["log"]))
        r["wall_s"] = float(sum(x[3] for x in r["log"]))
        r["max_results_seen"] = int(max((x[1] for x in r["log"]), default=0))
    # the per-call model fitted on all but one replicate predicts that replicate's total (leave-one-out)
    fits = fit_calls([x for r in per_rep for x in r["log"]], t)
    for i, r in enumerate(per_rep):
        rest = [x for j, q in enumerate(per_rep) if j != i for x in q["log"]]
        f = fit_calls(rest, t) if rest else fits
        r["decide_s_predicted_loo"] = float(sum(f[x[0]]["intercept_s"] + f[x[0]]["per_result_s"] * x[1]
                                                for x in r["log"] if x[0] in f))
    calls = np.array([x[t] * 1e3 for r in per_rep for x in r["log"]])
    tot = np.array([r["decide_s"] for r in per_rep])
    return {"scheduler": scheduler, "n_replicates": len(per_rep), "budget_s": float(budget_s),
            "calls_per_replicate_median": float(np.median([r["calls"] for r in per_rep])),
            "call_ms_median": float(np.median(calls)), "call_ms_p99": float(np.quantile(calls, 0.99)),
            "replicate_decide_s_median": float(np.median(tot)), "replicate_decide_s_min": float(tot.min()),
            "replicate_decide_s_max": float(tot.max()),
            "share_of_budget_median": float(np.median(tot) / budget_s),
            "calls": fits, "tuner_sleep_time": float(sleep_s),
            "modelled": bool(np.median(tot) >= sleep_s),
            "replicates": [{k: v for k, v in r.items() if k != "log"} for r in per_rep]}


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
    p.add_argument("--runners", default="local,persistent",
                   help="trial runners whose start-up the simulated replicates use (comma-separated)")
    p.add_argument("--from-real", nargs="+", metavar="STORE",
                   help="fit the wall-clock times that real sweeps recorded instead of simulating")
    p.add_argument("--out", default="results/bench-decision-time.json")
    p.add_argument("--write-calibration", action="store_true",
                   help=f"also write the per-call models to {DECISION_TIME_FILE.relative_to(ROOT)} (used by simulated sweeps)")
    a = p.parse_args()
    command = " ".join(["python", "benchmarks/bench_decision_time.py", *sys.argv[1:]])
    machine = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "command": command}
    rows, measured = [], {}
    if a.from_real:
        from ohgw_bench.config import load_sweep as _load
        for sched, per_rep in real_replicates(a.from_real).items():
            cfgs = [_load(str(Path(s) / "config.yaml")) for s in a.from_real]
            budget, sleep = cfgs[0].replicate_budget_s, cfgs[0].tuner_sleep_time
            rows.append(summarize(per_rep, sched, budget, sleep, t=3))
            measured[sched] = {"source": "real sweeps", "stores": [_rel(s) for s in a.from_real],
                               "runner": sorted({c.real_runner for c in cfgs}),
                               "replicates": len(per_rep), "timer": "wall time in the real Tuner, training workers busy",
                               "tuner_sleep_time": float(sleep), **machine}
    else:
        scheds = [s.strip() for s in a.schedulers.split(",") if s.strip()]
        cfg = load_sweep(a.config, {"schedulers": scheds, "seeds": a.seeds})
        if cfg.backend != "surrogate":
            p.error(f"--config {a.config!r}: backend must be 'surrogate', not {cfg.backend!r}")
        if a.variant not in cfg.variants:
            p.error(f"--variant {a.variant!r} is not a variant of {a.config!r}: {list(cfg.variants)}")
        runners = [r.strip() for r in a.runners.split(",") if r.strip()]
        bad = [r for r in runners if r not in ("local", "persistent")]
        if bad:
            p.error(f"--runners {a.runners!r}: {bad[0]!r} is not a trial runner (local, persistent)")
        for s in scheds:
            rows.append(summarize(simulated_replicates(cfg, s, a.variant, cfg.seed_list, runners), s,
                                  cfg.replicate_budget_s, cfg.tuner_sleep_time, t=2))
            measured[s] = {"source": "simulated replicates", "config": _rel(a.config), "variant": a.variant,
                           "seeds": a.seeds, "runners": runners, "timer": "thread CPU time",
                           "tuner_sleep_time": float(cfg.tuner_sleep_time), **machine}
    print(f"{'scheduler':9s} {'n':>3s} {'calls/rep':>9s} {'call ms (median, p99)':>22s} "
          f"{'decide s/rep [min, max]':>24s} {'share of budget':>15s}")
    for r in rows:
        print(f"{r['scheduler']:9s} {r['n_replicates']:3d} {r['calls_per_replicate_median']:9.0f} "
              f"{r['call_ms_median']:10.3f}, {r['call_ms_p99']:9.3f} "
              f"{r['replicate_decide_s_median']:9.3f} [{r['replicate_decide_s_min']:.3f}, {r['replicate_decide_s_max']:.3f}] "
              f"{100 * r['share_of_budget_median']:14.3f}%  modelled: {r['modelled']}")
        for rep in r["replicates"]:
            print(f"    seed {rep['seed']} ({rep['runner']}, up to {rep['max_results_seen']} results): decide "
                  f"{rep['decide_s']:.3f} s (CPU {rep['cpu_s']:.3f} s, wall {rep['wall_s']:.3f} s), per-call model "
                  f"(fitted on the other replicates) predicts {rep['decide_s_predicted_loo']:.3f} s")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    print(f"wrote {out}")
    if a.write_calibration:
        cal = json.loads(DECISION_TIME_FILE.read_text()) if DECISION_TIME_FILE.exists() else {}
        cal = {"rule": "a scheduler is modelled when its median decision time per replicate is at least the Tuner's "
                       "polling interval (tuner_sleep_time), the resolution of the simulated clock",
               "schedulers": {k: v for k, v in cal.get("schedulers", {}).items() if "measured" in v}}
        for r in rows:
            cal["schedulers"][r["scheduler"]] = {"modelled": r["modelled"], "calls": r["calls"],
                                                 "n_replicates": r["n_replicates"],
                                                 "replicate_decide_s_median": r["replicate_decide_s_median"],
                                                 "share_of_budget_median": r["share_of_budget_median"],
                                                 "measured": measured[r["scheduler"]]}
        cal["schedulers"] = dict(sorted(cal["schedulers"].items()))
        write_json_atomic(cal, DECISION_TIME_FILE)
        print(f"wrote {DECISION_TIME_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
