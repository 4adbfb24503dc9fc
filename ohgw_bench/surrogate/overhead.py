"""Start-up overhead of real trial segments and the cost of one hyper-gradient batch of a warm start (per
trial runner), measured from real sweeps' results stores."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..store import load


def _load_all(results_dirs: "str | list[str]") -> pd.DataFrame:
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    # the store's index keeps apart segments of different stores that share (scheduler, variant, seed)
    return pd.concat([load(d)[0].assign(_store=i) for i, d in enumerate(dirs)], ignore_index=True)


def startup_overhead(results_dir: "str | list[str]") -> dict:
    """Per (re)start: time from the tuner starting the process to its first result, minus that
    epoch's own time — interpreter start, imports, data and checkpoint loading, the first report.
    Several real sweeps' stores are pooled."""
    res = _load_all(results_dir)
    if "segment_start_s" not in res or res["segment_start_s"].isna().all():
        raise ValueError(f"results in {results_dir!r} carry no trial start times (not a real sweep?)")
    r = res.dropna(subset=["segment_start_s"]).sort_values("elapsed_s")
    first = r.groupby(["_store", "scheduler", "variant", "seed", "trial_id", "segment_start_s"]).first().reset_index()
    over = first["elapsed_s"] - first["segment_start_s"] - first["epoch_time"]
    over = over[np.isfinite(over)]
    if over.empty:
        raise ValueError(f"results in {results_dir!r} hold no complete (re)start to measure")
    return {"median_s": float(over.median()), "q25_s": float(over.quantile(0.25)),
            "q75_s": float(over.quantile(0.75)), "n": int(len(over))}


def runner_of(results_dir: "str | Path") -> str:
    """Trial runner of a real sweep's store: provenance.json's 'runner', else config.yaml's; stores
    written before the 'runner' key existed ran on Syne Tune's LocalBackend ("local")."""
    import json

    import yaml
    d = Path(results_dir)
    if (d / "provenance.json").exists():
        r = json.loads((d / "provenance.json").read_text()).get("runner")
        if r:
            return str(r)
    cfg = (yaml.safe_load((d / "config.yaml").read_text()) or {}) if (d / "config.yaml").exists() else {}
    if "runner" in cfg:  # written since the key exists: unset means the default, persistent
        return str(cfg["runner"] or "persistent")
    return "local"


def startup_by_runner(results_dirs: "str | list[str]") -> dict[str, dict]:
    """:func:`startup_overhead` per trial runner, the stores of one runner pooled; keys in the order in
    which the runners first appear among ``results_dirs``."""
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    groups: dict[str, list] = {}
    for d in dirs:
        groups.setdefault(runner_of(d), []).append(str(d))
    return {r: startup_overhead(ds) for r, ds in groups.items()}


def sweep_epoch_times(results_dir: "str | list[str]") -> pd.DataFrame:
    """Epoch times of real sweeps' trials (psi_* = the trained x′), for the surrogate's time model.
    A trial's first epoch contains its warm start, which the surrogate adds separately: removed."""
    from ..space import PSI_KEYS
    res = _load_all(results_dir)
    out = pd.DataFrame({f"psi_{k}": res[f"xp_{k}"] for k in PSI_KEYS})
    out["epoch"] = res["epoch"].to_numpy()
    ws = res["ws_cost_s"].fillna(0.0).where(res["epoch"] == 1, 0.0)
    out["epoch_time"] = (res["epoch_time"] - ws).to_numpy()
    return out[np.isfinite(out["epoch_time"]) & (out["epoch_time"] > 0)].reset_index(drop=True)


def _raw_batches(spec: str) -> int | None:
    """Hyper-gradient batches a raw-rule hypergradient warm start takes (steps × batches); None for
    warm starts whose batch count depends on the data (normalized rule) or that take none."""
    from ..warmstart.spec import WarmStart
    try:
        ws = WarmStart.parse(spec)
    except ValueError:
        return None
    if ws.kind != "hypergradient" or ws.rule != "raw":
        return None
    return int(ws.steps) * int(ws.batches)


def ws_batch_seconds(results_dirs: "str | list[str]") -> dict | None:
    """Seconds per hyper-gradient batch of real trials' warm starts (``ws_cost_s`` / batches, raw-rule
    hypergradient variants of the stores' configs), pooled over the stores; None if they ran none."""
    import yaml
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    per = []
    for d in dirs:
        cfg = yaml.safe_load((Path(d) / "config.yaml").read_text()) or {}
        nb = {v: _raw_batches(spec) for v, spec in (cfg.get("variants") or {}).items()}
        res = load(d)[0]
        first = res[(res["epoch"] == 1) & res["variant"].map(lambda v: bool(nb.get(v)))]
        cost = first["ws_cost_s"].to_numpy(float) / first["variant"].map(nb).to_numpy(float)
        per.append(cost[np.isfinite(cost) & (cost > 0)])
    c = np.concatenate(per) if per else np.array([])
    if not c.size:
        return None
    return {"median_s": float(np.median(c)), "q25_s": float(np.quantile(c, 0.25)),
            "q75_s": float(np.quantile(c, 0.75)), "n": int(c.size)}


def ws_batch_by_runner(results_dirs: "str | list[str]") -> dict[str, dict]:
    """:func:`ws_batch_seconds` per trial runner (runners whose stores ran no raw-rule warm start are
    left out: their simulations keep the collection's measurement)."""
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    groups: dict[str, list] = {}
    for d in dirs:
        groups.setdefault(runner_of(d), []).append(str(d))
    out = {r: ws_batch_seconds(ds) for r, ds in groups.items()}
    return {r: v for r, v in out.items() if v is not None}
