"""Real against predicted warm-start gains: does the surrogate know what a step ψ → ψ′ does?

The step-size frontier is simulated: each warm-started trial is the surrogate's curve at ψ′ instead of
ψ. Here the same steps are taken in real runs, on configurations outside the surrogate's design:

- a scrambled Sobol design with its own seed (never the collection's), ``n_configs`` points;
- per configuration, one real full-budget run per warm start (``none`` = the baseline) with the *same*
  seed: the same initialisation, data order and augmentations, the warm start's true hyper-gradients
  drawn from their own stream (``trial.trainer.Trial``), so a pair differs only through ψ → ψ′;
- real gain = val acc(ψ′ run) − val acc(baseline run) at an epoch; predicted gain = the surrogate's
  expected val acc at the ψ′ the real warm start reached minus at ψ (``expected_val_acc``: the mean
  curve, a diverged run counting as chance).

``gains.parquet`` (one row per run and epoch) is rewritten atomically after every finished run and a
rerun skips the runs it holds, so a stopped collection resumes; ``gains.yaml`` records the design, and a
resume with another design or other variants is refused.
"""
from __future__ import annotations

import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from tqdm import tqdm

from .. import space
from ..seeding import derive_seed
from ..space import PSI_KEYS
from ..store import write_parquet_atomic
from .collect import _task_data, _worker_init, design

# the frontier's step sizes where the simulated effect is largest (raw η 1, 10; normalized δ 0.3)
DEFAULT_VARIANTS = {"raw-eta1": "hypergradient:eta=1,steps=1,rule=raw",
                    "raw-eta10": "hypergradient:eta=10,steps=1,rule=raw",
                    "norm-d0.3": "hypergradient:rule=normalized,delta=0.3,batches=4"}
SPEARMAN_TARGET = 0.80
SIGN_TARGET = 0.90
COLLAPSE = 0.05          # a real gain at or below −5 pp is a collapse the surrogate must represent
CHANCE = 0.1
DESIGN_SEED_OFFSET = 104_729   # keeps the gain design apart from the collection's Sobol designs


def _check_variants(variants: dict[str, str]) -> dict[str, str]:
    from ..warmstart.spec import SURROGATE_ONLY, WarmStart
    if not variants:
        raise ValueError("gains: no warm-start variants given (--variant NAME=SPEC)")
    out = {}
    for name, spec in variants.items():
        if name == "baseline":
            raise ValueError("gains: variant name 'baseline' is reserved for the run without a warm start")
        ws = WarmStart.parse(spec)
        if ws.kind in SURROGATE_ONLY or ws.kind == "none":
            raise ValueError(f"gains: variant {name}={spec!r} cannot be paired in real runs (kind {ws.kind!r})")
        out[name] = ws.spec()
    return out


def _run(task_name: str, config_id: int, variant: str, spec: str, psi: dict, data_root) -> list[dict]:
    from ..tasks import get_task
    from ..trial.trainer import Trial
    task = get_task(task_name)
    trial = Trial(task, psi, derive_seed(config_id, "gains"), _task_data(task_name, data_root),
                  warm_start=None if variant == "baseline" else spec)
    rows = trial.run(task.max_epochs)
    keep = ("epoch", "val_acc", "test_acc", "epoch_time", "diverged", "ws_cost_s")
    rec = rows[-1]
    return [{"config_id": config_id, "variant": variant, "spec": spec if variant != "baseline" else "none",
             **{f"x_{k}": rec[f"x_{k}"] for k in PSI_KEYS}, **{f"xp_{k}": rec[f"xp_{k}"] for k in PSI_KEYS},
             **{k: r.get(k, np.nan) for k in keep}} for r in rows]


def _check_same_design(out: Path, meta: dict) -> None:
    import yaml
    p = out / "gains.yaml"
    if p.exists():
        old = yaml.safe_load(p.read_text()) or {}
        for k in ("task", "design_seed", "variants"):
            if old.get(k) != meta[k]:
                raise ValueError(f"{out} holds gains collected with {k}={old.get(k)!r}; this run has "
                                 f"{k}={meta[k]!r} (use another --out directory)")


