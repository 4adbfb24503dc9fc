"""Config-level fidelity of a surrogate on real runs it never saw (used by ``fit`` and ``verify``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import r2_score

from ..space import PSI_KEYS
from ..textfmt import fixed_or_na
from .model import Surrogate, predictive_samples, to_unit_array

TARGETS = {
    "final_val_spearman": (">=", 0.96),
    "final_val_r2": (">=", 0.93),
    "seed_std_ratio": ("in", (0.8, 1.25)),
    "coverage_90": ("in", (0.85, 0.95)),
    # the worst rung's 90 % coverage, so "in range" means every rung is
    "coverage_90_every_rung": ("in", (0.85, 0.95)),
}


def meets(name: str, value: float) -> bool | None:
    if name not in TARGETS or value is None or not np.isfinite(value):
        return None
    op, t = TARGETS[name]
    return bool(value >= t) if op == ">=" else bool(t[0] <= value <= t[1])


def config_fidelity(sur: Surrogate, curves: pd.DataFrame, hgs: pd.DataFrame | None = None, seed: int = 0,
                    n_mc: int = 2000) -> dict:
    """Spearman/R² of final val acc, Spearman per rung, seed-std ratio, 90 % coverage, epoch-time
    error and hyper-gradient cosine of one surrogate on the given (held-out) real runs."""
    return pooled_fidelity([(sur, curves, hgs)], seed=seed, n_mc=n_mc)


def heldout_split(curves: pd.DataFrame, frac: float = 0.2, seed: int = 0) -> tuple[set, set]:
    """Split config ids into (train, held-out), stratified by repeated vs single-seed configs."""
    rng = np.random.default_rng(seed)
    n_seeds = curves.groupby("config_id")["seed"].nunique()
    train, held = set(), set()
    for group in (n_seeds[n_seeds >= 2].index, n_seeds[n_seeds < 2].index):
        ids = np.array(sorted(group))
        rng.shuffle(ids)
        k = int(round(frac * len(ids)))
        held.update(ids[:k].tolist())
        train.update(ids[k:].tolist())
    return train, held



def fidelity_table(fid: dict) -> list[str]:
    """Markdown lines: every config-level figure next to its target, and Spearman per rung."""
    lines = ["| figure | value | target | meets |", "|---|---|---|---|"]
    for k, (op, t) in TARGETS.items():
        tgt = f"≥ {t}" if op == ">=" else f"{t[0]}–{t[1]}"
        # 4 decimals: a value just below its target must not print as the target itself
        lines.append(f"| {k} | {fixed_or_na(fid.get(k), 4)} | {tgt} | {meets(k, fid.get(k))} |")
    lines.append(f"| epoch_time_mape | {fixed_or_na(fid.get('epoch_time_mape'))} | – | – |")
    if "hypergrad_cosine_median" in fid:
        lines.append(f"| hypergrad_cosine_median | {fixed_or_na(fid['hypergrad_cosine_median'])} | – | – |")
    lines += ["", "Spearman per rung: " + ", ".join(f"epoch {r}: {fixed_or_na(v)}" for r, v in fid["rung_spearman"].items())]
    if "rung_coverage_90" in fid:
        lines += ["", "90 % coverage per rung (every run at that epoch inside its configuration's 5–95 % predictive "
                  "interval): " + ", ".join(f"epoch {r}: {fixed_or_na(v)}" for r, v in fid["rung_coverage_90"].items()), ""]
    return lines


def format_markdown(fid: dict, title: str) -> str:
    lines = [f"# {title}", "", f"Held-out real runs: {fid['n_runs']} runs on {fid['n_configs']} configurations "
             f"({fid.get('n_repeated_configs', 0)} with repeated seeds); "
             f"hyper-gradients on {fid.get('n_hypergrad_configs', 0)} configurations.", ""] + fidelity_table(fid)
    if "hypergrad_component_spearman" in fid:
        lines.append("Hyper-gradient Spearman per component: " + ", ".join(
            f"{k}: {v:.3f}" for k, v in fid["hypergrad_component_spearman"].items()))
    lines += noise_sections(fid)
    return "\n".join(lines) + "\n"


def noise_sections(fid: dict) -> list[str]:
    """Markdown sections for the noise ceiling and the seed-noise-vs-ψ test, where ``fid`` holds them."""
    from .noise_ceiling import ceiling_table, dependence_table, promoted_check, promoted_table
    out = []
    if "noise_ceiling" in fid:
        out += ["", "## Surrogate vs a rerun", ""] + ceiling_table(fid["noise_ceiling"])
        if "promoted" in fid["noise_ceiling"].get("subset_configs", {}):
            out += [""] + promoted_table(promoted_check(fid["noise_ceiling"]))
    if "seed_noise_vs_psi" in fid:
        out += ["", "## Does seed noise depend on ψ?", ""] + dependence_table(fid["seed_noise_vs_psi"])
    return out


def cv_parts(curves: pd.DataFrame, hgs: pd.DataFrame, task_name: str, epochs: int, k: int = 5, seed: int = 0,
             **fit_kw) -> list:
    """k-fold cross-validation over configurations: (surrogate fitted without the fold
    (``fit_surrogate(..., **fit_kw)``), the fold's curves, its hyper-gradients) per fold. Every
    configuration is scored once by a surrogate that never saw it; ``pooled_fidelity`` pools the folds'
    predictions, so the figures rest on every configuration instead of one small held-out split."""
    from .fit import fit_surrogate
    rng = np.random.default_rng(seed)
    ids = np.array(sorted(curves["config_id"].unique()))
    hids = np.array(sorted(hgs["hg_config_id"].unique()))
    rng.shuffle(ids)
    rng.shuffle(hids)
    folds, hfolds = np.array_split(ids, k), np.array_split(hids, k)
    parts = []
    for f, hf in zip(folds, hfolds):
        sur = fit_surrogate(curves, hgs, task_name, epochs, seed=seed, config_ids=set(ids) - set(f),
                            hg_config_ids=set(hids) - set(hf), **fit_kw)
        parts.append((sur, curves[curves["config_id"].isin(f)], hgs[hgs["hg_config_id"].isin(hf)]))
    return parts


def pooled_fidelity(parts, seed: int = 0, k: int | None = None, n_mc: int = 2000) -> dict:
    """config_fidelity over several (surrogate, held-out curves, held-out hypergrads) parts, with
    the predictions pooled before the statistics are computed."""
    rng = np.random.default_rng(seed)
    rows, hrows = [], []
    rung_hits: dict[int, list] = {}
    for sur, c, h in parts:
        E, rungs = sur.epochs, sur.milestones()
        full = c.groupby(["config_id", "seed"])["epoch"].transform("max") >= E
        c = c[full]
        psi = c.groupby("config_id")[[f"psi_{k_}" for k_ in PSI_KEYS]].first()
        if len(psi) == 0:
            continue
        U = to_unit_array(psi)
        smp = predictive_samples(sur, U, n_mc, rng)
        noise = predictive_samples(sur, U, n_mc, rng, include_model=False)
        piv = c.pivot_table(index="config_id", columns="epoch", values="val_acc", aggfunc="mean").loc[psi.index]
        pos = {cid: i for i, cid in enumerate(psi.index)}
        fin = c[c["epoch"] == E]
        g = fin.groupby("config_id")["val_acc"]
        for cid, i in pos.items():
            rows.append({"config_id": cid, **{f"obs_{r}": piv.loc[cid, r] for r in rungs},
                         **{f"pred_{r}": smp[:, i, r - 1].mean() for r in rungs},
                         "obs_var": g.var(ddof=1).get(cid, np.nan), "n_seeds": int(g.count().get(cid, 0)),
                         "pred_noise_var": noise[:, i, E - 1].var()})
        for r in sorted(set(rungs) | {E}):   # every run at epoch r inside its configuration's 5–95 % interval
            cr = c[c["epoch"] == r]
            qlo, qhi = np.quantile(smp[:, :, r - 1], [0.05, 0.95], axis=0)
            jj, vr = cr["config_id"].map(pos).to_numpy(), cr["val_acc"].to_numpy()
            rung_hits.setdefault(int(r), []).append((vr >= qlo[jj]) & (vr <= qhi[jj]))
        later = c[c["epoch"] > 1].groupby(["config_id", "seed"])["epoch_time"].mean().reset_index()
        pt = np.exp(sur.epoch_log_time(U) + 0.5 * sur.time_sigma ** 2)[later["config_id"].map(pos).to_numpy()]
        runs_t = np.abs(pt - later["epoch_time"].to_numpy()) / later["epoch_time"].to_numpy()
        hrows.append(("time", runs_t))
        if h is not None and len(h):
            hcols = [f"hg_{k_}" for k_ in PSI_KEYS]
            hm = h.groupby("hg_config_id")[hcols].mean()
            hpsi = h.groupby("hg_config_id")[[f"psi_{k_}" for k_ in PSI_KEYS]].first().loc[hm.index]
            hrows.append(("hg", (sur.hg_mean_gp.predict(to_unit_array(hpsi)), hm.to_numpy())))
    df = pd.DataFrame(rows)
    E, rungs = parts[0][0].epochs, parts[0][0].milestones()
    out: dict = {"n_configs": int(len(df)), "n_runs": int(sum(len(h) for h in rung_hits.get(E, []))),
                 "scheme": f"{k}-fold cross-validation over configurations" if k else "held-out split"}
    out["final_val_spearman"] = float(spearmanr(df[f"obs_{E}"], df[f"pred_{E}"]).statistic)
    out["final_val_r2"] = float(r2_score(df[f"obs_{E}"], df[f"pred_{E}"]))
    out["rung_spearman"] = {int(r): float(spearmanr(df[f"obs_{r}"], df[f"pred_{r}"]).statistic) for r in rungs}
    rep = df[df["n_seeds"] >= 2]
    out["n_repeated_configs"] = int(len(rep))
    out["seed_std_ratio"] = float(np.sqrt(rep["pred_noise_var"].mean() / rep["obs_var"].mean())) if len(rep) else float("nan")
    out["rung_coverage_90"] = {r: float(np.concatenate(h).mean()) for r, h in sorted(rung_hits.items())}
    out["coverage_90"] = out["rung_coverage_90"][E]
    # the rung farthest from the nominal 0.90 stands for all of them in the range check
    out["coverage_90_every_rung"] = max(out["rung_coverage_90"].values(), key=lambda x: abs(x - 0.9))
    out["epoch_time_mape"] = float(np.mean(np.concatenate([v for t, v in hrows if t == "time"])))
    hg = [v for t, v in hrows if t == "hg"]
    if hg:
        pred = np.concatenate([p for p, _ in hg])
        obs = np.concatenate([o for _, o in hg])
        cos = (pred * obs).sum(1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(obs, axis=1) + 1e-30)
        out["hypergrad_cosine_median"] = float(np.median(cos))
        out["hypergrad_cosine_mean"] = float(np.mean(cos))
        out["hypergrad_component_spearman"] = {k_: float(spearmanr(obs[:, j], pred[:, j]).statistic)
                                               for j, k_ in enumerate(PSI_KEYS)}
        out["n_hypergrad_configs"] = int(len(obs))
    out["meets_target"] = {k_: meets(k_, out.get(k_)) for k_ in TARGETS}
    return out
