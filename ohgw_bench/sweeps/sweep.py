"""``ohgw-bench sweep CONFIG``: every (scheduler, variant, seed) replicate, real or simulated, into one
tidy results store (see store.py).

Each finished replicate (or chunk of simulated ones) is written atomically as one unit under
``<out>/replicates/`` and the store is rebuilt from those units (``replicate.py``), so a sweep killed at
any moment and rerun with ``--resume`` redoes only unfinished replicates: nothing finished is lost or
duplicated.

Pairing: replicate seed s gives every variant the same sequence of sampled configurations. Syne
Tune 0.14.2's searchers draw from their own RandomState seeded by ``random_seed``, which
``make_scheduler`` sets to the replicate seed (a searcher given none would take one from numpy's
global RNG); warm-start randomness has its own stream derived from (seed, trial id).

The executors run what they are given: this module hands them the backends' functions and stores what
comes back.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml
from tqdm import tqdm

from ..config import SweepConfig, dump
from ..surrogate.model import Surrogate
from ..tasks import get_task
from ..warmstart.spec import from_variant
from .backends import simulated
from .backends.real import run_real_replicate
from .executors import local as local_executor
from .executors import ray as ray_executor
from .replicate import (check_real_replicate, chunks_of, consolidate, finished, finished_units, read_unit_provenance,
                        replicate_key, replicates, stale_reason, store_key, unit_files, write_units)
from .schedulers import SCHEDULERS


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
    get_task(cfg.task)  # fail early on an unknown task
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
            print(f"{out}: config key {diff}: its {len(finished_units(rep_dir))} finished unit(s) are redone", file=sys.stderr)
            for _, meta in finished_units(rep_dir):
                for f in unit_files(meta):
                    f.unlink(missing_ok=True)
    if resume and rep_dir.exists():
        key = store_key(cfg)
        stale = [(m, r) for _, m in finished_units(rep_dir) if (r := stale_reason(read_unit_provenance(m), key))]
        if stale and on_stale != "redo":
            raise ValueError(f"--resume: unit {stale[0][0].name.removesuffix('.meta.parquet')!r} of {str(out)!r} "
                             f"{stale[0][1]} ({len(stale)} such unit(s)); use another 'out'")
        if stale:
            print(f"{out}: {len(stale)} finished unit(s) redone: the first {stale[0][1]}", file=sys.stderr)
            for m, _ in stale:
                for f in unit_files(m):
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
        _run_simulated(cfg, todo, rep_dir, progress, executor, address)
    elif executor == "ray":
        ray_executor.run_real_replicates_ray(cfg, todo, rep_dir, address=address, progress=progress,
                                             _replicate_fn=run_real_replicate)
    else:
        _run_real_local(cfg, todo, out, progress)


def _run_simulated(cfg: SweepConfig, todo: list, rep_dir: Path, progress: bool, executor: str,
                   address: str | None, chunk_size: int = 25) -> None:
    """Simulated replicates in chunks (local processes or Ray tasks); each chunk is one unit of the store."""
    Surrogate.load(cfg.surrogate).for_runner(cfg.runner)  # fail early on a missing or corrupt artifact
    cfg_json = cfg.model_dump(mode="json")
    chunks = chunks_of(todo, int(os.environ.get("OHGW_CHUNK", chunk_size)))
    bar = tqdm(total=len(todo), desc=f"sweep {cfg.name} (surrogate)", disable=not progress, file=sys.stderr)
    if executor == "ray":
        results = ray_executor.map_chunks(cfg_json, chunks, address, _chunk_fn=simulated.run_chunk)
    else:
        results = local_executor.map_chunks(cfg_json, chunks, simulated.run_chunk)
    for res in results:
        write_units(rep_dir, cfg, res)
        bar.update(len(res))
    bar.close()


def _run_real_local(cfg: SweepConfig, todo: list, out: Path, progress: bool) -> None:
    """Real replicates one after another on this machine; with the persistent runner, on one pool of
    workers started once, outside the replicates' clocks."""
    rep_dir = out / "replicates"
    pool = None
    if todo and cfg.real_runner == "persistent":
        from .backends.persistent import WorkerPool
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
