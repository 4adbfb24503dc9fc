"""Noise ceiling of config-level fidelity, and whether seed noise depends on ψ.

A surrogate cannot predict a single real run better than the seed noise allows, so its figures are put
beside those of the best real competitor: a rerun of the same configuration with another seed. The
goal is "as good as a rerun".

How "a rerun predicts a run" is computed, from configurations with ≥ 2 full-budget seeds, per rung r:

- ``one_rerun``: every ordered pair of distinct seeds (i, j) of a configuration; run i's val accuracy
  at r is predicted by run j's. This is literally "another seed" (n = Σ k(k−1) pairs).
- ``mean_of_other_seeds``: each run i predicted by the mean accuracy of the other k−1 seeds
  (leave-one-seed-out; n = Σ k runs). With k = 3 it averages two reruns, so it is a stricter bar.
- the surrogate: each run i predicted by the cross-validated predictive mean of its configuration
  (a surrogate fitted without that configuration), as ``fidelity.pooled_fidelity`` computes it.

Spearman and R² are computed over those (prediction, run) pairs. The 90 % interval of a rerun is
centred on the predicting run's logit (or the mean of the other seeds' logits) with half-width
1.645·σ_r·√(1 + 1/m) (m = 1 predicting run, or k−1), where σ_r is the pooled seed-noise std at rung r
on the logit scale, estimated as the surrogate's noise model does (``surrogate.fit_noise``) but from
the *other* repeated configurations only. The other seeds' own spread is not used: with k−1 = 2 runs
it has one degree of freedom, so a Student-t interval is exact for Gaussian noise by construction
(and ~6 σ wide), which measures nothing about the data; the pooled σ is what the surrogate's own
intervals rest on, so the rerun's coverage tests that noise model on configurations it did not see.
The surrogate's interval is the 5–95 % range of its predictive samples (mean-curve uncertainty + seed
noise), per run.

Subsets: all repeated configurations, and the top quartile of them by mean final val accuracy (the
configurations whose order a scheduler's incumbent depends on). The top quartile is chosen on the
observed means, held-out run included, equally for the rerun and the surrogate.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm, spearmanr
from sklearn.metrics import r2_score

from ..space import PSI_KEYS
from ..textfmt import fixed_or_na
from .fit import effective_step, fit_noise, lr_test
from .model import logit, sigmoid, to_unit_array

Z90 = float(norm.ppf(0.95))
TOP_QUANTILE = 0.75


# ----------------------------------------------------------------------------- data
def repeated_matrix(curves: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """val accuracy of full-budget runs of configurations with ≥ 2 such runs: index (config_id, seed),
    columns epochs 1..E."""
    full = curves.groupby(["config_id", "seed"])["epoch"].transform("max") >= epochs
    piv = curves[full].pivot_table(index=["config_id", "seed"], columns="epoch", values="val_acc", aggfunc="first")
    piv = piv.reindex(columns=range(1, epochs + 1)).dropna()
    k = piv.groupby(level="config_id").size()
    return piv[piv.index.get_level_values("config_id").isin(k[k >= 2].index)]


def top_quartile(piv: pd.DataFrame, epochs: int, q: float = TOP_QUANTILE) -> list:
    """Config ids whose mean final val accuracy is at or above the q-quantile of the configs' means."""
    m = piv[epochs].groupby(level="config_id").mean()
    return sorted(m[m >= m.quantile(q)].index.tolist())


def _check_rungs(rungs, epochs: int) -> list[int]:
    rungs = [int(r) for r in rungs]
    bad = [r for r in rungs if not 1 <= r <= epochs]
    if bad:
        raise ValueError(f"rungs {bad} lie outside epochs 1..{epochs}")
    return rungs


def loo_noise_std(piv: pd.DataFrame) -> pd.DataFrame:
    """(config, epoch) pooled seed-noise std on the logit scale, each from the other configurations."""
    cids = piv.index.get_level_values("config_id").to_numpy()
    Y = logit(piv.to_numpy())
    means = pd.DataFrame(Y, index=cids).groupby(level=0).transform("mean").to_numpy()
    resid = Y - means
    out = {}
    import warnings
    for c in np.unique(cids):
        keep = cids != c
        with warnings.catch_warnings():  # noise-free epochs make the (unused here) correlation undefined
            warnings.simplefilter("ignore", RuntimeWarning)
            std, _, _ = fit_noise(resid[keep], cids[keep])
        out[c] = std
    return pd.DataFrame(out, index=piv.columns).T


