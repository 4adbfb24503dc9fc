"""Calibration of the verdict's statistics on synthetic censored T@τ with a known effect.

Each simulated experiment draws ``n_pairs`` seed pairs the way a sweep produces them: a shared
per-seed factor (both arms of a seed sample the same configurations), log-normal times, results
that arrive in clumps (times rounded up to a grid, as ASHA's rung decisions make them), and a common
budget that censors a chosen share of the baseline. The variant's times are the baseline law's times
scaled by ``1 − reduction`` (before clumping), so ``reduction = 0`` is an exact null (the two arms
of a seed are exchangeable) and the true reduction of the median is known in closed form.

The study counts, over many experiments, how often the verdict's test rejects (false-positive rate
under the null, power under an effect) and how often the reported CI covers the true reduction.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st
from tqdm.auto import tqdm

from .stats import paired_median_reduction


@dataclass(frozen=True)
class SyntheticLaw:
    budget_s: float = 120.0
    censored_share: float = 0.25     # of the baseline, at the budget
    sigma: float = 0.5               # log-normal spread of T@τ
    pair_correlation: float = 0.5    # share of the log-variance that both arms of a seed share
    clump_s: float = 0.0             # results arrive on this grid (0: continuous, as surrogate T@τ are)

    @property
    def mu(self) -> float:
        """Log-scale location that puts ``censored_share`` of the baseline beyond the budget."""
        return math.log(self.budget_s) - self.sigma * _st.norm.ppf(1.0 - self.censored_share)

    def _clump(self, t: np.ndarray) -> np.ndarray:
        return np.ceil(t / self.clump_s) * self.clump_s if self.clump_s > 0 else t

    def true_reduction(self, reduction: float) -> float:
        """1 − median(variant)/median(baseline) of the law itself (clumping is monotone, so the
        clumped median is the clumped log-normal median)."""
        mb = float(self._clump(np.array(math.exp(self.mu))))
        mv = float(self._clump(np.array(math.exp(self.mu) * (1.0 - reduction))))
        return 1.0 - mv / mb

    def draw(self, rng: np.random.Generator, n_pairs: int, reduction: float) -> tuple[np.ndarray, ...]:
        """``(base_t, base_c, var_t, var_c)``: T@τ capped at the budget and whether it was censored."""
        z = rng.standard_normal(n_pairs)
        e = rng.standard_normal((2, n_pairs))
        rho = self.pair_correlation
        lat = math.sqrt(rho) * z + math.sqrt(1.0 - rho) * e
        tb = self._clump(np.exp(self.mu + self.sigma * lat[0]))
        tv = self._clump(np.exp(self.mu + self.sigma * lat[1]) * (1.0 - reduction))
        cb, cv = tb > self.budget_s, tv > self.budget_s
        return np.minimum(tb, self.budget_s), cb, np.minimum(tv, self.budget_s), cv


def run_study(n_pairs: int, n_experiments: int, reduction: float = 0.0, law: SyntheticLaw = SyntheticLaw(),
              n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, progress: bool = False) -> dict:
    """Simulate ``n_experiments`` paired experiments and judge each as the verdict does.

    Returns a dict with the law, the true reduction, the rejection rate of the permutation test
    (p < alpha) with its Wilson 95 % interval, the coverage of the bootstrap CI, the share of
    experiments whose effect was undecidable, and the mean baseline censored share.
    """
    rng = np.random.default_rng(seed)
    truth = law.true_reduction(reduction)
    reject = covered = undecidable = 0
    cens = []
    for i in tqdm(range(n_experiments), desc=f"n={n_pairs} r={reduction}", disable=not progress, leave=False):
        bt, bc, vt, vc = law.draw(rng, n_pairs, reduction)
        cens.append(bc.mean())
        r = paired_median_reduction(bt, bc, vt, vc, n_boot=n_boot, seed=int(rng.integers(2 ** 31)), alpha=alpha)
        if r.undecidable:
            undecidable += 1
            continue
        reject += r.p < alpha
        covered += r.ci_low <= truth <= r.ci_high
    decided = n_experiments - undecidable
    rate = reject / decided if decided else float("nan")
    ci = _st.binomtest(reject, decided).proportion_ci(0.95, method="wilson") if decided else None
    cov = covered / decided if decided else float("nan")
    cov_ci = _st.binomtest(covered, decided).proportion_ci(0.95, method="wilson") if decided else None
    return {"law": asdict(law), "n_pairs": n_pairs, "n_experiments": n_experiments, "n_boot": n_boot,
            "reduction_applied": reduction, "true_reduction": truth, "n_decided": decided,
            "rejection_rate": rate, "rejection_ci95": [ci.low, ci.high] if ci else None,
            "coverage": cov, "coverage_ci95": [cov_ci.low, cov_ci.high] if cov_ci else None,
            "undecidable_share": undecidable / n_experiments, "mean_censored_share_base": float(np.mean(cens))}
