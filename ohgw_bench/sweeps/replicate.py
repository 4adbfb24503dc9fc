"""Replicates and the results store's units.

A replicate is one (scheduler, variant, seed) HPO run. Each finished replicate, or chunk of replicates,
is written as one *unit* under ``<out>/replicates/``: its rows, its provenance, then a meta file that
marks it finished. The store's ``results.parquet``/``replicates.parquet`` are rebuilt from the finished
units, so a sweep killed at any moment and resumed redoes only unfinished replicates. A unit is reused
only if written by the same code and (simulated) the same surrogate (``store_key``).

Backends return a replicate's rows and never write; the sweep (or an executor that finishes replicates
on its own, as Ray's does) writes them here."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd

from .. import provenance
from ..config import SweepConfig
from ..space import PSI_KEYS
from ..store import COLUMNS, REPLICATE_COLUMNS, conform, write_json_atomic, write_parquet_atomic
from ..tasks import get_task
from ..warmstart.spec import from_variant


def replicate_key(scheduler: str, variant: str, seed: int) -> str:
    return f"{scheduler}__{variant}__s{seed}"


def seed_global_rngs(seed: int) -> None:
    """Seed the global RNGs per replicate. Pairing does not rest on this (searchers get the replicate
    seed explicitly); it keeps any other draw from the global RNGs reproducible."""
    np.random.seed(seed % 2**32)
    random.seed(seed)


def replicates(cfg: SweepConfig) -> list[tuple[str, str, int]]:
    return [(s, v, seed) for seed in cfg.seed_list for s in cfg.schedulers for v in cfg.variants]


def final_status(rows: pd.DataFrame, decisions: dict, backend_status: dict, max_epochs: int) -> dict:
    """trial id -> its final status (``store.STATUSES``) from its rows, the scheduler's last decision and
    the backend's last status."""
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


def finished_units(rep_dir: Path) -> list[tuple[Path, Path]]:
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
    for _, meta in finished_units(rep_dir):
        m = pd.read_parquet(meta, columns=["scheduler", "variant", "seed"])
        done.update(zip(m["scheduler"], m["variant"], m["seed"].astype(int)))
    return done


def consolidate(out: Path) -> pd.DataFrame:
    """Rebuild results.parquet / replicates.parquet from the finished units, in a fixed order, so the
    store does not depend on how replicates were chunked or in which order they finished."""
    units = finished_units(out / "replicates")
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
    per = {m.name.removesuffix(".meta.parquet"): read_unit_provenance(m) or {} for _, m in units}
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
        from ..surrogate.model import Surrogate
        key["surrogate_sha256"] = Surrogate.load(cfg.surrogate).model_checksum
    return key


def unit_provenance(cfg: SweepConfig) -> dict:
    prov = {**provenance.collect(), **store_key(cfg), "backend": cfg.backend, "task": get_task(cfg.task).to_dict()}
    if cfg.backend == "real":
        prov["runner"] = cfg.real_runner
    return prov


def stale_reason(prov: dict | None, key: dict) -> str | None:
    if prov is None:
        return "records no code digest or surrogate checksum"
    if prov.get("surrogate_sha256") != key["surrogate_sha256"]:
        return (f"was simulated with surrogate_sha256={str(prov.get('surrogate_sha256'))[:12]!r}, the surrogate now "
                f"has {str(key['surrogate_sha256'])[:12]!r}")
    if prov.get("code_sha256") != key["code_sha256"]:
        return (f"was written by code_sha256={str(prov.get('code_sha256'))[:12]!r}, this code is "
                f"{key['code_sha256'][:12]!r}")
    return None


def unit_files(meta: Path) -> list[Path]:
    """rows, provenance, meta and (real replicates) the scheduler's timed calls; the meta file last
    written marks the unit finished."""
    stem = meta.name.removesuffix(".meta.parquet")
    return [meta.with_name(f"{stem}{ext}") for ext in (".parquet", ".provenance.json", ".meta.parquet",
                                                         ".decisions.parquet")]


DECISION_COLUMNS = ["scheduler", "variant", "seed", "call", "results_seen", "cpu_s", "wall_s"]


def read_unit_provenance(meta: Path) -> dict | None:
    p = unit_files(meta)[1]
    return json.loads(p.read_text()) if p.exists() else None


def write_units(rep_dir: Path, cfg: SweepConfig, results: list, prov: dict | None = None) -> None:
    """Write finished replicates ``[((scheduler, variant, seed), rows, meta), ...]`` as one unit: rows,
    then its provenance (``unit_provenance`` unless given), then the meta file that marks it finished."""
    if not results:
        return
    (s0, v0, seed0) = results[0][0]
    name = replicate_key(s0, v0, seed0) if len(results) == 1 else f"chunk__{replicate_key(s0, v0, seed0)}__n{len(results)}"
    frames, metas, calls = [], [], []
    for (scheduler, variant, seed), df, meta in results:
        rows = _store_row_frame(df, cfg, scheduler, variant, seed)
        frames.append(rows)
        if meta.get("decisions"):
            calls.append(pd.DataFrame(meta["decisions"], columns=DECISION_COLUMNS[3:]).assign(
                scheduler=scheduler, variant=variant, seed=seed)[DECISION_COLUMNS])
        metas.append({"variant": variant, "scheduler": scheduler, "seed": seed,
                      "n_trials": meta.get("n_trials", rows["trial_id"].nunique()), "n_results": len(rows),
                      "wall_s": meta.get("wall_s", np.nan), "budget_s": cfg.replicate_budget_s,
                      "n_workers": cfg.n_workers, "flops_total": meta.get("flops_total", np.nan)})
    write_parquet_atomic(pd.concat(frames, ignore_index=True), rep_dir / f"{name}.parquet")
    write_json_atomic(prov if prov is not None else unit_provenance(cfg), rep_dir / f"{name}.provenance.json")
    if calls:
        write_parquet_atomic(pd.concat(calls, ignore_index=True), rep_dir / f"{name}.decisions.parquet")
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


def chunks_of(todo: list, size: int) -> list[list]:
    return [todo[i:i + size] for i in range(0, len(todo), size)]