# ----------------------------------------------------------------------------- predictions
def rerun_predictions(piv: pd.DataFrame, rungs, noise_std: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (predictor, config, run, rung): the observed run ``y``, the rerun's prediction
    ``pred`` and its 90 % interval ``lo``/``hi`` (see the module doc)."""
    rungs = _check_rungs(rungs, int(piv.columns.max()))
    noise_std = loo_noise_std(piv) if noise_std is None else noise_std
    rows = []
    for c, g in piv.groupby(level="config_id"):
        V = g.to_numpy()
        k = len(V)
        for r in rungs:
            v = V[:, r - 1]
            lv = logit(v)
            s = float(noise_std.loc[c, r])
            for i in range(k):
                others = [j for j in range(k) if j != i]
                for j in others:
                    h = Z90 * s * np.sqrt(2.0)
                    rows.append(("one_rerun", c, i, r, v[i], v[j], sigmoid(lv[j] - h), sigmoid(lv[j] + h)))
                m = len(others)
                centre = lv[others].mean()
                h = Z90 * s * np.sqrt(1.0 + 1.0 / m)
                rows.append(("mean_of_other_seeds", c, i, r, v[i], v[others].mean(), sigmoid(centre - h),
                             sigmoid(centre + h)))
    return pd.DataFrame(rows, columns=["predictor", "config_id", "run", "rung", "y", "pred", "lo", "hi"])


def surrogate_predictions(parts, piv: pd.DataFrame, rungs, seed: int = 0, n_mc: int = 2000) -> pd.DataFrame:
    """The same runs predicted by the cross-validated surrogates: ``parts`` as for
    ``fidelity.pooled_fidelity`` ((surrogate, its held-out curves, ...) per fold); each configuration
    is scored by the surrogate of the fold that held it out."""
    from .model import predictive_samples
    rungs = _check_rungs(rungs, int(piv.columns.max()))
    rng = np.random.default_rng(seed)
    want = set(piv.index.get_level_values("config_id"))
    rows = []
    for part in parts:
        sur, c = part[0], part[1]
        psi = c.groupby("config_id")[[f"psi_{k}" for k in PSI_KEYS]].first()
        psi = psi[psi.index.isin(want)]
        if psi.empty:
            continue
        smp = predictive_samples(sur, to_unit_array(psi), n_mc, rng)
        for i, cid in enumerate(psi.index):
            V = piv.loc[cid].to_numpy()
            for r in rungs:
                s = smp[:, i, r - 1]
                lo, hi = np.quantile(s, [0.05, 0.95])
                pred = float(s.mean())
                rows += [("surrogate", cid, run, r, V[run, r - 1], pred, lo, hi) for run in range(len(V))]
    return pd.DataFrame(rows, columns=["predictor", "config_id", "run", "rung", "y", "pred", "lo", "hi"])


# ----------------------------------------------------------------------------- figures
def _figures(d: pd.DataFrame) -> dict:
    y, p = d["y"].to_numpy(float), d["pred"].to_numpy(float)
    nan = float("nan")
    if len(d) < 3:
        sp = r2 = nan
    elif np.ptp(y) == 0:  # every run equal: R² is undefined unless the prediction is exact
        sp = r2 = 1.0 if np.allclose(y, p) else nan
    else:
        sp = float(spearmanr(y, p).statistic) if np.ptp(p) > 0 else nan
        r2 = float(r2_score(y, p))
    inside = (y >= d["lo"].to_numpy() - 1e-12) & (y <= d["hi"].to_numpy() + 1e-12)
    # the mean error tells a shifted prediction (negative R² among similar configurations) from a noisy one
    return {"spearman": sp, "r2": r2, "coverage_90": float(inside.mean()) if len(d) else nan,
            "mean_error": float((p - y).mean()) if len(d) else nan, "n": int(len(d)),
            "n_configs": int(d["config_id"].nunique())}


def summarize(preds: pd.DataFrame, subsets: dict, n_boot: int = 0, seed: int = 0) -> dict:
    """{subset: {predictor: {rung: figures}}}; with ``n_boot``, a bootstrap over configurations of the
    surrogate's minus one rerun's Spearman and R² (95 % percentile CI)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, ids in subsets.items():
        sub = preds[preds["config_id"].isin(ids)]
        res = {pr: {int(r): _figures(g) for r, g in gp.groupby("rung")} for pr, gp in sub.groupby("predictor")}
        if n_boot and {"surrogate", "one_rerun"} <= set(res):
            res["surrogate_minus_one_rerun"] = _boot_diff(sub, sorted(ids), n_boot, rng)
        out[name] = res
    return out


def _boot_diff(sub: pd.DataFrame, ids: list, n_boot: int, rng) -> dict:
    """Configurations resampled with replacement (the same resample for both predictors)."""
    from scipy.stats import rankdata
    out = {}
    for r, gr in sub.groupby("rung"):
        arr = {}
        for pr in ("surrogate", "one_rerun"):
            g = gr[gr["predictor"] == pr]
            by = [g[g["config_id"] == c] for c in ids]
            arr[pr] = ([b["y"].to_numpy(float) for b in by], [b["pred"].to_numpy(float) for b in by])
        diffs = {"spearman": [], "r2": []}
        for _ in range(n_boot):
            pick = rng.integers(0, len(ids), len(ids))
            f = {}
            for pr, (ys, ps) in arr.items():
                y, p = np.concatenate([ys[i] for i in pick]), np.concatenate([ps[i] for i in pick])
                ok = np.ptp(y) > 0 and np.ptp(p) > 0
                f[pr] = (np.corrcoef(rankdata(y), rankdata(p))[0, 1] if ok else np.nan,
                         1.0 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum() if np.ptp(y) > 0 else np.nan)
            diffs["spearman"].append(f["surrogate"][0] - f["one_rerun"][0])
            diffs["r2"].append(f["surrogate"][1] - f["one_rerun"][1])
        out[int(r)] = {k: [float(np.nanquantile(v, 0.025)), float(np.nanquantile(v, 0.975))] for k, v in diffs.items()}
    return out


def noise_ceiling(curves: pd.DataFrame, parts, rungs, epochs: int, seed: int = 0, n_mc: int = 2000,
                  n_boot: int = 500, subsets: dict | None = None) -> dict:
    """The rerun ceiling and the surrogate's cross-validated figures on the same runs, rungs and subsets
    (``parts``: the cross-validation folds, see ``surrogate_predictions``; None: the ceiling only;
    ``subsets``: further named lists of config ids, e.g. the targeted kinds of ``surrogate.targets``,
    scored where they have repeated seeds)."""
    piv = repeated_matrix(curves, epochs)
    if piv.empty:
        return {"n_repeated_configs": 0, "note": "no configuration has two full-budget seeds"}
    rungs = _check_rungs(rungs, epochs)
    preds = rerun_predictions(piv, rungs)
    if parts is not None:
        preds = pd.concat([preds, surrogate_predictions(parts, piv, rungs, seed=seed, n_mc=n_mc)], ignore_index=True)
    ids = sorted(piv.index.get_level_values("config_id").unique())
    top = top_quartile(piv, epochs)
    k = piv.groupby(level="config_id").size()
    named = {"all": ids, "top_quartile": top}
    for name, sub in (subsets or {}).items():
        sub = [c for c in sub if c in set(ids)]
        if sub:
            named[name] = sub
    return {"rungs": rungs, "n_repeated_configs": len(ids), "n_runs": int(len(piv)),
            "seeds_per_config": sorted(set(k.tolist())), "top_quartile_configs": len(top),
            "top_quartile_rule": f"mean final val accuracy >= its {TOP_QUANTILE:.2f}-quantile over the repeated configs",
            "definition": ("one_rerun: every ordered pair of distinct seeds of a configuration, run i predicted by run "
                           "j; mean_of_other_seeds: run i predicted by the mean of the other seeds; surrogate: run i "
                           "predicted by the cross-validated predictive mean of its configuration. Rerun 90 % "
                           "intervals: logit centre ± 1.645·σ_r·sqrt(1+1/m), σ_r the pooled seed-noise std from the "
                           "other repeated configurations; surrogate intervals: 5–95 % of its predictive samples"),
            "subset_configs": {name: len(v) for name, v in named.items()},
            "figures": summarize(preds, named, n_boot=n_boot if parts is not None else 0, seed=seed)}


def ceiling_table(nc: dict) -> list[str]:
    """Markdown lines: "surrogate vs a rerun" per subset and rung."""
    if not nc.get("n_repeated_configs"):
        return [f"Noise ceiling: {nc.get('note', 'no repeated configurations')}."]
    L = [f"Noise ceiling on {nc['n_repeated_configs']} configurations with repeated seeds ({nc['n_runs']} runs; "
         f"seeds per configuration {nc['seeds_per_config']}); top quartile: {nc['top_quartile_configs']} configurations "
         f"({nc['top_quartile_rule']})"
         + (". Targeted subsets (configurations): " + ", ".join(f"{k} {v}" for k, v in nc["subset_configs"].items()
                                                              if k not in ("all", "top_quartile"))
            if len(nc.get("subset_configs", {})) > 2 else "") + ". Goal: as good as a rerun.", "",
         "| subset | rung | n runs | Spearman: rerun / mean of other seeds / surrogate | R²: rerun / mean of others / "
         "surrogate | 90 % coverage: rerun / mean of others / surrogate | surrogate mean error (pp) | "
         "surrogate − rerun, 95 % CI (Spearman; R²) |",
         "|---|---|---|---|---|---|---|---|"]
    for sub, res in nc["figures"].items():
        for r in nc["rungs"]:
            f = {pr: _at(res.get(pr, {}), r) for pr in ("one_rerun", "mean_of_other_seeds", "surrogate")}
            n = f["surrogate"].get("n") or (f["mean_of_other_seeds"].get("n"))

            def trio(key, f=f):
                return " / ".join(fixed_or_na(f[p].get(key)) for p in ("one_rerun", "mean_of_other_seeds", "surrogate"))
            ci = _at(res.get("surrogate_minus_one_rerun", {}), r)
            cis = (f"[{fixed_or_na(ci['spearman'][0])}, {fixed_or_na(ci['spearman'][1])}]; [{fixed_or_na(ci['r2'][0])}, {fixed_or_na(ci['r2'][1])}]"
                   if ci else "–")
            me = f["surrogate"].get("mean_error")
            L.append(f"| {sub} | {r} | {n} | {trio('spearman')} | {trio('r2')} | {trio('coverage_90')} | "
                     f"{fixed_or_na(None if me is None else 100 * me, 2)} | {cis} |")
    return L


def promoted_check(nc: dict | None, tolerance: float = 0.05) -> dict:
    """Per rung, the surrogate's cross-validated Spearman against one rerun's on the configurations the
    real schedulers evaluated there: rung 1 every repeated configuration (every sampled configuration is
    evaluated at the first rung), rungs 3–8 those real sweeps took to epoch ≥ 3 (``promoted``), rungs ≥ 9
    those taken to ≥ 9 (``promoted-9``). Met where surrogate ≥ rerun − ``tolerance`` at every rung;
    None (undecidable) without repeated seeds on promoted configurations."""
    figs = (nc or {}).get("figures") or {}
    rule = (f"surrogate Spearman >= one rerun's - {tolerance} at every rung; rung 1 on all repeated configurations, "
            "rungs 3-8 on those real sweeps took to epoch >= 3, rungs >= 9 on those taken to >= 9")
    if "promoted" not in figs or "promoted-9" not in figs:
        return {"meets": None, "rule": rule,
                "reason": "no repeated seeds of configurations the real schedulers promoted (targeted collection)"}
    per = {}
    for r in nc["rungs"]:
        sub = "all" if r < 3 else ("promoted" if r < 9 else "promoted-9")
        res = figs[sub]
        sur, rer = _at(res.get("surrogate", {}), r), _at(res.get("one_rerun", {}), r)
        a, b = sur.get("spearman"), rer.get("spearman")
        ok = None if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) else bool(a >= b - tolerance)
        per[int(r)] = {"subset": sub, "n_configs": nc["subset_configs"][sub], "n_runs": sur.get("n"),
                       "surrogate": a, "one_rerun": b, "gap": None if ok is None else float(a - b),
                       "ci95_surrogate_minus_rerun": _at(res.get("surrogate_minus_one_rerun", {}), r).get("spearman"),
                       "meets": ok}
    vals = [v["meets"] for v in per.values()]
    return {"meets": None if None in vals else all(vals), "rule": rule, "per_rung": per}