def collect_gains(task_name: str, out: "str | Path", variants: dict[str, str], n_configs: int = 15,
                  design_seed: int = 0, workers: int = 2, threads_per_worker: int = 1, data_root=None,
                  progress: bool = True) -> pd.DataFrame:
    """Real paired runs (baseline and every variant, same seed) on ``n_configs`` configurations of a
    design that is not the surrogate's; resumable. Returns all runs' rows."""
    import yaml

    from ..tasks import get_task
    get_task(task_name)
    variants = _check_variants(variants)
    out = Path(out)
    seed = design_seed + DESIGN_SEED_OFFSET
    meta = {"task": task_name, "design_seed": seed, "variants": variants}
    _check_same_design(out, meta)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gains.parquet"
    df = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    # a larger n_configs extends the same design: Sobol points keep their order
    (out / "gains.yaml").write_text(yaml.safe_dump({**meta, "n_configs": max(n_configs, _n_configs(df))},
                                                   sort_keys=False))
    done = set(zip(df["config_id"], df["variant"])) if len(df) else set()
    pts = design(n_configs, seed)
    jobs = [(i, v, s, pts[i]) for i in range(n_configs) for v, s in [("baseline", "none"), *variants.items()]
            if (i, v) not in done]
    if not jobs:
        return df
    _task_data(task_name, data_root)  # decode once in the parent, before forking workers
    frames = [df] if len(df) else []
    bar = tqdm(total=len(jobs), desc="gains: paired real runs", disable=not progress, file=sys.stderr)
    with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(threads_per_worker,)) as ex:
        it = iter(jobs)
        pending = {ex.submit(_run, task_name, *j, data_root) for j in _take(it, workers)}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                frames.append(pd.DataFrame(f.result()))
                bar.update(1)
            write_parquet_atomic(pd.concat(frames, ignore_index=True), path)
            pending |= {ex.submit(_run, task_name, *j, data_root) for j in _take(it, len(finished))}
    bar.close()
    return pd.concat(frames, ignore_index=True)


def _take(it, n):
    out = []
    for j in it:
        out.append(j)
        if len(out) >= n:
            break
    return out


def _n_configs(df: pd.DataFrame) -> int:
    return int(df["config_id"].max()) + 1 if len(df) else 0


def expected_val_acc(sur, psi: pd.DataFrame, epoch: int) -> np.ndarray:
    """The surrogate's expected val accuracy at ``epoch`` for each row's ψ (columns ``PSI_KEYS``): the
    mean curve's accuracy if the run does not diverge, chance if it does (``p_diverge``)."""
    U = np.stack([space.to_unit({k: float(r[k]) for k in PSI_KEYS}) for _, r in psi.iterrows()])
    acc = 1.0 / (1.0 + np.exp(-sur.mean_logit_at(U, epoch)))
    p = sur.p_diverge(U)
    return (1.0 - p) * acc + p * CHANCE


