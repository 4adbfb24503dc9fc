"""``ohgw-bench sweep CONFIG``: every (scheduler, variant, seed) replicate, real or simulated, into one
tidy results store (see results.py).

Each finished replicate is written atomically to ``<out>/replicates/<scheduler>__<variant>__s<seed>.parquet``
and the store is rebuilt from those files, so a sweep killed at any moment and rerun with ``--resume``
redoes only unfinished replicates: nothing finished is lost or duplicated.

Pairing: replicate seed s gives every variant the same sequence of sampled configurations. Syne
Tune's random searcher draws from numpy's global RNG, so it is seeded per replicate, on purpose;
warm-start randomness has its own stream derived from (seed, trial id).
"""
from __future__ import annotations

import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from . import provenance
from .config import SweepConfig, dump
from .results import COLUMNS, REPLICATE_COLUMNS, conform, write_json_atomic, write_parquet_atomic
from .space import PSI_KEYS, syne_tune_space
from .tasks import get_task
from .warmstart import from_variant

ENTRY = str(Path(__file__).with_name("entry.py"))


def replicate_key(scheduler: str, variant: str, seed: int) -> str:
    return f"{scheduler}__{variant}__s{seed}"


def seed_global_rngs(seed: int) -> None:
    """Syne Tune's random searcher uses numpy's global RNG: seed it per replicate, once."""
    np.random.seed(seed % 2**32)
    random.seed(seed)


def replicates(cfg: SweepConfig) -> list[tuple[str, str, int]]:
    return [(s, v, seed) for seed in cfg.seed_list for s in cfg.schedulers for v in cfg.variants]


def _final_status(rows: pd.DataFrame, decisions: dict, backend_status: dict, max_epochs: int) -> dict:
    out = {}
    for tid, g in rows.groupby("trial_id"):
        if (g.get("diverged", pd.Series([0])) == 1).any():
            out[tid] = "diverged"
        elif g["epoch"].max() >= max_epochs:
            out[tid] = "completed"
        elif backend_status.get(tid) == "Failed":
            out[tid] = "failed"
        elif decisions.get(tid) == "PAUSE":
            out[tid] = "paused"
        elif decisions.get(tid) == "STOP":
            out[tid] = "stopped"
        else:
            out[tid] = "running"  # cut by the replicate's budget
    return out


# ------------------------------------------------------------------------------------ real backend
def run_real_replicate(cfg: SweepConfig, scheduler: str, variant: str, seed: int, workdir: Path) -> tuple[pd.DataFrame, dict]:
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend import LocalBackend
    from syne_tune.tuner_callback import TunerCallback

    from .schedulers import make_scheduler

    task = get_task(cfg.task)
    max_epochs = cfg.max_epochs or task.max_epochs
    ws = from_variant(cfg.variants[variant])
    consts = dict(task=cfg.task, epochs=max_epochs, warm_start=ws.spec(), replicate_seed=seed,
                  torch_threads=cfg.threads_per_trial)
    if cfg.data_root:
        consts["data_root"] = cfg.data_root
    space = syne_tune_space(**consts)

    def first_result(tid, result):  # ψ′ computed inside the trial: pass it on to the scheduler
        if all(f"xp_{k}" in result for k in PSI_KEYS):
            return {k: float(result[f"xp_{k}"]) for k in PSI_KEYS}
        return None

    seed_global_rngs(seed)
    sched = make_scheduler(scheduler, space, seed, cfg.grace_period, cfg.reduction_factor, max_epochs,
                           hook=None, on_first_result=None if ws.kind == "none" else first_result)
    rows, decisions, starts = [], {}, {}

    clock = {"t0": time.time()}

    class Record(TunerCallback):
        def on_tuning_start(self, tuner):
            clock["t0"] = time.time()

        def on_start_trial(self, trial):
            starts[trial.trial_id] = time.time() - clock["t0"]

        def on_resume_trial(self, trial):
            starts[trial.trial_id] = time.time() - clock["t0"]

        def on_trial_result(self, trial, status, result, decision):
            # the replicate's wall-clock when the tuner processed the result, and when the process
            # that produced it was (re)started (start-up overhead = first result - start - epoch)
            rows.append(dict(result, trial_id=trial.trial_id, elapsed_s=time.time() - clock["t0"],
                             segment_start_s=starts.get(trial.trial_id, float("nan"))))
            decisions[trial.trial_id] = str(decision).split(".")[-1].upper()

    os.environ["SYNETUNE_FOLDER"] = str(workdir)
    backend = LocalBackend(entry_point=ENTRY, rotate_gpus=True, delete_checkpoints=True)
    t0 = time.time()
    tuner = Tuner(trial_backend=backend, scheduler=sched,
                  stop_criterion=StoppingCriterion(max_wallclock_time=cfg.replicate_budget_s,
                                                   max_num_trials_started=cfg.max_trials),
                  n_workers=cfg.n_workers, sleep_time=cfg.tuner_sleep_time, results_update_interval=60,
                  print_update_interval=3600, tuner_name=replicate_key(scheduler, variant, seed).replace("_", "-"),
                  callbacks=[Record()], save_tuner=False, max_failures=10**6)
    tuner.run()
    wall = time.time() - t0
    statuses = {int(t): str(s) for t, s in tuner.tuning_status.last_trial_status_seen.items()}
    df = pd.DataFrame(rows)
    if len(df) == 0:
        df = pd.DataFrame(columns=["trial_id", "epoch", "val_acc"])
    status = _final_status(df, decisions, statuses, max_epochs) if len(df) else {}
    df["status"] = df["trial_id"].map(status)
    meta = {"wall_s": wall, "n_trials": int(df["trial_id"].nunique()) if len(df) else 0}
    return df, meta