def promoted_table(chk: dict) -> list[str]:
    if chk.get("meets") is None and "per_rung" not in chk:
        return [f"Per-rung Spearman on the promoted configurations: **not decidable** ({chk['reason']})."]
    L = [f"Per-rung Spearman on the configurations the real schedulers evaluated there, against one rerun on the "
         f"same runs ({chk['rule']}):", "",
         "| rung | subset | configurations | runs | rerun | surrogate | surrogate − rerun [95 % CI] | within 0.05 |",
         "|---|---|---|---|---|---|---|---|"]
    for r, v in chk["per_rung"].items():
        ci = v.get("ci95_surrogate_minus_rerun")
        cis = f" [{fixed_or_na(ci[0])}, {fixed_or_na(ci[1])}]" if ci else ""
        L.append(f"| {r} | {v['subset']} | {v['n_configs']} | {v['n_runs']} | {fixed_or_na(v['one_rerun'])} | "
                 f"{fixed_or_na(v['surrogate'])} | {fixed_or_na(v['gap'])}{cis} | {v['meets']} |")
    return L + ["", f"Per-rung target met: **{chk['meets']}**"]


def _at(d: dict, rung: int):
    """d[rung], also after a JSON round trip (which turns integer keys into strings)."""
    return d.get(rung, d.get(str(rung), {}))



