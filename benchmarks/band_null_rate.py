"""How often does verify's band check fail when the "real" replicates are themselves simulated?

verify passes a (scheduler, variant) when the median incumbent curve of its n real replicates lies
inside the 95 % band of medians of n simulated replicates at >= 90 % of the time grid. Even a perfect
surrogate fails that now and then: the band is pointwise and a median of n curves wanders outside it
for stretches. This script measures that false-failure rate from verify's own simulations: for each
checked variant it draws n of its simulated replicates as stand-ins for the real ones, builds the band
from the others exactly as verify does (``verify.band_share``), and counts the draws that miss the
0.90 target. With k checked variants, the chance that at least one fails with a perfect surrogate is
1 − Π(1 − rate).

    python benchmarks/band_null_rate.py surrogates/cifar10-mini/verify-heldout --draws 400

The verify directory must still hold its simulation cache (``surrogate-sweep/``, rebuilt by rerunning
``ohgw-bench verify`` with the same arguments when it is missing). Writes band-null.md and .json there.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from statsmodels.stats.multitest import multipletests

from ohgw_bench.analysis.verify import BAND_TARGET, band_share, incumbent_curves
from ohgw_bench.config import SweepConfig
from ohgw_bench.store import load, write_json_atomic


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("verify_dir")
    ap.add_argument("--draws", type=int, default=400, help="pseudo-real sets per variant")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    vdir = Path(args.verify_dir)
    sim_dir = vdir / "surrogate-sweep"
    if not (vdir / "verify.json").exists() or not (sim_dir / "config.yaml").exists():
        sys.exit(f"error: verify_dir {str(vdir)!r} lacks verify.json or its simulation cache surrogate-sweep/ "
                 f"(rerun `ohgw-bench verify` with --out {vdir})")
    v = json.loads((vdir / "verify.json").read_text())
    cfg = SweepConfig(**yaml.safe_load((sim_dir / "config.yaml").read_text()))
    sim, _, _ = load(sim_dir)
    grid = np.linspace(0, float(cfg.replicate_budget_s), 101)   # verify.hpo_level's grid
    curves = incumbent_curves(sim, grid)
    per = v["hpo_level"]["per_variant"]
    rng = np.random.default_rng(args.seed)
    rows = []
    for key in v["hpo_level"]["checked_variants"]:
        c = curves[tuple(key.split("/", 1))]
        n = int(per[key]["n_real"])
        shares = []
        for _ in range(args.draws):
            pick = rng.permutation(len(c))
            shares.append(band_share(c[pick[:n]], c[pick[n:]], rng)["band_share"])
        shares = np.asarray(shares)
        fails = int((shares < BAND_TARGET).sum())
        rows.append({"variant": key, "n_pseudo_real": n, "n_band": len(c) - n, "draws": args.draws,
                     "false_fail_rate": fails / args.draws, "fails": fails,
                     "share_p05": float(np.quantile(shares, 0.05)), "share_median": float(np.median(shares)),
                     "real_band_share": float(per[key]["band_share"]),
                     # Monte Carlo p-value ((k + 1) / (draws + 1): never 0 from a finite number of draws)
                     "p_share_le_real": float((np.sum(shares <= per[key]["band_share"] + 1e-12) + 1)
                                              / (args.draws + 1))})
        print(f"{key}: false-fail rate {fails}/{args.draws}; real share {per[key]['band_share']:.2f}, "
              f"P(null share <= real) {rows[-1]['p_share_le_real']:.3f}")
    p_any = 1.0 - float(np.prod([1.0 - r["false_fail_rate"] for r in rows]))
    holm = multipletests([r["p_share_le_real"] for r in rows], method="holm")[1]
    for r, ph in zip(rows, holm):
        r["p_holm"] = float(ph)
        r["rejected_holm_0.05"] = bool(ph < 0.05)
    write_json_atomic({"verify_dir": str(vdir), "target": BAND_TARGET, "variants": rows, "p_any_fail": p_any,
                       "rejected_holm_0.05": [r["variant"] for r in rows if r["rejected_holm_0.05"]],
                       "draws": args.draws, "seed": args.seed}, vdir / "band-null.json")
    L = ["# The band check's false-failure rate with a perfect surrogate", "",
         f"From [verify.md](verify.md)'s own simulations: per checked variant, {args.draws} draws of n simulated "
         f"replicates standing in for the n real ones, the band built from the others as verify builds it; a draw "
         f"fails when the stand-ins' median lies inside the band at < {BAND_TARGET:.2f} of the grid. Made by "
         f"`python benchmarks/band_null_rate.py {vdir} --draws {args.draws} --seed {args.seed}`.", "",
         "| scheduler/variant | n stand-ins / band replicates | false-fail rate | null band share: 5 % quantile, median "
         "| real band share | P(null share ≤ real) | Holm-adjusted |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['variant']} | {r['n_pseudo_real']} / {r['n_band']} | {r['false_fail_rate']:.3f} "
                 f"({r['fails']}/{r['draws']}) | {r['share_p05']:.2f}, {r['share_median']:.2f} | "
                 f"{r['real_band_share']:.2f} | {r['p_share_le_real']:.3f} | {r['p_holm']:.3f} |")
    L += ["", f"Chance that at least one of the {len(rows)} checked variants fails the band check with a perfect "
          f"surrogate: **{p_any:.2f}** (draws treated as independent across variants). `P(null share ≤ real)` "
          "is how unusual the real band share is under the surrogate: a one-sided Monte Carlo p-value per "
          "variant; Holm-adjusted over the checked variants, it is a test at level 0.05 that a perfect "
          "surrogate fails with probability ≤ 0.05. Variants it rejects: "
          + (", ".join(f"`{r['variant']}`" for r in rows if r["rejected_holm_0.05"]) or "none") + ".", ""]
    (vdir / "band-null.md").write_text("\n".join(L))
    print(f"P(at least one false fail) = {p_any:.3f}; wrote {vdir / 'band-null.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
