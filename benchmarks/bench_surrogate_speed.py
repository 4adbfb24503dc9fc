"""Wall-clock of surrogate sweeps on the machine it runs on, printed side by side in one run.

Targets: exp-1 on the surrogate — 4 variants x 1000 seeds under ASHA —
in <= 10 minutes on 2 cores; PASHA (same 4 variants x 1000 seeds) <= 30 minutes; DyHPO: as many
seeds as fit in 30 minutes (reported as n).

    python benchmarks/bench_surrogate_speed.py --seeds 1000 --dyhpo-minutes 30 --out results/bench-surrogate.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohgw_bench.config import load_sweep  # noqa: E402
from ohgw_bench.sweeps.sweep import run_sweep  # noqa: E402


def timed(cfg_path: str, scheduler: str, seeds: str, out: Path, workers: int) -> dict:
    ov = {"schedulers": [scheduler], "seeds": seeds, "out": str(out)}
    cfg = load_sweep(cfg_path, ov)
    os.environ["OHGW_WORKERS"] = str(workers)
    t0 = time.perf_counter()
    run_sweep(cfg, progress=True)
    wall = time.perf_counter() - t0
    n = len(cfg.seed_list) * len(cfg.variants)
    return {"scheduler": scheduler, "seeds": len(cfg.seed_list), "variants": len(cfg.variants), "replicates": n,
            "wall_s": wall, "s_per_replicate": wall / n, "workers": workers}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=str(ROOT / "configs/exp1-mini-surrogate-1000.yaml"))
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--pasha-seeds", type=int, default=None, help="default: --seeds")
    p.add_argument("--dyhpo-minutes", type=float, default=30.0)
    p.add_argument("--dyhpo-probe-seeds", type=int, default=4)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--skip", default="", help="comma list of asha,pasha,dyhpo")
    p.add_argument("--out", default="results/bench-surrogate.json")
    p.add_argument("--keep", default="results/bench-surrogate", help="results stores are kept here (one per scheduler)")
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    res = {"cpu_count": os.cpu_count(), "workers": a.workers, "config": a.config, "runs": []}
    keep = Path(a.keep)
    shutil.rmtree(keep, ignore_errors=True)  # timings are of fresh sweeps, never of resumed ones
    if "asha" not in skip:
        r = timed(a.config, "asha", f"0:{a.seeds}", keep / "asha", a.workers)
        r["target_s"], r["meets"] = 600.0, r["wall_s"] <= 600.0 if a.seeds >= 1000 else None
        res["runs"].append(r)
        print(f"ASHA  {r['replicates']} replicates ({r['seeds']} seeds x {r['variants']} variants): "
              f"{r['wall_s']:.1f} s ({r['s_per_replicate']:.3f} s/replicate) — target ≤ 600 s at 1000 seeds: "
              f"{r['meets']}", flush=True)
    if "pasha" not in skip:
        n = a.pasha_seeds or a.seeds
        r = timed(a.config, "pasha", f"0:{n}", keep / "pasha", a.workers)
        r["target_s"], r["meets"] = 1800.0, r["wall_s"] <= 1800.0 if n >= 1000 else None
        res["runs"].append(r)
        print(f"PASHA {r['replicates']} replicates: {r['wall_s']:.1f} s ({r['s_per_replicate']:.3f} s/replicate)"
              f" — target ≤ 1800 s at 1000 seeds: {r['meets']}", flush=True)
    if "dyhpo" not in skip:
        probe = timed(a.config, "dyhpo", f"0:{a.dyhpo_probe_seeds}", keep / "dyhpo-probe", a.workers)
        per_seed = probe["wall_s"] / a.dyhpo_probe_seeds
        fit = int(a.dyhpo_minutes * 60 / per_seed)
        probe.update(seeds_in_budget=fit, budget_minutes=a.dyhpo_minutes)
        res["runs"].append(probe)
        print(f"DyHPO probe {probe['replicates']} replicates: {probe['wall_s']:.1f} s → "
              f"{per_seed:.1f} s per seed (x{probe['variants']} variants) → about {fit} seeds fit in "
              f"{a.dyhpo_minutes:g} minutes on {a.workers} workers", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
