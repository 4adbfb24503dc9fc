"""``ohgw-bench sweep CONFIG``: every (scheduler, variant, seed) replicate, real or simulated, into one
tidy results store (see store.py).

Each finished replicate is written atomically to ``<out>/replicates/<scheduler>__<variant>__s<seed>.parquet``
and the store is rebuilt from those files, so a sweep killed at any moment and rerun with ``--resume``
redoes only unfinished replicates: nothing finished is lost or duplicated.

Pairing: replicate seed s gives every variant the same sequence of sampled configurations. Syne
Tune 0.14.2's searchers draw from their own RandomState seeded by ``random_seed``, which
``make_scheduler`` sets to the replicate seed (a searcher given none would take one from numpy's
global RNG); warm-start randomness has its own stream derived from (seed, trial id).
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
from .store import COLUMNS, REPLICATE_COLUMNS, conform, write_json_atomic, write_parquet_atomic
from .space import PSI_KEYS, syne_tune_space
from .tasks import get_task
from .warmstart.spec import from_variant

ENTRY = str(Path(__file__).with_name("trial") / "entry.py")


def replicate_key(scheduler: str, variant: str, seed: int) -> str:
    return f"{scheduler}__{variant}__s{seed}"


def seed_global_rngs(seed: int) -> None:
    """Seed the global RNGs per replicate. Pairing does not rest on this (searchers get the replicate
    seed explicitly); it keeps any other draw from the global RNGs reproducible."""
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
def run_real_replicate(cfg: SweepConfig, scheduler: str, variant: str, seed: int, workdir: Path,
                       pool=None) -> tuple[pd.DataFrame, dict]:
    """One real replicate. Runner "persistent": segments run on ``pool`` (a persistent.WorkerPool shared
    by the sweep's replicates), or on a pool of its own, started and ready before the clock starts."""
    from syne_tune import StoppingCriterion
    from syne_tune.backend import LocalBackend
    from syne_tune.tuner_callback import TunerCallback

    from .schedulers import make_scheduler, xprime_from_result

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
    status = _final_status(df, decisions, statuses, max_epochs) if len(df) else {}
    df["status"] = df["trial_id"].map(status)
    meta = {"wall_s": wall, "n_trials": int(df["trial_id"].nunique()) if len(df) else 0,
            "runner": cfg.real_runner, "t0_wall": clock["t0"]}
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
    write_json_atomic(_store_provenance(units), out / "provenance.json")
    return res


def _store_provenance(units: list) -> dict:
    """provenance.json: each unit's own record under "units"; at the top level, every field on which all
    units agree (the store's provenance) and, for the others, the sorted list of their distinct values."""
    import json
    per = {m.name.removesuffix(".meta.parquet"): _read_unit_provenance(m) or {} for _, m in units}
    fields = sorted({k for p in per.values() for k in p})
    top = {}
    for f in fields:
        vals = {json.dumps(p.get(f), sort_keys=True, default=str) for p in per.values()}
        top[f] = per[next(iter(per))].get(f) if len(vals) == 1 else sorted(vals)
    return {**top, "units": per}


def store_key(cfg: SweepConfig) -> dict:
    """What a finished unit's rows depend on besides the config: the package's code (a digest of its
    source, ``provenance.code_digest``) and, for simulated replicates, the surrogate artifact's
    checksum. A resumed sweep reuses only units with the same key."""
    key = {"code_sha256": provenance.code_digest(), "surrogate_sha256": None}
    if cfg.backend == "surrogate":
        from .surrogate.model import Surrogate
        key["surrogate_sha256"] = Surrogate.load(cfg.surrogate).model_checksum
    return key


def unit_provenance(cfg: SweepConfig) -> dict:
    prov = {**provenance.collect(), **store_key(cfg), "backend": cfg.backend, "task": get_task(cfg.task).to_dict()}
    if cfg.backend == "real":
        prov["runner"] = cfg.real_runner
    return prov


def _stale_reason(prov: dict | None, key: dict) -> str | None:
    if prov is None:
        return "records no code digest or surrogate checksum"
    if prov.get("surrogate_sha256") != key["surrogate_sha256"]:
        return (f"was simulated with surrogate_sha256={str(prov.get('surrogate_sha256'))[:12]!r}, the surrogate now "
                f"has {str(key['surrogate_sha256'])[:12]!r}")
    if prov.get("code_sha256") != key["code_sha256"]:
        return (f"was written by code_sha256={str(prov.get('code_sha256'))[:12]!r}, this code is "
                f"{key['code_sha256'][:12]!r}")
    return None


def _unit_files(meta: Path) -> list[Path]:
    stem = meta.name.removesuffix(".meta.parquet")
    return [meta.with_name(f"{stem}{ext}") for ext in (".parquet", ".provenance.json", ".meta.parquet")]


def _read_unit_provenance(meta: Path) -> dict | None:
    import json
    p = _unit_files(meta)[1]
    return json.loads(p.read_text()) if p.exists() else None


def write_units(rep_dir: Path, cfg: SweepConfig, results: list, prov: dict | None = None) -> None:
    """Write finished replicates ``[((scheduler, variant, seed), rows, meta), ...]`` as one unit: rows,
    then its provenance (``unit_provenance`` unless given), then the meta file that marks it finished."""
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
    write_json_atomic(prov if prov is not None else unit_provenance(cfg), rep_dir / f"{name}.provenance.json")
    write_parquet_atomic(conform(pd.DataFrame(metas), REPLICATE_COLUMNS), rep_dir / f"{name}.meta.parquet")


def check_real_replicate(key: tuple, df: pd.DataFrame) -> None:
    """A real replicate none of whose trials produced a usable result is not finished: raise, so it is
    not stored and ``--resume`` redoes it."""
    if len(df) == 0:
        raise RuntimeError(f"real replicate {replicate_key(*key)}: no trial reported a result (trials failing at "
                           f"start-up, or a budget shorter than one epoch); not stored")
    if (df["status"] == "failed").all():
        raise RuntimeError(f"real replicate {replicate_key(*key)}: all {df['trial_id'].nunique()} trials that "
                           f"reported failed; not stored")


def _config_difference(old: dict, new: dict, prefix: str = "") -> str:
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return _config_difference(a, b, f"{prefix}{k}.")
        elif a != b:
            return f"{prefix}{k}={b!r} (the store has {a!r})"
    return ""


def run_sweep(cfg: SweepConfig, resume: bool = False, progress: bool = True, executor: str = "local",
              address: str | None = None, on_stale: str = "refuse") -> Path:
    """Run every unfinished replicate of ``cfg``; returns the results directory.

    A resumed store reuses only finished units written with the same config, code revision and (for
    simulated replicates) surrogate checksum. ``on_stale``: "refuse" raises on any other unit;
    "redo" (a store used as a cache, as verify's) deletes them and says so on stderr."""
    from .schedulers import SCHEDULERS
    task = get_task(cfg.task)
    for s in cfg.schedulers:
        if s not in SCHEDULERS:
            raise ValueError(f"sweep config key 'schedulers': {s!r} is not a scheduler in {list(SCHEDULERS)}")
    for v, spec in cfg.variants.items():
        ws = from_variant(spec)  # validates every warm-start spec before anything runs
        ws.check_backend(cfg.backend)
        if ws.kind == "random" and ws.sigma is None:
            ws.random_sigma(cfg.task)  # needs the task's calibration: fail now, not inside every trial
    out = cfg.out_dir
    rep_dir = out / "replicates"
    if out.exists() and any(rep_dir.glob("*.meta.parquet")) and not resume:
        raise ValueError(f"results directory {str(out)!r} already holds replicates; pass --resume to finish it "
                         f"or set another 'out'")
    if resume and (out / "config.yaml").exists():
        old = yaml.safe_load((out / "config.yaml").read_text())
        # stores written before the 'runner' key existed ran real trials on LocalBackend
        old.setdefault("runner", "local" if old.get("backend", "real") == "real" else None)
        if old != cfg.model_dump(mode="json"):
            diff = _config_difference(old, cfg.model_dump(mode="json"))
            if on_stale != "redo":
                raise ValueError(f"--resume: config key {diff} in {str(out / 'config.yaml')!r}; resume with the "
                                 f"same config or use another 'out'")
            print(f"{out}: config key {diff}: its {len(_units(rep_dir))} finished unit(s) are redone", file=sys.stderr)
            for _, meta in _units(rep_dir):
                for f in _unit_files(meta):
                    f.unlink(missing_ok=True)
    if resume and rep_dir.exists():
        key = store_key(cfg)
        stale = [(m, r) for _, m in _units(rep_dir) if (r := _stale_reason(_read_unit_provenance(m), key))]
        if stale and on_stale != "redo":
            raise ValueError(f"--resume: unit {stale[0][0].name.removesuffix('.meta.parquet')!r} of {str(out)!r} "
                             f"{stale[0][1]} ({len(stale)} such unit(s)); use another 'out'")
        if stale:
            print(f"{out}: {len(stale)} finished unit(s) redone: the first {stale[0][1]}", file=sys.stderr)
            for m, _ in stale:
                for f in _unit_files(m):
                    f.unlink(missing_ok=True)
    rep_dir.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump(cfg))
    done = finished(rep_dir)
    todo = [r for r in replicates(cfg) if r not in done]
    if not todo:
        print(f"all {len(replicates(cfg))} replicates of {cfg.name!r} are finished", file=sys.stderr)
    try:
        _run_todo(cfg, todo, out, progress, executor, address)
    finally:  # the store shows every finished unit, also when a replicate failed
        consolidate(out)
    return out