def gain_table(sur, runs: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """One row per (configuration, variant) with both runs at ``epoch``: real and predicted gain and
    the step's length in unit-cube coordinates. A run that diverged before ``epoch`` counts at chance."""
    last = runs[runs["epoch"] <= epoch].sort_values("epoch").groupby(["config_id", "variant"]).last().reset_index()
    acc = np.where((last["epoch"] == epoch) & (last["diverged"] == 0), last["val_acc"], CHANCE)
    last = last.assign(acc=acc, reached=(last["epoch"] == epoch) | (last["diverged"] == 1))
    last = last[last["reached"]]
    base = last[last["variant"] == "baseline"].set_index("config_id")
    ws = last[last["variant"] != "baseline"]
    ws = ws[ws["config_id"].isin(base.index)].reset_index(drop=True)
    if ws.empty:
        return pd.DataFrame(columns=["config_id", "variant", "real_gain", "pred_gain", "step"])
    x = ws[[f"x_{k}" for k in PSI_KEYS]].set_axis(list(PSI_KEYS), axis=1)
    xp = ws[[f"xp_{k}" for k in PSI_KEYS]].set_axis(list(PSI_KEYS), axis=1)
    pred_x, pred_xp = expected_val_acc(sur, x, epoch), expected_val_acc(sur, xp, epoch)
    step = np.array([np.linalg.norm(space.to_unit(dict(b)) - space.to_unit(dict(a)))
                     for (_, a), (_, b) in zip(x.iterrows(), xp.iterrows())])
    return pd.DataFrame({"config_id": ws["config_id"], "variant": ws["variant"],
                         "real_base": base.loc[ws["config_id"], "acc"].to_numpy(), "real_ws": ws["acc"].to_numpy(),
                         "real_gain": ws["acc"].to_numpy() - base.loc[ws["config_id"], "acc"].to_numpy(),
                         "pred_base": pred_x, "pred_ws": pred_xp, "pred_gain": pred_xp - pred_x, "step": step})


def _agreement(t: pd.DataFrame) -> dict:
    n = len(t)
    if n < 3 or t["real_gain"].nunique() < 2 or t["pred_gain"].nunique() < 2:
        return {"n": n, "spearman": None, "sign_agreement": None}
    rho = spearmanr(t["real_gain"], t["pred_gain"]).statistic
    sign = float(np.mean(np.sign(t["real_gain"]) == np.sign(t["pred_gain"])))
    return {"n": n, "spearman": float(rho), "sign_agreement": sign}


def design_distance(sur_dir: "str | Path", runs: pd.DataFrame) -> dict | None:
    """Unit-cube distance from each gain configuration to the nearest configuration of the surrogate's
    collection design (``curves.parquet``): how far outside the design the check lies."""
    cur = Path(sur_dir) / "curves.parquet"
    if not cur.exists() or runs.empty:
        return None
    c = pd.read_parquet(cur, columns=[f"psi_{k}" for k in PSI_KEYS]).drop_duplicates()
    D = np.stack([space.to_unit({k: float(r[f"psi_{k}"]) for k in PSI_KEYS}) for _, r in c.iterrows()])
    g = runs.drop_duplicates("config_id")
    G = np.stack([space.to_unit({k: float(r[f"x_{k}"]) for k in PSI_KEYS}) for _, r in g.iterrows()])
    d = np.sqrt(((G[:, None, :] - D[None, :, :]) ** 2).sum(-1)).min(1)
    return {"min": float(d.min()), "median": float(np.median(d)), "n_design": int(len(D))}


def gain_check(sur, runs: pd.DataFrame, sur_dir: "str | Path | None" = None) -> dict:
    """Agreement of real and predicted gains, at the final epoch (the targets) and at every rung; per
    variant and pooled; real collapses (gain ≤ −COLLAPSE) and whether the surrogate predicted them."""
    E = sur.epochs
    out: dict = {"n_configs": int(runs["config_id"].nunique()) if len(runs) else 0,
                 "variants": sorted(v for v in runs["variant"].unique() if v != "baseline") if len(runs) else [],
                 "epoch": E, "targets": {"spearman": SPEARMAN_TARGET, "sign_agreement": SIGN_TARGET},
                 "collapse_threshold": COLLAPSE}
    tables = {e: gain_table(sur, runs, e) for e in sorted(set(sur.milestones()) | {E})}
    out["per_epoch"] = {str(e): {"all": _agreement(t), **{v: _agreement(g) for v, g in t.groupby("variant")}}
                        for e, t in tables.items()}
    final = tables[E]
    out["final"] = out["per_epoch"][str(E)]["all"]
    col = final[final["real_gain"] <= -COLLAPSE]
    out["collapses"] = {"n": int(len(col)), "predicted": int((col["pred_gain"] <= -COLLAPSE).sum()),
                        "cases": col[["config_id", "variant", "real_base", "real_ws", "pred_base", "pred_ws"]]
                        .round(4).to_dict("records")}
    out["step_median"] = float(final["step"].median()) if len(final) else None
    out["design_distance"] = design_distance(sur_dir, runs) if sur_dir is not None else None
    f = out["final"]
    out["meets"] = {"spearman": None if f["spearman"] is None else bool(f["spearman"] >= SPEARMAN_TARGET),
                    "sign_agreement": None if f["sign_agreement"] is None else bool(f["sign_agreement"] >= SIGN_TARGET)}
    out["table"] = final.round(5).to_dict("records")
    return out


def gains_markdown(res: dict, level: int = 2) -> list[str]:
    """The warm-start effect check as markdown lines (a section of ``verify.md`` and of ``gains.md``)."""
    from ..textfmt import fixed_or_na
    h = "#" * level
    L = [f"{h} Warm-start effects: real against predicted gains", ""]
    if not res or not res.get("n_configs"):
        return L + ["Not measured: no paired real runs (`ohgw-bench gains SURROGATE_DIR`).", ""]
    f, t = res["final"], res["targets"]
    dd = res.get("design_distance")
    L += [f"{res['n_configs']} configurations outside the surrogate's design"
          + (f" (unit-cube distance to the nearest design configuration: median {dd['median']:.3f}, min "
             f"{dd['min']:.3f}, over {dd['n_design']} design configurations)" if dd else "")
          + f"; per configuration one real run without and one with each warm start ({', '.join(res['variants'])}),"
          f" same seed, initialisation and data order. Gain = val acc with − without the warm start; predicted = "
          f"the surrogate's expected val acc at the reached ψ′ minus at ψ. Median step length "
          f"{fixed_or_na(res['step_median'], 3)} (unit cube).", "",
          f"At the final epoch ({res['epoch']}): Spearman of real vs predicted gain **{fixed_or_na(f['spearman'], 3)}** "
          f"(target ≥ {t['spearman']}), sign agreement **{fixed_or_na(f['sign_agreement'], 3)}** (target ≥ "
          f"{t['sign_agreement']}), n = {f['n']} pairs.", "",
          "| epoch | pairs | Spearman | sign agreement | " + " | ".join(f"{v}: Spearman / sign (n)" for v in res["variants"]) + " |",
          "|---|---|---|---|" + "---|" * len(res["variants"])]
    for e, r in res["per_epoch"].items():
        a = r["all"]
        L.append(f"| {e} | {a['n']} | {fixed_or_na(a['spearman'], 3)} | {fixed_or_na(a['sign_agreement'], 3)} | "
                 + " | ".join(f"{fixed_or_na(r[v]['spearman'], 2)} / {fixed_or_na(r[v]['sign_agreement'], 2)} "
                              f"({r[v]['n']})" if v in r else "n/a" for v in res["variants"]) + " |")
    c = res["collapses"]
    L += ["", f"Collapses (real gain ≤ −{res['collapse_threshold']:.2f} at the final epoch): {c['n']}, of which the "
          f"surrogate predicted {c['predicted']}" + (":" if c["cases"] else "."), ""]
    for k in c["cases"]:
        L.append(f"- configuration {k['config_id']}, {k['variant']}: real {k['real_base']:.3f} → {k['real_ws']:.3f}, "
                 f"predicted {k['pred_base']:.3f} → {k['pred_ws']:.3f}")
    return L + [""]
