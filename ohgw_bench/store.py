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


def read_json(p: Path) -> dict:
    """A JSON file of a store ({} when absent; an 'error' entry when it does not parse)."""
    try:
        return json.loads(p.read_text()) if p.exists() else {}
    except json.JSONDecodeError:
        return {"error": f"{p.name} is not valid JSON"}


def merge_stores(dirs: list[str | os.PathLike], must_agree: tuple[str, ...], defaults: dict | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict, list[dict]]:
    """Several results stores read as one: (results, replicates, config, provenance, each store's config).

    The config keys in ``must_agree`` must be equal in every store; a variant name must mean the same
    spec everywhere; stores of different tasks must hold the same variants (tables over tasks compare
    like with like); a replicate (task, scheduler, variant, seed) in two stores is an error. Variants
    and schedulers are united in order of appearance. ``defaults`` fills keys that older stores' configs
    lack. One store comes back as it is."""
    dirs = [Path(d) for d in dirs]
    loaded = [load(d) for d in dirs]
    cfgs = [{**(defaults or {}), **(c or {})} for _, _, c in loaded]
    if len(dirs) == 1:
        results, replicates, _ = loaded[0]
        return results, replicates, cfgs[0], read_json(dirs[0] / "provenance.json"), cfgs
    first, d0 = cfgs[0], str(dirs[0])

    def differs(key: str, d: Path, mine, theirs) -> ValueError:
        return ValueError(f"config key {key!r} differs between stores: {str(d)!r} has {key}={mine!r}, the first "
                          f"store has {theirs!r} ({d0!r}); stores read together must share it")

    def tasks_of(res: pd.DataFrame, c: dict) -> pd.Series:
        return res["task"].astype(str) if "task" in res.columns else pd.Series(str(c.get("task")), index=res.index)

    variants: dict = {}
    seen: dict[tuple, Path] = {}
    for d, (res, _, _), c in zip(dirs, loaded, cfgs):
        for k in must_agree:
            if c.get(k) != first.get(k):
                raise differs(k, d, c.get(k), first.get(k))
        for v, spec in (c.get("variants") or {}).items():
            if v in variants and variants[v] != spec:
                raise differs(f"variants.{v}", d, spec, variants[v])
            variants.setdefault(v, spec)
        if c.get("task") != first.get("task") and set(c.get("variants") or {}) != set(first.get("variants") or {}):
            raise differs("variants", d, sorted(c.get("variants") or {}), sorted(first.get("variants") or {}))
        keys = set(zip(tasks_of(res, c), res["scheduler"].astype(str), res["variant"].astype(str),
                       res["seed"].astype(int)))
        for key in sorted(keys):
            if key in seen:
                raise ValueError(f"stores overlap: the same (scheduler, variant, seed) replicate appears twice: "
                                 f"task {key[0]!r}, {key[1]}/{key[2]} seed {key[3]} is in {str(seen[key])!r} and "
                                 f"{str(d)!r}")
            seen[key] = d
    tasks = list(dict.fromkeys(str(c.get("task")) for c in cfgs))
    cfg = {**first, "name": " + ".join(str(c.get("name", d.name)) for d, c in zip(dirs, cfgs)),
           "task": tasks[0] if len(tasks) == 1 else tasks, "variants": variants,
           "schedulers": list(dict.fromkeys(s for c in cfgs for s in c.get("schedulers") or []))}
    provs = [read_json(d / "provenance.json") for d in dirs]
    prov = {**provs[0], "stores": [{"results_dir": str(d), "name": c.get("name"),
                                    "git_revision": p.get("git_revision")} for d, c, p in zip(dirs, cfgs, provs)]}
    results = pd.concat([r for r, _, _ in loaded], ignore_index=True)
    replicates = pd.concat([r for _, r, _ in loaded], ignore_index=True)
    return results, replicates, cfg, prov, cfgs


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
