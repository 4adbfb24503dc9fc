"""Real against predicted warm-start gains: does the surrogate know what a step ψ → ψ′ does?

The step-size frontier is simulated: each warm-started trial is the surrogate's curve at ψ′ instead of
ψ. Here the same steps are taken in real runs, on configurations outside the surrogate's design:

- a scrambled Sobol design with its own seed (never the collection's), ``n_configs`` points;
- per configuration and pair seed, one real full-budget run per warm start (``none`` = the baseline)
  with the *same* seed: the same initialisation, data order and augmentations, the warm start's true
  hyper-gradients drawn from their own stream (``trial.trainer.Trial``), so a pair differs only through
  ψ → ψ′; ``pair_seeds`` > 1 repeats every pair with further seeds;
- real gain = val acc(ψ′ run) − val acc(baseline run) at an epoch; predicted gain = the surrogate's
  expected val acc at the ψ′ the real warm start reached minus at ψ (``expected_val_acc``: the mean
  curve, a diverged run counting as chance).

The targets are judged on the real gain averaged over a pair's seeds (the expected gain, which is what
the surrogate predicts; with one pair seed, the single pair). With ≥ 2 pair seeds the same figures are
also computed pair by pair, beside a rerun ceiling: how well one seed's real gain predicts another
seed's (Spearman and sign agreement over ordered pairs of seeds), the best any predictor of a single
pair can be expected to do.

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


def pair_seed_value(config_id: int, pair_seed: int) -> int:
    """The trial seed of a pair (pair seed 0 keeps the seed the check has always used)."""
    return derive_seed(config_id, "gains") if pair_seed == 0 else derive_seed(config_id, "gains", pair_seed)


def _run(task_name: str, config_id: int, variant: str, spec: str, psi: dict, data_root, pair_seed: int = 0
         ) -> list[dict]:
    from ..tasks import get_task
    from ..trial.trainer import Trial
    task = get_task(task_name)
    trial = Trial(task, psi, pair_seed_value(config_id, pair_seed), _task_data(task_name, data_root),
                  warm_start=None if variant == "baseline" else spec)
    rows = trial.run(task.max_epochs)
    keep = ("epoch", "val_acc", "test_acc", "epoch_time", "diverged", "ws_cost_s")
    rec = rows[-1]
    return [{"config_id": config_id, "pair_seed": pair_seed, "variant": variant, "spec": spec if variant != "baseline" else "none",
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
                  progress: bool = True, pair_seeds: int = 1) -> pd.DataFrame:
    """Real paired runs (baseline and every variant, same seed; ``pair_seeds`` seeds per pair) on
    ``n_configs`` configurations of a design that is not the surrogate's; resumable. Returns all runs' rows."""
    if pair_seeds < 1:
        raise ValueError(f"gains: pair_seeds must be >= 1, got {pair_seeds}")
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
    df = _with_pair_seed(pd.read_parquet(path)) if path.exists() else pd.DataFrame()
    # a larger n_configs (or pair_seeds) extends the same design: Sobol points keep their order
    n_pairs = max(pair_seeds, int(df["pair_seed"].max()) + 1 if len(df) else 0)
    (out / "gains.yaml").write_text(yaml.safe_dump({**meta, "n_configs": max(n_configs, _n_configs(df)),
                                                    "pair_seeds": n_pairs}, sort_keys=False))
    done = set(zip(df["config_id"], df["variant"], df["pair_seed"])) if len(df) else set()
    pts = design(n_configs, seed)
    jobs = [(i, v, s, pts[i], ps) for ps in range(pair_seeds) for i in range(n_configs)
            for v, s in [("baseline", "none"), *variants.items()] if (i, v, ps) not in done]
    if not jobs:
        return df
    _task_data(task_name, data_root)  # decode once in the parent, before forking workers
    frames = [df] if len(df) else []
    bar = tqdm(total=len(jobs), desc="gains: paired real runs", disable=not progress, file=sys.stderr)
    with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(threads_per_worker,)) as ex:
        it = iter(jobs)
        pending = {ex.submit(_run, task_name, *j[:4], data_root, pair_seed=j[4]) for j in _take(it, workers)}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                frames.append(pd.DataFrame(f.result()))
                bar.update(1)
            write_parquet_atomic(pd.concat(frames, ignore_index=True), path)
            pending |= {ex.submit(_run, task_name, *j[:4], data_root, pair_seed=j[4]) for j in _take(it, len(finished))}
    bar.close()
    return pd.concat(frames, ignore_index=True)


def _take(it, n):
    out = []
    for j in it:
        out.append(j)
        if len(out) >= n:
            break
    return out


def _with_pair_seed(df: pd.DataFrame) -> pd.DataFrame:
    """Runs collected before pairs had seeds are pair seed 0."""
    return df if "pair_seed" in df.columns or df.empty else df.assign(pair_seed=0)


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
    """One row per (configuration, variant, pair seed) with both runs at ``epoch``: real and predicted
    gain and the step's length in unit-cube coordinates. A run that diverged before ``epoch`` counts at
    chance."""
    runs = _with_pair_seed(runs)
    last = (runs[runs["epoch"] <= epoch].sort_values("epoch", kind="stable")
            .groupby(["config_id", "variant", "pair_seed"]).last().reset_index())
    acc = np.where((last["epoch"] == epoch) & (last["diverged"] == 0), last["val_acc"], CHANCE)
    last = last.assign(acc=acc, reached=(last["epoch"] == epoch) | (last["diverged"] == 1))
    last = last[last["reached"]]
    base = last[last["variant"] == "baseline"].set_index(["config_id", "pair_seed"])
    ws = last[last["variant"] != "baseline"]
    key = pd.MultiIndex.from_frame(ws[["config_id", "pair_seed"]])
    ws = ws[key.isin(base.index)].reset_index(drop=True)
    if ws.empty:
        return pd.DataFrame(columns=["config_id", "variant", "pair_seed", "real_gain", "pred_gain", "step"])
    bacc = base.loc[pd.MultiIndex.from_frame(ws[["config_id", "pair_seed"]]), "acc"].to_numpy()
    x = ws[[f"x_{k}" for k in PSI_KEYS]].set_axis(list(PSI_KEYS), axis=1)
    xp = ws[[f"xp_{k}" for k in PSI_KEYS]].set_axis(list(PSI_KEYS), axis=1)
    pred_x, pred_xp = expected_val_acc(sur, x, epoch), expected_val_acc(sur, xp, epoch)
    step = np.array([np.linalg.norm(space.to_unit(dict(b)) - space.to_unit(dict(a)))
                     for (_, a), (_, b) in zip(x.iterrows(), xp.iterrows())])
    return pd.DataFrame({"config_id": ws["config_id"], "variant": ws["variant"], "pair_seed": ws["pair_seed"],
                         "real_base": bacc, "real_ws": ws["acc"].to_numpy(),
                         "real_gain": ws["acc"].to_numpy() - bacc,
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


def seed_mean(t: pd.DataFrame) -> pd.DataFrame:
    """Real and predicted gains averaged over each (configuration, variant)'s pair seeds."""
    if t.empty:
        return t.assign(n_pair_seeds=pd.Series(dtype=int))
    g = t.groupby(["config_id", "variant"], sort=True)
    return g[["real_gain", "pred_gain", "step"]].mean().assign(n_pair_seeds=g.size()).reset_index()


