"""Start-up overhead of real trial processes, measured from a real sweep's results store."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .results import load


def _load_all(results_dirs: "str | list[str]") -> pd.DataFrame:
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    return pd.concat([load(d)[0] for d in dirs], ignore_index=True)


def startup_overhead(results_dir: "str | list[str]") -> dict:
    """Per (re)start: time from the tuner starting the process to its first result, minus that
    epoch's own time — interpreter start, imports, data and checkpoint loading, the first report.
    Several real sweeps' stores are pooled."""
    res = _load_all(results_dir)
    if "segment_start_s" not in res or res["segment_start_s"].isna().all():
        raise ValueError(f"results in {results_dir!r} carry no trial start times (not a real sweep?)")
    r = res.dropna(subset=["segment_start_s"]).sort_values("elapsed_s")
    first = r.groupby(["scheduler", "variant", "seed", "trial_id", "segment_start_s"]).first().reset_index()
    over = first["elapsed_s"] - first["segment_start_s"] - first["epoch_time"]
    over = over[np.isfinite(over)]
    if over.empty:
        raise ValueError(f"results in {results_dir!r} hold no complete (re)start to measure")
    return {"median_s": float(over.median()), "q25_s": float(over.quantile(0.25)),
            "q75_s": float(over.quantile(0.75)), "n": int(len(over))}


def sweep_epoch_times(results_dir: "str | list[str]") -> pd.DataFrame:
    """Epoch times of real sweeps' trials (psi_* = the trained x′), for the surrogate's time model.
    A trial's first epoch contains its warm start, which the surrogate adds separately: removed."""
    from .space import PSI_KEYS
    res = _load_all(results_dir)
    out = pd.DataFrame({f"psi_{k}": res[f"xp_{k}"] for k in PSI_KEYS})
    out["epoch"] = res["epoch"].to_numpy()
    ws = res["ws_cost_s"].fillna(0.0).where(res["epoch"] == 1, 0.0)
    out["epoch_time"] = (res["epoch_time"] - ws).to_numpy()
    return out[np.isfinite(out["epoch_time"]) & (out["epoch_time"] > 0)].reset_index(drop=True)
