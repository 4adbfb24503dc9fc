"""Targeted collection: repeated seeds where the schedulers look.

The Sobol design spreads its repeated seeds evenly over ψ, so it says little about the seed noise of
the configurations a scheduler actually compares late (the ones it promoted), of the best ones, and
of the unstable high-lr × high-momentum edge. ``select_targets`` picks, once, configurations of four
kinds, and ``collect`` trains each to the full budget with ``seeds`` seeds:

- ``promoted-9``: configurations that real sweeps took to epoch ≥ 9 (new configuration ids);
- ``promoted-3``: configurations that real sweeps took to epoch 3 but not to 9 (new ids);
- ``top-quartile``: single-seed design configurations whose final val accuracy lies in the top quartile
  of the design's configurations (their missing seeds are added);
- ``edge``: the single-seed design configurations with the largest lr/(1−μ) (missing seeds added).

Random picks are prefixes of permutations drawn with ``targeted.seed`` (one stream per kind), made from the design's own runs
only (not the seeds added here): raising a count keeps every configuration already chosen and adds the
next ones. The selection is written to ``targets.parquet`` and extended, never redrawn, by a later
collection.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..space import PSI_KEYS
from .fit import effective_step

KINDS = ("promoted-9", "promoted-3", "top-quartile", "edge")
ID_BASE = {"promoted-9": 10_000, "promoted-3": 20_000}   # new configurations' ids; design ones keep theirs
PSI_COLS = [f"psi_{k}" for k in PSI_KEYS]


def sweep_trials(sweeps: list[str]) -> pd.DataFrame:
    """One row per real trial of the given sweep stores: the ψ it trained with (after any warm start)
    and the highest epoch it reached."""
    frames = []
    for s in sweeps:
        p = Path(s) / "results.parquet"
        if not p.exists():
            raise ValueError(f"targeted.sweeps: {s!r} holds no results.parquet (not a sweep's results directory)")
        r = pd.read_parquet(p)
        if "backend" in r and (r["backend"] != "real").any():
            raise ValueError(f"targeted.sweeps: {s!r} holds simulated results; only real sweeps can be targeted")
        xp = [f"xp_{k}" for k in PSI_KEYS]
        g = r.groupby(["scheduler", "variant", "seed", "trial_id"], sort=True)
        t = g.agg(max_epoch=("epoch", "max"), **{f"psi_{k}": (f"xp_{k}", "first") for k in PSI_KEYS}).reset_index()
        t["source"] = str(s)
        frames.append(t.dropna(subset=PSI_COLS) if set(xp) <= set(r.columns) else t.iloc[:0])
    return pd.concat(frames, ignore_index=True)


def select_targets(design_curves: pd.DataFrame, tcfg, epochs: int, n_repeat_configs: int) -> pd.DataFrame:
    """The targeted configurations: one row per (config_id, kind) with ψ, the source and ``seeds``.
    ``design_curves``: the design's runs (every seed of the first ``n_repeat_configs`` configurations,
    seed 0 of the others)."""
    def rng(kind):
        return np.random.default_rng([tcfg.seed, KINDS.index(kind)])
    rows = []
    if tcfg.sweeps and (tcfg.promoted_9 or tcfg.promoted_3):
        t = sweep_trials(tcfg.sweeps)
        t["key"] = t[PSI_COLS].round(6).astype(str).agg("|".join, axis=1)
        best = t.sort_values("max_epoch", ascending=False).drop_duplicates("key").sort_values("key")
        pools = {"promoted-9": best[best["max_epoch"] >= 9],
                 "promoted-3": best[(best["max_epoch"] >= 3) & (best["max_epoch"] < 9)]}
        for kind, n in (("promoted-9", tcfg.promoted_9), ("promoted-3", tcfg.promoted_3)):
            pool = pools[kind]
            if n > len(pool):
                raise ValueError(f"targeted.{kind.replace('-', '_')}={n}, but the sweeps hold only {len(pool)} "
                                 f"such configurations")
            for k, (_, r) in enumerate(pool.iloc[rng(kind).permutation(len(pool))[:n]].iterrows()):
                rows.append({"config_id": ID_BASE[kind] + k, "kind": kind, **{c: float(r[c]) for c in PSI_COLS},
                             "source": f"{r['source']}:{r['scheduler']}/{r['variant']}/seed {r['seed']}/trial "
                                       f"{r['trial_id']} (epoch {int(r['max_epoch'])})"})
    if tcfg.top_quartile or tcfg.edge:
        full = design_curves[design_curves["epoch"] == epochs]
        final = full.groupby("config_id")["val_acc"].mean()
        psi = design_curves.groupby("config_id")[PSI_COLS].first().loc[final.index]
        single = final.index[final.index >= n_repeat_configs]
        top = final[single][final[single] >= final.quantile(0.75)].index.to_numpy()
        if tcfg.top_quartile > len(top):
            raise ValueError(f"targeted.top_quartile={tcfg.top_quartile}, but only {len(top)} single-seed design "
                             f"configurations lie in the top quartile")
        top = top[rng("top-quartile").permutation(len(top))[:tcfg.top_quartile]]
        # the edge excludes every top-quartile candidate, so that raising top_quartile never moves it
        rest = psi.loc[[c for c in single if c not in set(final[single][final[single] >= final.quantile(0.75)].index)]]
        edge = rest.index[np.argsort(-effective_step(rest), kind="stable")[:tcfg.edge]].to_numpy()
        for kind, ids in (("top-quartile", top), ("edge", edge)):
            for c in ids:
                rows.append({"config_id": int(c), "kind": kind, **psi.loc[c].astype(float).to_dict(),
                             "source": "design"})
    out = pd.DataFrame(rows, columns=["config_id", "kind", *PSI_COLS, "source"])
    out["seeds"] = int(tcfg.seeds)
    return out


def target_jobs(targets: pd.DataFrame, done: set) -> list[tuple[int, int, dict]]:
    """(config_id, seed, ψ) not yet collected, configuration by configuration."""
    jobs = []
    for _, r in targets.iterrows():
        psi = {k: float(r[f"psi_{k}"]) for k in PSI_KEYS}
        jobs += [(int(r["config_id"]), s, psi) for s in range(int(r["seeds"])) if (int(r["config_id"]), s) not in done]
    return jobs


def subsets(directory: Path, curves: pd.DataFrame) -> dict[str, list]:
    """Named config-id subsets for the noise ceiling: the targeted kinds (``promoted`` = both promoted
    kinds) where ``targets.parquet`` exists; empty otherwise."""
    p = Path(directory) / "targets.parquet"
    if not p.exists():
        return {}
    t = pd.read_parquet(p)
    have = set(curves["config_id"])
    out = {"promoted": sorted(int(c) for c in t.loc[t["kind"].str.startswith("promoted"), "config_id"] if c in have)}
    for kind in KINDS:
        out[kind] = sorted(int(c) for c in t.loc[t["kind"] == kind, "config_id"] if c in have)
    return {k: v for k, v in out.items() if v}