# ------------------------------------------------------------------------------------ driver
def _store_row_frame(df: pd.DataFrame, cfg: SweepConfig, scheduler: str, variant: str, seed: int) -> pd.DataFrame:
    df = df.copy()
    df["backend"], df["task"], df["variant"], df["scheduler"], df["seed"] = cfg.backend, cfg.task, variant, scheduler, seed
    df["warm_start"] = from_variant(cfg.variants[variant]).spec()
    for k in PSI_KEYS:  # x: the sampled config; baseline trials report x == x′
        if f"x_{k}" not in df:
            df[f"x_{k}"] = df.get(k, np.nan)
        if f"xp_{k}" not in df:
            df[f"xp_{k}"] = df[f"x_{k}"]
    return conform(df, COLUMNS).sort_values(["trial_id", "epoch", "elapsed_s"], kind="stable").reset_index(drop=True)


def _units(rep_dir: Path) -> list[tuple[Path, Path]]:
    """(rows, meta) file pairs of finished units; rows are written first, so a unit without its meta
    file was cut short and does not count."""
    out = []
    for meta in sorted(rep_dir.glob("*.meta.parquet")):
        rows = meta.with_name(meta.name.replace(".meta.parquet", ".parquet"))
        if rows.exists():
            out.append((rows, meta))
    return out


def finished(rep_dir: Path) -> set[tuple[str, str, int]]:
    done = set()
    for _, meta in _units(rep_dir):
        m = pd.read_parquet(meta, columns=["scheduler", "variant", "seed"])
        done.update(zip(m["scheduler"], m["variant"], m["seed"].astype(int)))
    return done


def consolidate(out: Path) -> pd.DataFrame:
    """Rebuild results.parquet / replicates.parquet from the finished units, in a fixed order, so the
    store does not depend on how replicates were chunked or in which order they finished."""
    units = _units(out / "replicates")
    key = ["scheduler", "variant", "seed"]
    res = pd.concat([pd.read_parquet(r) for r, _ in units], ignore_index=True) if units else conform(pd.DataFrame())
    res = res.sort_values(key + ["trial_id", "epoch", "elapsed_s"], kind="stable").reset_index(drop=True)
    write_parquet_atomic(res, out / "results.parquet")
    reps = pd.concat([pd.read_parquet(m) for _, m in units], ignore_index=True) if units \
        else conform(pd.DataFrame(), REPLICATE_COLUMNS)
    reps = reps.sort_values(key, kind="stable").reset_index(drop=True)
    write_parquet_atomic(reps, out / "replicates.parquet")
    return res