def rerun_ceiling(t: pd.DataFrame) -> dict | None:
    """How well one pair seed's real gain predicts another's, over every ordered pair of distinct seeds
    of each (configuration, variant) with ≥ 2 of them; None with fewer than 3 such predictions."""
    ys, ps = [], []
    for _, g in t.groupby(["config_id", "variant"]):
        v = g["real_gain"].to_numpy(float)
        for i in range(len(v)):
            for j in range(len(v)):
                if i != j:
                    ys.append(v[i])
                    ps.append(v[j])
    if len(ys) < 3:
        return None
    return _agreement(pd.DataFrame({"real_gain": ys, "pred_gain": ps}))


def gain_check(sur, runs: pd.DataFrame, sur_dir: "str | Path | None" = None) -> dict:
    """Agreement of real and predicted gains, at the final epoch (the targets) and at every rung; per
    variant and pooled, on the real gains averaged over pair seeds (see the module doc); with ≥ 2 pair
    seeds also pair by pair beside the rerun ceiling; real collapses (a pair's gain ≤ −COLLAPSE) and
    whether the surrogate predicted them."""
    runs = _with_pair_seed(runs)
    E = sur.epochs
    out: dict = {"n_configs": int(runs["config_id"].nunique()) if len(runs) else 0,
                 "variants": sorted(v for v in runs["variant"].unique() if v != "baseline") if len(runs) else [],
                 "pair_seeds": int(runs["pair_seed"].nunique()) if len(runs) else 0,
                 "epoch": E, "targets": {"spearman": SPEARMAN_TARGET, "sign_agreement": SIGN_TARGET},
                 "collapse_threshold": COLLAPSE}
    pairs = {e: gain_table(sur, runs, e) for e in sorted(set(sur.milestones()) | {E})}
    tables = {e: seed_mean(t) for e, t in pairs.items()}
    out["per_epoch"] = {str(e): {"all": _agreement(t), **{v: _agreement(g) for v, g in t.groupby("variant")}}
                        for e, t in tables.items()}
    final, final_pairs = tables[E], pairs[E]
    out["final"] = out["per_epoch"][str(E)]["all"]
    if out["pair_seeds"] >= 2:
        out["per_pair"] = {str(e): {"surrogate": _agreement(t), "rerun": rerun_ceiling(t)} for e, t in pairs.items()}
    col = final_pairs[final_pairs["real_gain"] <= -COLLAPSE]
    out["collapses"] = {"n": int(len(col)), "n_pairs": int(len(final_pairs)),
                        "predicted": int((col["pred_gain"] <= -COLLAPSE).sum()),
                        "cases": col[["config_id", "variant", "pair_seed", "real_base", "real_ws", "pred_base",
                                      "pred_ws"]].round(4).to_dict("records")}
    out["step_median"] = float(final_pairs["step"].median()) if len(final_pairs) else None
    out["design_distance"] = design_distance(sur_dir, runs) if sur_dir is not None else None
    f = out["final"]
    out["meets"] = {"spearman": None if f["spearman"] is None else bool(f["spearman"] >= SPEARMAN_TARGET),
                    "sign_agreement": None if f["sign_agreement"] is None else bool(f["sign_agreement"] >= SIGN_TARGET)}
    out["table"] = final_pairs.round(5).to_dict("records")
    return out


