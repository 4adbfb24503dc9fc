"""A real replicate: Syne Tune's Tuner over real trial processes on this machine, in wall-clock time.

Runner "local": Syne Tune's LocalBackend starts ``trial/entry.py`` as a new process for every trial
segment; runner "persistent": the segments run on long-lived worker processes (``persistent.py``)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from ...config import SweepConfig
from ...space import syne_tune_space
from ...tasks import get_task
from ...warmstart.spec import from_variant
from ..replicate import final_status, replicate_key, seed_global_rngs
from ..schedulers import DECISION_CALLS, call_timer, make_scheduler, wrap_calls, xprime_from_result

# the script Syne Tune runs for every trial segment (``python ENTRY --key value ...``); a path, not an
# import, so that the parent process does not import torch
ENTRY = str(Path(__file__).resolve().parents[2] / "trial" / "entry.py")


def run_real_replicate(cfg: SweepConfig, scheduler: str, variant: str, seed: int, workdir: Path,
                       pool=None) -> tuple[pd.DataFrame, dict]:
    """One real replicate. Runner "persistent": segments run on ``pool`` (a persistent.WorkerPool shared
    by the sweep's replicates), or on a pool of its own, started and ready before the clock starts."""
    from syne_tune import StoppingCriterion
    from syne_tune.backend import LocalBackend
    from syne_tune.tuner_callback import TunerCallback

    task = get_task(cfg.task)
    max_epochs = cfg.max_epochs or task.max_epochs
    ws = from_variant(cfg.variants[variant])
    consts = dict(task=cfg.task, epochs=max_epochs, warm_start=ws.spec(), replicate_seed=seed,
                  torch_threads=cfg.threads_per_trial)
    if cfg.data_root:
        consts["data_root"] = cfg.data_root
    space = syne_tune_space(**consts)

    seed_global_rngs(seed)
    sched = make_scheduler(scheduler, space, seed, cfg.grace_period, cfg.reduction_factor, max_epochs,
                           hook=None, on_first_result=None if ws.kind == "none" else xprime_from_result)
    rows, decisions, starts = [], {}, {}
    # every call the Tuner makes into the scheduler, timed (wall and the Tuner thread's CPU): the
    # decision time a simulated clock must charge (benchmarks/bench_decision_time.py --from-real)
    calls: list = []
    wrap_calls(sched, DECISION_CALLS, call_timer(calls))

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
    from .persistent import PersistentBackend, WorkerPool, waking_tuner_class
    own_pool = cfg.real_runner == "persistent" and pool is None
    if own_pool:
        pool = WorkerPool(cfg.n_workers, task=cfg.task, data_root=cfg.data_root, threads=cfg.threads_per_trial)
        pool.wait_ready()
    if cfg.real_runner == "persistent":
        backend = PersistentBackend(entry_point=ENTRY, pool=pool, delete_checkpoints=True)
    else:
        backend = LocalBackend(entry_point=ENTRY, rotate_gpus=True, delete_checkpoints=True)
    Tuner = waking_tuner_class()  # wakes on worker news instead of sleeping tuner_sleep_time
    t0 = time.time()
    tuner = Tuner(trial_backend=backend, scheduler=sched,
                  stop_criterion=StoppingCriterion(max_wallclock_time=cfg.replicate_budget_s,
                                                   max_num_trials_started=cfg.max_trials),
                  n_workers=cfg.n_workers, sleep_time=cfg.tuner_sleep_time, results_update_interval=60,
                  print_update_interval=3600, tuner_name=replicate_key(scheduler, variant, seed).replace("_", "-"),
                  callbacks=[Record()], save_tuner=False, max_failures=10**6)
    try:
        tuner.run()
    finally:
        if own_pool:
            pool.close()
        elif pool is not None:
            pool.drain()  # stopped segments leave their workers before the next replicate's clock starts
    wall = time.time() - t0
    statuses = {int(t): str(s) for t, s in tuner.tuning_status.last_trial_status_seen.items()}
    df = pd.DataFrame(rows)
    if len(df) == 0:
        df = pd.DataFrame(columns=["trial_id", "epoch", "val_acc"])
    status = final_status(df, decisions, statuses, max_epochs) if len(df) else {}
    df["status"] = df["trial_id"].map(status)
    meta = {"wall_s": wall, "n_trials": int(df["trial_id"].nunique()) if len(df) else 0,
            "runner": cfg.real_runner, "t0_wall": clock["t0"], "decisions": calls}
    return df, meta

