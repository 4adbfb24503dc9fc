"""``ohgw-bench collect CONFIG``: real full-budget runs over a Sobol design, plus hyper-gradient
measurements at initialisation, appended resumably to ``surrogates/<task>/``.

Files (all rewritten atomically after every finished job, so a kill loses at most running jobs):
- ``curves.parquet``: one row per (config_id, seed, epoch) with ψ, losses/accuracies, epoch time,
  divergence;
- ``hypergrads.parquet``: one row per (hg_config_id, batch) with ψ and the five raw ∂J/∂ψ;
- ``collect.yaml``: the config that produced them (a rerun must use the same design);
- ``targets.parquet``: with a ``targeted`` block, the configurations chosen for repeated seeds where the
  schedulers look (``surrogate.targets``), collected into ``curves.parquet`` after the design.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import qmc
from tqdm import tqdm

from .. import space
from ..config import CollectConfig, dump
from ..seeding import derive_seed
from ..space import PSI_KEYS
from ..store import write_parquet_atomic

_DATA = {}


def design(n: int, seed: int) -> list[dict]:
    """First n points of a scrambled Sobol sequence over the unit cube, mapped to ψ."""
    m = int(np.ceil(np.log2(max(n, 2))))
    u = qmc.Sobol(d=len(PSI_KEYS), scramble=True, seed=seed).random_base2(m)[:n]
    return [space.from_unit(row) for row in u]


def curve_jobs(cfg: CollectConfig, done: set | None = None) -> list[tuple[int, int, dict]]:
    """Jobs not yet done, ordered so that a collection stopped at any point has both seed repeats and
    new configurations: the repeat queue (repeated configs, config by config) and the queue of
    single-seed configs alternate, one job each."""
    pts = design(cfg.n_configs, cfg.design_seed)
    done = done or set()
    repeats = [(i, s, pts[i]) for i in range(cfg.n_repeat_configs) for s in range(cfg.n_repeat_seeds)]
    singles = [(i, 0, pts[i]) for i in range(cfg.n_repeat_configs, cfg.n_configs)]
    repeats = [j for j in repeats if (j[0], j[1]) not in done]
    singles = [j for j in singles if (j[0], j[1]) not in done]
    jobs = []
    for k in range(max(len(repeats), len(singles))):
        jobs += repeats[k:k + 1] + singles[k:k + 1]
    return jobs


def _worker_init(threads: int):
    import torch
    torch.set_num_threads(threads)


def _task_data(task_name: str, data_root):
    from ..tasks import get_task
    from ..trial.data import task_data
    if task_name not in _DATA:
        _DATA[task_name] = task_data(get_task(task_name), data_root)
    return _DATA[task_name]


def _run_curve(task_name: str, config_id: int, seed: int, psi: dict, data_root) -> list[dict]:
    from ..tasks import get_task
    from ..trial.trainer import Trial
    task = get_task(task_name)
    trial = Trial(task, psi, derive_seed(config_id, seed, "collect"), _task_data(task_name, data_root))
    rows = trial.run(task.max_epochs)
    keep = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "epoch_time",
            "train_time", "cum_time", "diverged")
    return [{"config_id": config_id, "seed": seed, **{f"psi_{k}": psi[k] for k in PSI_KEYS},
             **{k: r.get(k, np.nan) for k in keep}} for r in rows]


def _run_hg(task_name: str, config_id: int, psi: dict, n_batches: int, data_root) -> list[dict]:
    from ..tasks import get_task
    from ..trial.hgcost import hypergrad_at_init
    t0 = time.perf_counter()
    g = hypergrad_at_init(get_task(task_name), psi, derive_seed(config_id, "hg"), _task_data(task_name, data_root),
                          n_batches=n_batches)
    sec = time.perf_counter() - t0
    return [{"hg_config_id": config_id, "batch": b, **{f"psi_{k}": psi[k] for k in PSI_KEYS},
             **{f"hg_{k}": float(g[b, j]) for j, k in enumerate(PSI_KEYS)}, "seconds": sec / len(g)}
            for b in range(len(g))]


def _check_same_design(out: Path, cfg: CollectConfig) -> None:
    import yaml
    p = out / "collect.yaml"
    if p.exists():
        old = yaml.safe_load(p.read_text())
        for k in ("task", "design_seed"):
            if old.get(k) != getattr(cfg, k):
                raise ValueError(f"{out} was collected with {k}={old.get(k)!r}; this config has "
                                 f"{k}={getattr(cfg, k)!r} (use another out directory)")
        if (out / "targets.parquet").exists():
            _check_extends(old.get("targeted"), cfg.targeted.model_dump(mode="json") if cfg.targeted else None, out)


def _check_extends(old: dict | None, new: dict | None, out: Path) -> None:
    """A collection with targets may only be resumed with the same targeted block or one that raises counts."""
    if old is None or new is None:
        raise ValueError(f"{out} holds targets selected with targeted={old!r}; this config has targeted={new!r} "
                         "(use another out directory, or the same block)")
    for k in ("sweeps", "seeds", "seed"):
        if old.get(k) != new.get(k):
            raise ValueError(f"{out} holds targets selected with targeted.{k}={old.get(k)!r}; this config has "
                             f"targeted.{k}={new.get(k)!r} (only the counts may grow)")
    for k in ("promoted_9", "promoted_3", "top_quartile", "edge"):
        if new.get(k, 0) < old.get(k, 0):
            raise ValueError(f"{out} holds targets selected with targeted.{k}={old.get(k)!r}; this config has "
                             f"targeted.{k}={new.get(k)!r} (counts may grow, not shrink)")


def _targets(out: Path, cfg: CollectConfig, curves: pd.DataFrame) -> pd.DataFrame:
    """The targeted configurations: selected after the design is complete; a stored selection is kept
    and, where the config raises a count, extended by the next configurations of the same draw."""
    from ..tasks import get_task
    from .targets import select_targets
    path = out / "targets.parquet"
    missing = curve_jobs(cfg, set(zip(curves["config_id"], curves["seed"])) if len(curves) else set())
    if missing:
        raise ValueError(f"targeted collection needs the complete design first: {len(missing)} design runs of {out} "
                         "are missing (run `ohgw-bench collect` with --phase curves)")
    design_curves = curves[(curves["config_id"] < cfg.n_repeat_configs)
                           | ((curves["config_id"] < cfg.n_configs) & (curves["seed"] == 0))]
    t = select_targets(design_curves, cfg.targeted, get_task(cfg.task).max_epochs, cfg.n_repeat_configs)
    if path.exists():
        old = pd.read_parquet(path)
        if not t.iloc[:0].columns.equals(old.columns) or not _is_extension(old, t):
            raise ValueError(f"{path} does not match this config's selection (was the design changed?); "
                             "use another out directory")
    write_parquet_atomic(t, path)
    return t


def _is_extension(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Every stored target is in the new selection, with the same ψ."""
    key = ["config_id", "kind"]
    m = old.merge(new, on=key, how="left", suffixes=("", "_new"), indicator=True)
    cols = [c for c in old.columns if c.startswith("psi_")]
    return bool((m["_merge"] == "both").all() and all(np.allclose(m[c], m[c + "_new"]) for c in cols))


