"""The tidy results store written by every sweep (real or surrogate) and read by report/verify.

A results directory holds:

- ``results.parquet`` — one row per reported result (per trial and epoch), columns ``COLUMNS``;
- ``replicates.parquet`` — one row per finished (variant, seed) replicate, columns ``REPLICATE_COLUMNS``;
- ``config.yaml`` — the resolved sweep config; ``provenance.json`` — versions, git revision, device,
  seeds, backend.

Times: ``elapsed_s`` is the replicate's clock (wall-clock for real runs, simulated for the
surrogate) when the result arrived, counted from the replicate's start; GPU-hours (worker-hours)
are ``elapsed_s * n_workers / 3600``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .space import PSI_KEYS

STATUSES = ("completed", "stopped", "paused", "diverged", "failed", "running")
PSI_COLS = ([f"x_{k}" for k in PSI_KEYS] + [f"xp_{k}" for k in PSI_KEYS] + [f"hg_{k}" for k in PSI_KEYS])
COLUMNS: dict[str, str] = {
    "backend": "str",        # real | surrogate
    "task": "str",
    "variant": "str",        # e.g. baseline, ohgw-1step
    "scheduler": "str",      # registry name: asha, pasha, dyhpo, ...
    "seed": "int64",         # replicate seed (paired across variants)
    "trial_id": "int64",
    "epoch": "int64",
    "val_acc": "float64",
    "val_loss": "float64",
    "test_acc": "float64",   # NaN except at rung milestones and the trial's last epoch
    "train_loss": "float64",
    "elapsed_s": "float64",  # replicate clock when the result arrived
    "epoch_time": "float64", # the trial's seconds for this epoch
    "segment_start_s": "float64",  # real runs: replicate clock when this result's trial process (re)started
    "status": "str",         # final status of the trial: one of STATUSES
    "warm_start": "str",     # warm-start spec
    "ws_cost_s": "float64",  # seconds the warm start cost (hyper-gradient batches)
    "ws_flops": "float64",
    "plain_step_s": "float64",  # one ordinary training step, for the overhead ratio
    **{c: "float64" for c in PSI_COLS},
}
REPLICATE_COLUMNS: dict[str, str] = {
    "variant": "str", "scheduler": "str", "seed": "int64", "n_trials": "int64", "n_results": "int64",
    "wall_s": "float64",     # wall-clock the replicate took to run (for simulated runs: real seconds)
    "budget_s": "float64",   # the replicate's time budget on its own clock
    "n_workers": "int64",
    "flops_total": "float64",  # training FLOPs estimate, when known (NaN otherwise)
}


def empty_frame(columns: dict[str, str] = COLUMNS) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t if t != "str" else object) for c, t in columns.items()})


def conform(df: pd.DataFrame, columns: dict[str, str] = COLUMNS) -> pd.DataFrame:
    """Select and type the schema's columns (missing ones filled with NaN); extra columns dropped."""
    out = {}
    for c, t in columns.items():
        if c in df:
            s = df[c]
        else:
            s = pd.Series([float("nan")] * len(df), index=df.index)
        out[c] = s.astype(object if t == "str" else t) if t != "int64" else s.astype("int64")
    return pd.DataFrame(out)


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def load(results_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(results, replicates, config) of a results directory, with a one-line error if it is not one."""
    d = Path(results_dir)
    res = d / "results.parquet"
    if not res.exists():
        raise ValueError(f"results directory {str(d)!r} holds no results.parquet (run `ohgw-bench sweep` first)")
    import yaml
    cfg = yaml.safe_load((d / "config.yaml").read_text()) if (d / "config.yaml").exists() else {}
    reps = pd.read_parquet(d / "replicates.parquet") if (d / "replicates.parquet").exists() \
        else empty_frame(REPLICATE_COLUMNS)
    return pd.read_parquet(res), reps, cfg


def replicate_fingerprints(replicates: pd.DataFrame) -> list[str]:
    """One short hash per replicate of a real store: its key and the wall-clock it took (measured, so
    practically unique), so a replicate is recognised in any store that holds it, whatever the path."""
    out = []
    for r in replicates.itertuples(index=False):
        text = f"{r.scheduler}/{r.variant}/{int(r.seed)}/{float(r.wall_s)!r}/{int(r.n_results)}"
        out.append(hashlib.sha256(text.encode()).hexdigest()[:16])
    return sorted(out)


def store_record(results_dir: str | os.PathLike) -> dict:
    """What identifies a results store: its path as given, its sweep name and its replicates' fingerprints."""
    _, reps, cfg = load(results_dir)
    return {"path": str(results_dir), "name": cfg.get("name"), "n_replicates": int(len(reps)),
            "replicates": replicate_fingerprints(reps)}