def gains_markdown(res: dict, level: int = 2) -> list[str]:
    """The warm-start effect check as markdown lines (a section of ``verify.md`` and of ``gains.md``)."""
    from ..textfmt import fixed_or_na
    h = "#" * level
    L = [f"{h} Warm-start effects: real against predicted gains", ""]
    if not res or not res.get("n_configs"):
        return L + ["Not measured: no paired real runs (`ohgw-bench gains SURROGATE_DIR`).", ""]
    f, t = res["final"], res["targets"]
    ps = int(res.get("pair_seeds", 1))
    dd = res.get("design_distance")
    L += [f"{res['n_configs']} configurations outside the surrogate's design"
          + (f" (unit-cube distance to the nearest design configuration: median {dd['median']:.3f}, min "
             f"{dd['min']:.3f}, over {dd['n_design']} design configurations)" if dd else "")
          + f"; per configuration and pair seed one real run without and one with each warm start "
          f"({', '.join(res['variants'])}), same seed, initialisation and data order; {ps} pair seed"
          f"{'s' if ps != 1 else ''}. Gain = val acc with − without the warm start; predicted = "
          f"the surrogate's expected val acc at the reached ψ′ minus at ψ"
          + (", both averaged over the pair seeds (the targets are judged on these means)" if ps > 1 else "")
          + f". Median step length {fixed_or_na(res['step_median'], 3)} (unit cube).", "",
          f"At the final epoch ({res['epoch']}): Spearman of real vs predicted gain **{fixed_or_na(f['spearman'], 3)}** "
          f"(target ≥ {t['spearman']}), sign agreement **{fixed_or_na(f['sign_agreement'], 3)}** (target ≥ "
          f"{t['sign_agreement']}), n = {f['n']} (configuration, warm start) pairs"
          + (f", each the mean of {ps} seeds" if ps > 1 else "") + ".", "",
          "| epoch | pairs | Spearman | sign agreement | " + " | ".join(f"{v}: Spearman / sign (n)" for v in res["variants"]) + " |",
          "|---|---|---|---|" + "---|" * len(res["variants"])]
    for e, r in res["per_epoch"].items():
        a = r["all"]
        L.append(f"| {e} | {a['n']} | {fixed_or_na(a['spearman'], 3)} | {fixed_or_na(a['sign_agreement'], 3)} | "
                 + " | ".join(f"{fixed_or_na(r[v]['spearman'], 2)} / {fixed_or_na(r[v]['sign_agreement'], 2)} "
                              f"({r[v]['n']})" if v in r else "n/a" for v in res["variants"]) + " |")
    if res.get("per_pair"):
        L += ["", "Pair by pair (each seed's pair on its own) beside the rerun ceiling: one pair seed's real gain "
              "predicting another's, over ordered pairs of seeds. A single pair's gain carries the seed noise of two "
              "runs, which bounds what any predictor of it can reach.", "",
              "| epoch | surrogate: Spearman / sign (n) | rerun: Spearman / sign (n) |", "|---|---|---|"]
        for e, r in res["per_pair"].items():
            a, b = r["surrogate"], r["rerun"] or {}
            L.append(f"| {e} | {fixed_or_na(a['spearman'], 3)} / {fixed_or_na(a['sign_agreement'], 3)} ({a['n']}) | "
                     f"{fixed_or_na(b.get('spearman'), 3)} / {fixed_or_na(b.get('sign_agreement'), 3)} "
                     f"({b.get('n', 0)}) |")
    c = res["collapses"]
    L += ["", f"Collapses (a pair's real gain ≤ −{res['collapse_threshold']:.2f} at the final epoch): {c['n']}"
          + (f" of {c['n_pairs']} pairs" if "n_pairs" in c else "") + ", of which the "
          f"surrogate predicted {c['predicted']}" + (":" if c["cases"] else "."), ""]
    for k in c["cases"]:
        L.append(f"- configuration {k['config_id']}, {k['variant']}"
                 + (f", pair seed {k['pair_seed']}" if ps > 1 and "pair_seed" in k else "")
                 + f": real {k['real_base']:.3f} → {k['real_ws']:.3f}, "
                 f"predicted {k['pred_base']:.3f} → {k['pred_ws']:.3f}")
    return L + [""]