def run_collect(cfg: CollectConfig, phases=("hypergrads", "curves", "targeted"), progress: bool = True) -> Path:
    from ..tasks import get_task
    get_task(cfg.task)  # fail early on an unknown task
    out = Path(cfg.out or f"surrogates/{cfg.task}")
    out.mkdir(parents=True, exist_ok=True)
    _check_same_design(out, cfg)
    (out / "collect.yaml").write_text(dump(cfg))
    _task_data(cfg.task, cfg.data_root)  # decode/cache once in the parent, before forking workers
    for phase in phases:
        if phase == "targeted" and cfg.targeted is None:
            continue
        if phase == "hypergrads":
            path = out / "hypergrads.parquet"
            df = pd.read_parquet(path) if path.exists() else pd.DataFrame()
            done = set(df["hg_config_id"]) if len(df) else set()
            pts = design(cfg.hypergrad_configs, cfg.design_seed + 7919)
            jobs = [(i, p) for i, p in enumerate(pts) if i not in done]
            submit = lambda ex, j: ex.submit(_run_hg, cfg.task, j[0], j[1], cfg.hypergrad_batches, cfg.data_root)  # noqa
        else:
            path = out / "curves.parquet"
            df = pd.read_parquet(path) if path.exists() else pd.DataFrame()
            done = set(zip(df["config_id"], df["seed"])) if len(df) else set()
            if phase == "curves":
                jobs = curve_jobs(cfg, done)
            else:
                from .targets import target_jobs
                jobs = target_jobs(_targets(out, cfg, df), done)
            submit = lambda ex, j: ex.submit(_run_curve, cfg.task, j[0], j[1], j[2], cfg.data_root)  # noqa
        if not jobs:
            continue
        frames = [df] if len(df) else []
        bar = tqdm(total=len(jobs), desc=f"collect {phase}", disable=not progress, file=sys.stderr)
        with ProcessPoolExecutor(cfg.workers, initializer=_worker_init, initargs=(cfg.threads_per_worker,)) as ex:
            pending, it = set(), iter(jobs)
            for j in it:
                pending.add(submit(ex, j))
                if len(pending) >= cfg.workers * 2:
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    frames.append(pd.DataFrame(f.result()))
                    bar.update(1)
                write_parquet_atomic(pd.concat(frames, ignore_index=True), path)
                for j in it:
                    pending.add(submit(ex, j))
                    if len(pending) >= cfg.workers * 2:
                        break
        bar.close()
    return out