def _run_todo(cfg: SweepConfig, todo: list, out: Path, progress: bool, executor: str, address: str | None) -> None:
    rep_dir = out / "replicates"
    if cfg.backend == "surrogate":
        from .simulate import run_surrogate_replicates
        run_surrogate_replicates(cfg, todo, rep_dir, progress=progress, executor=executor, address=address)
    elif executor == "ray":
        from .ray_executor import run_real_replicates_ray
        run_real_replicates_ray(cfg, todo, rep_dir, address=address, progress=progress)
    else:
        pool = None
        if todo and cfg.real_runner == "persistent":  # one pool for all replicates: started once, outside their clocks
            from .persistent import WorkerPool
            pool = WorkerPool(cfg.n_workers, task=cfg.task, data_root=cfg.data_root, threads=cfg.threads_per_trial)
        try:
            if pool is not None:
                pool.wait_ready()
            bar = tqdm(todo, desc=f"sweep {cfg.name}", disable=not progress, file=sys.stderr)
            for scheduler, variant, seed in bar:
                bar.set_postfix_str(replicate_key(scheduler, variant, seed))
                work = out / "_syne_tune" / replicate_key(scheduler, variant, seed)
                shutil.rmtree(work, ignore_errors=True)  # an unfinished earlier attempt is redone from scratch
                df, meta = run_real_replicate(cfg, scheduler, variant, seed, work, pool=pool)
                check_real_replicate((scheduler, variant, seed), df)
                write_units(rep_dir, cfg, [((scheduler, variant, seed), df, meta)])
                shutil.rmtree(work, ignore_errors=True)
        finally:
            if pool is not None:
                pool.close()
