"""How much of a held-out verification's HPO-level gap is the simulated clock running at another speed
than the machine did when the real verification sweeps ran?

The surrogate's time model is fitted on calibration sweeps only, so the verification sweeps' epoch
times are held out. Machine speed drifts between the days the stores were written (the same
scheduler and config ran at different speeds), and a simulated clock that is faster than the real
one trains more epochs in the same budget and reaches τ sooner. This script measures that drift and
then reruns the verification with the clock matched:

1. every --real store's epoch-time scale against the artifact's time model for its trial runner
   (``Surrogate.epoch_time_scale``: exp(median residual of log epoch time), each trial's first epoch
   left out), and the scale of all of them pooled;
2. a copy of the artifact whose runner epoch-time scale is multiplied by the pooled scale (only
   ``meta.epoch_time_scale_by_runner`` changes; the model arrays are the shipped ones);
3. ``ohgw-bench verify`` of that copy against the same --real stores (same simulated seeds, τ and
   checks as the held-out run), into OUT/verify;
4. OUT/clock-matched.md and .json: per checked (scheduler, variant) the held-out figures (from
   --heldout, the shipped verify.json) beside the clock-matched ones.

This is a sensitivity analysis, not a held-out check: the clock-matched run uses one number (the
pooled epoch-time scale) measured on the verification stores themselves.

    python benchmarks/verify_clock_matched.py surrogates/cifar10-mini \
        --real surrogates/cifar10-mini/real-sweeps/pasha-mini-real-persistent \
        --real surrogates/cifar10-mini/real-sweeps/asha-mini-real-persistent \
        --real surrogates/cifar10-mini/real-sweeps/confirm-mini-asha-real \
        --heldout surrogates/cifar10-mini/verify-heldout/verify.json \
        --out surrogates/cifar10-mini/verify-heldout/clock-matched --sim-seeds 200

``--sim-seeds`` should be the held-out run's; its required variants and replicate minimum are read from
its verify.json.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd

from ohgw_bench.analysis.verify import _secs, run_verify
from ohgw_bench.store import write_json_atomic
from ohgw_bench.surrogate.model import Surrogate
from ohgw_bench.surrogate.overhead import runner_of, sweep_epoch_times

ARTIFACT_FILES = ("surrogate.json", "surrogate.npz", "curves.parquet", "hypergrads.parquet", "targets.parquet",
                  "fidelity.json", "collect.yaml")


def store_scales(sur: Surrogate, real: list[str]) -> tuple[str, pd.DataFrame, float]:
    runners = {d: runner_of(d) for d in real}
    if len(set(runners.values())) != 1:
        sys.exit(f"error: --real stores ran on different trial runners {runners}; give stores of one runner")
    runner = next(iter(runners.values()))
    model = sur.for_runner(runner)
    rows, pooled = [], []
    for d in real:
        et = sweep_epoch_times(d)
        pooled.append(et)
        rows.append({"store": d, "runner": runner, "epochs": int((et["epoch"] > 1).sum()),
                     "median_epoch_time_s": float(et.loc[et["epoch"] > 1, "epoch_time"].median()),
                     "scale": model.epoch_time_scale(et)})
    return runner, pd.DataFrame(rows), model.epoch_time_scale(pd.concat(pooled, ignore_index=True))


def matched_copy(sdir: Path, dest: Path, runner: str, factor: float) -> Surrogate:
    dest.mkdir(parents=True, exist_ok=True)
    for f in ARTIFACT_FILES:
        if (sdir / f).exists():
            shutil.copy2(sdir / f, dest / f)
    sur = Surrogate.load(dest)
    scales = dict(sur.meta.get("epoch_time_scale_by_runner") or {"local": 1.0})
    scales[runner] = float(scales.get(runner, 1.0)) * factor
    sur.meta = dict(sur.meta, epoch_time_scale_by_runner=scales,
                    clock_matched={"from": str(sdir), "runner": runner, "factor": factor})
    sur.save(dest)
    return sur


def compare(held: dict, matched: dict) -> list[dict]:
    out = []
    hv, mv = held["hpo_level"]["per_variant"], matched["hpo_level"]["per_variant"]
    for key in matched["hpo_level"]["checked_variants"]:
        h, m = hv[key], mv[key]
        row = {"variant": key, "n_real": m["n_real"], "n_sim": m["n_sim"]}
        for lab, v in (("heldout", h), ("matched", m)):
            row[f"band_{lab}"] = v["band_share"]
            row[f"median_sim_{lab}"] = v["km_median_sim"]
            row[f"median_inside_{lab}"] = v["median_in_real_ci"]
            row[f"epochs_sim_{lab}"] = v["clock"]["epochs"]["sim"]
            row[f"epoch_time_sim_{lab}"] = v["clock"]["epoch_time_s"]["sim"]
        row.update(median_real=m["km_median_real"], median_real_ci=m["km_median_real_ci"],
                   epochs_real=m["clock"]["epochs"]["real"], epochs_real_ci=m["clock"]["epochs"]["real_ci"],
                   epoch_time_real=m["clock"]["epoch_time_s"]["real"])
        out.append(row)
    return out


def markdown(args, runner, scales: pd.DataFrame, pooled: float, rows: list[dict], held: dict, matched: dict) -> str:
    f = _secs
    L = ["# Held-out verification with the simulated clock matched to the verification stores", "",
         f"Surrogate `{args.surrogate_dir}`; real stores: " + ", ".join(f"`{d}`" for d in args.real) + ".",
         "", "Sensitivity analysis, not a held-out check: the clock-matched run scales the artifact's "
         f"`{runner}` epoch times by one number measured on the verification stores themselves (below); "
         "everything else — model arrays, simulated seeds, τ, checks — is the held-out run's. Made by "
         "`python benchmarks/verify_clock_matched.py` (its docstring gives the command); the rescaled "
         "artifact's `surrogate.json` is kept in `surrogate/` (its `surrogate.npz` is the shipped one, "
         "same `npz_sha256`).", "",
         "## Epoch-time scale of each store against the time model", "",
         "exp(median residual of log epoch time) against the calibrated time model of the store's runner, "
         "each trial's first epoch left out; > 1: the machine ran slower than the calibration sweeps did.", "",
         "| store | runner | epochs | median epoch time (s) | scale |", "|---|---|---|---|---|"]
    for r in scales.itertuples():
        L.append(f"| `{r.store}` | {r.runner} | {r.epochs} | {r.median_epoch_time_s:.3f} | {r.scale:.3f} |")
    L += ["", f"Pooled: **{pooled:.3f}** (applied to the clock-matched copy).", "",
          "## Checked variants: held-out clock / clock matched", "",
          f"τ = {matched['tau']:.4f} (held-out run: {held['tau']:.4f}).", "",
          "| scheduler/variant | n real / sim | band ≥ 0.90 | KM median T@τ real [95 % CI] (s) | sim median (s) | "
          "sim inside | epochs trained real [95 % CI] | sim epochs | sim median epoch time (s), real |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['variant']} | {r['n_real']} / {r['n_sim']} | {r['band_heldout']:.2f} / {r['band_matched']:.2f} | "
                 f"{f(r['median_real'])} [{f(r['median_real_ci'][0])}, {f(r['median_real_ci'][1])}] | {f(r['median_sim_heldout'])} / "
                 f"{f(r['median_sim_matched'])} | {r['median_inside_heldout']} / {r['median_inside_matched']} | "
                 f"{r['epochs_real']:.0f} [{r['epochs_real_ci'][0]:.0f}, {r['epochs_real_ci'][1]:.0f}] | "
                 f"{r['epochs_sim_heldout']:.0f} / {r['epochs_sim_matched']:.0f} | {r['epoch_time_sim_heldout']:.2f} / "
                 f"{r['epoch_time_sim_matched']:.2f}, {r['epoch_time_real']:.2f} |")
    fails = lambda res: sorted(k for k, v in res["checks"].items() if k.startswith("hpo/") and v is False)
    L += ["", f"HPO-level checks failed — held-out clock: {fails(held) or 'none'}; clock matched: "
          f"{fails(matched) or 'none'}.", "",
          f"Full clock-matched verification: [verify/verify.md](verify/verify.md).", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("surrogate_dir")
    ap.add_argument("--real", action="append", required=True)
    ap.add_argument("--heldout", required=True, help="the held-out run's verify.json (same --real stores)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sim-seeds", type=int, default=200)
    args = ap.parse_args(argv)
    held = json.loads(Path(args.heldout).read_text())
    held_real = [s["path"] for s in held["stores"]["real"]]
    if sorted(held_real) != sorted(args.real):
        sys.exit(f"error: --heldout {args.heldout!r} verified {held_real}, not the --real stores {args.real}")
    sdir, out = Path(args.surrogate_dir), Path(args.out)
    sur = Surrogate.load(sdir)
    runner, scales, pooled = store_scales(sur, args.real)
    print(scales.to_string(index=False))
    print(f"pooled epoch-time scale: {pooled:.3f}")
    copy = out / "surrogate"
    matched_copy(sdir, copy, runner, pooled)
    # the held-out run's own required variants and replicate minimum (its checks' names carry both)
    req = [re.fullmatch(r"hpo/(.+)/n_real>=(\d+)", k) for k in held["checks"]]
    required, min_real = tuple(m.group(1) for m in req if m), held["hpo_level"]["min_real"]
    res = run_verify(str(copy), args.real, out=str(out / "verify"), sim_seeds=args.sim_seeds,
                     min_real=min_real, required=required,
                     gains_dir=str(sdir / "gains") if (sdir / "gains" / "gains.parquet").exists() else None)
    rows = compare(held, res)
    write_json_atomic({"runner": runner, "scales": scales.to_dict("records"), "pooled_scale": pooled,
                       "variants": rows}, out / "clock-matched.json")
    (out / "clock-matched.md").write_text(markdown(args, runner, scales, pooled, rows, held, res))
    for f in ARTIFACT_FILES[1:]:  # keep only the rescaled surrogate.json: the rest is the shipped artifact's
        (copy / f).unlink(missing_ok=True)
    print(f"wrote {out / 'clock-matched.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