def write_units(rep_dir: Path, cfg: SweepConfig, results: list) -> None:
    """Write finished replicates ``[((scheduler, variant, seed), rows, meta), ...]`` as one unit."""
    if not results:
        return
    (s0, v0, seed0) = results[0][0]
    name = replicate_key(s0, v0, seed0) if len(results) == 1 else f"chunk__{replicate_key(s0, v0, seed0)}__n{len(results)}"
    frames, metas = [], []
    for (scheduler, variant, seed), df, meta in results:
        rows = _store_row_frame(df, cfg, scheduler, variant, seed)
        frames.append(rows)
        metas.append({"variant": variant, "scheduler": scheduler, "seed": seed,
                      "n_trials": meta.get("n_trials", rows["trial_id"].nunique()), "n_results": len(rows),
                      "wall_s": meta.get("wall_s", np.nan), "budget_s": cfg.replicate_budget_s,
                      "n_workers": cfg.n_workers, "flops_total": meta.get("flops_total", np.nan)})
    write_parquet_atomic(pd.concat(frames, ignore_index=True), rep_dir / f"{name}.parquet")
    write_parquet_atomic(conform(pd.DataFrame(metas), REPLICATE_COLUMNS), rep_dir / f"{name}.meta.parquet")


def run_sweep(cfg: SweepConfig, resume: bool = False, progress: bool = True, executor: str = "local",
              address: str | None = None) -> Path:
    """Run every unfinished replicate of ``cfg``; returns the results directory."""
    from .schedulers import SCHEDULERS
    task = get_task(cfg.task)
    for s in cfg.schedulers:
        if s not in SCHEDULERS:
            raise ValueError(f"sweep config key 'schedulers': {s!r} is not a scheduler in {list(SCHEDULERS)}")
    for v, spec in cfg.variants.items():
        ws = from_variant(spec)  # validates every warm-start spec before anything runs
        if ws.kind == "random" and ws.sigma is None:
            ws.random_sigma(cfg.task)  # needs the task's calibration: fail now, not inside every trial
    out = cfg.out_dir
    rep_dir = out / "replicates"
    if out.exists() and any(rep_dir.glob("*.meta.parquet")) and not resume:
        raise ValueError(f"results directory {str(out)!r} already holds replicates; pass --resume to finish it "
                         f"or set another 'out'")
    if resume and (out / "config.yaml").exists():
        old = yaml.safe_load((out / "config.yaml").read_text())
        if old != cfg.model_dump(mode="json"):
            raise ValueError(f"--resume: the config differs from the one in {out / 'config.yaml'}; "
                             f"resume with the same config or use another 'out'")
    rep_dir.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump(cfg))
    write_json_atomic({**provenance.collect(), "backend": cfg.backend, "seeds": cfg.seed_list,
                       "task": task.to_dict()}, out / "provenance.json")
    done = finished(rep_dir)
    todo = [r for r in replicates(cfg) if r not in done]
    if not todo:
        print(f"all {len(replicates(cfg))} replicates of {cfg.name!r} are finished", file=sys.stderr)
    if cfg.backend == "surrogate":
        from .simulate import run_surrogate_replicates
        run_surrogate_replicates(cfg, todo, rep_dir, progress=progress, executor=executor, address=address)
    elif executor == "ray":
        from .ray_executor import run_real_replicates_ray
        run_real_replicates_ray(cfg, todo, rep_dir, address=address, progress=progress)
    else:
        bar = tqdm(todo, desc=f"sweep {cfg.name}", disable=not progress, file=sys.stderr)
        for scheduler, variant, seed in bar:
            bar.set_postfix_str(replicate_key(scheduler, variant, seed))
            work = out / "_syne_tune" / replicate_key(scheduler, variant, seed)
            shutil.rmtree(work, ignore_errors=True)  # an unfinished earlier attempt is redone from scratch
            df, meta = run_real_replicate(cfg, scheduler, variant, seed, work)
            write_units(rep_dir, cfg, [((scheduler, variant, seed), df, meta)])
            shutil.rmtree(work, ignore_errors=True)
    consolidate(out)
    return out