# ----------------------------------------------------------------------------- seed noise vs ψ
def seed_noise_dependence(curves: pd.DataFrame, rungs, epochs: int, alpha: float = 0.05,
                          min_ratio: float = 1.5) -> dict:
    """Does the per-configuration seed std (logit val accuracy, at each rung) depend on ψ?

    Per rung: Spearman of the configs' seed std with log10 lr/(1−μ) (n configs, p); likelihood-ratio
    tests (1 df) of log σ² linear in a covariate against a constant σ, for two covariates: log10
    lr/(1−μ) (``eff_step``, instability) and the configuration's mean logit accuracy at that rung
    (``level``, where on its curve a run is); and log σ² linear in all five unit-cube ψ coordinates
    (5 df). A covariate qualifies if some rung's 1-df test is significant after Holm's correction over
    the rungs at level ``alpha`` and its fitted std changes by at least ``min_ratio`` between the 10th
    and 90th percentile of the covariate: a detectable and consequential dependence. Decision: a
    heteroscedastic noise model on the qualifying covariate with the larger sum of LRT statistics over
    the rungs; none qualifies: constant."""
    piv = repeated_matrix(curves, epochs)
    rungs = _check_rungs(rungs, epochs)
    if piv.empty:
        return {"n_configs": 0, "decision": "keep the constant seed-noise model", "reason": "no repeated configurations"}
    cids = piv.index.get_level_values("config_id")
    psi = curves.groupby("config_id")[[f"psi_{k}" for k in PSI_KEYS]].first().loc[sorted(set(cids))]
    x = effective_step(psi)
    xs = (x - x.mean()) / x.std()
    U = to_unit_array(psi)
    L = pd.DataFrame(logit(piv.to_numpy()), index=piv.index, columns=piv.columns)
    g = L.groupby(level="config_id")
    k = g.size().loc[psi.index].to_numpy(float)
    per = {}
    for r in rungs:
        ss = (g[r].var(ddof=1) * (g[r].count() - 1)).loc[psi.index].to_numpy(float)
        sd = np.sqrt(ss / (k - 1))
        sp = spearmanr(sd, x)
        t1 = lr_test(ss, k - 1, xs[:, None])
        t5 = lr_test(ss, k - 1, U - U.mean(0))
        # the accuracy level a configuration reaches goes with its step size; this tells whether the
        # level alone explains the dependence as well (then the two cannot be told apart here)
        lvl = g[r].mean().loc[psi.index].to_numpy(float)
        tl = lr_test(ss, k - 1, ((lvl - lvl.mean()) / lvl.std())[:, None])
        x10, x90 = np.quantile(x, [0.1, 0.9])
        ratio = float(np.exp(0.5 * t1["coef"][0] * (x90 - x10) / x.std()))
        l10, l90 = np.quantile(lvl, [0.1, 0.9])
        tl["std_ratio_p90_vs_p10"] = float(np.exp(0.5 * tl["coef"][0] * (l90 - l10) / lvl.std()))
        per[int(r)] = {"n_configs": int(len(ss)), "seed_std_median": float(np.median(sd)),
                       "spearman_vs_eff_step": {"rho": float(sp.statistic), "p": float(sp.pvalue)},
                       "lrt_eff_step": t1, "lrt_all_psi": t5, "lrt_mean_level": tl,
                       "spearman_eff_step_vs_mean_level": float(spearmanr(x, lvl).statistic),
                       "std_ratio_p90_vs_p10": ratio}
    # Holm over rungs for each covariate's 1-df test
    for key in ("lrt_eff_step", "lrt_mean_level"):
        order = sorted(per, key=lambda r: per[r][key]["p"])
        m, running = len(order), 0.0
        for i, r in enumerate(order):
            running = max(running, min(1.0, (m - i) * per[r][key]["p"]))
            per[r][key]["p_holm"] = running

    def qualifying(key, ratio):
        return [r for r in per if per[r][key]["p_holm"] < alpha and max(ratio(r), 1.0 / ratio(r)) >= min_ratio]
    hits_by = {"eff_step": qualifying("lrt_eff_step", lambda r: per[r]["std_ratio_p90_vs_p10"]),
               "level": qualifying("lrt_mean_level", lambda r: per[r]["lrt_mean_level"]["std_ratio_p90_vs_p10"])}
    strength = {"eff_step": sum(per[r]["lrt_eff_step"]["statistic"] for r in per),
                "level": sum(per[r]["lrt_mean_level"]["statistic"] for r in per)}
    chosen = max((c for c in hits_by if hits_by[c]), key=lambda c: strength[c], default=None)
    hits = hits_by[chosen] if chosen else []
    all_x = effective_step(curves.groupby("config_id")[[f"psi_{k}" for k in PSI_KEYS]].first())
    out = {"n_configs": int(len(psi)), "seeds_per_config": sorted(set(k.astype(int).tolist())),
           "covariate": "log10 lr/(1-momentum)",
           "eff_step_range_repeated": [float(x.min()), float(x.max())],
           "eff_step_range_all_configs": [float(all_x.min()), float(all_x.max())],
           "rule": (f"a covariate (log10 lr/(1-μ), or the mean logit accuracy at the rung) qualifies if a rung's LRT "
                    f"(log σ² linear in it, 1 df) has Holm-adjusted p < {alpha} and the fitted std changes ≥ "
                    f"{min_ratio}× between its 10th and 90th percentile; of the qualifying ones, the larger sum of LRT "
                    "statistics over the rungs is modelled"),
           "qualifying_rungs": hits_by, "lrt_sum": strength,
           "per_rung": per}
    out["covariate"] = chosen
    if chosen:
        from .fit import NOISE_COVARIATES
        out["decision"] = (f"use a heteroscedastic seed-noise model: log σ² linear in {NOISE_COVARIATES[chosen]}, "
                           "fitted per epoch (`ohgw-bench fit` enables it)")
        out["rungs_with_dependence"] = sorted(hits)
    else:
        out["decision"] = "keep the constant seed-noise model"
        out["rungs_with_dependence"] = []
    return out


def dependence_table(dep: dict) -> list[str]:
    if not dep.get("n_configs"):
        return [f"Seed noise vs ψ: {dep.get('reason', 'no data')}."]
    L = [f"Seed noise vs ψ on {dep['n_configs']} configurations (seeds per configuration {dep['seeds_per_config']}; "
         f"log10 lr/(1−μ) from {dep['eff_step_range_repeated'][0]:.2f} to {dep['eff_step_range_repeated'][1]:.2f}, "
         f"all collected configurations {dep['eff_step_range_all_configs'][0]:.2f} to "
         f"{dep['eff_step_range_all_configs'][1]:.2f}); seed std on the logit scale.", "",
         "| rung | n | median seed std | Spearman vs lr/(1−μ) (ρ, p) | LRT lr/(1−μ) (χ², p, Holm p) | "
         "std ratio p90/p10 | LRT all ψ (χ², df, p) | LRT mean logit level (χ², p, Holm p) | std ratio p90/p10 (level) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r, v in dep["per_rung"].items():
        s, t1, t5, tl = v["spearman_vs_eff_step"], v["lrt_eff_step"], v["lrt_all_psi"], v["lrt_mean_level"]
        L.append(f"| {r} | {v['n_configs']} | {v['seed_std_median']:.3f} | {s['rho']:.3f}, {s['p']:.3g} | "
                 f"{t1['statistic']:.2f}, {t1['p']:.3g}, {t1['p_holm']:.3g} | {v['std_ratio_p90_vs_p10']:.2f} | "
                 f"{t5['statistic']:.2f}, {t5['df']}, {t5['p']:.3g} | {tl['statistic']:.2f}, {tl['p']:.3g}, "
                 f"{tl['p_holm']:.3g} | {tl['std_ratio_p90_vs_p10']:.2f} |" if "p_holm" in tl else f"–, – |")
    return L + ["", f"Rule: {dep['rule']}. Decision: **{dep['decision']}**."]
