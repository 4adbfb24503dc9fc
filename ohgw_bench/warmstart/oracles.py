"""The hyper-gradient oracle a warm-start rule queries: what it returns (``HGSample``) and the record of
what a warm start spent and saw (``RecordingOracle``). Real trials back it with a live model
(``trial.hypergrad.RealOracle``), simulated ones with the surrogate's learned hyper-gradient model
(``sweeps.backends.simulated.SurrogateOracle``); neither is imported here."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import space
from ..space import PSI_KEYS

Oracle = Callable[[dict, int], "HGSample"]


@dataclass
class HGSample:
    """Hyper-gradient measurements: per-batch rows (k, 5) in PSI_KEYS order, plus cost."""
    per_batch: np.ndarray
    seconds: float = 0.0
    flops: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        return self.per_batch.mean(axis=0)

    @property
    def se(self) -> np.ndarray:
        k = len(self.per_batch)
        if k < 2:
            return np.full(self.per_batch.shape[1], np.nan)
        return self.per_batch.std(axis=0, ddof=1) / math.sqrt(k)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(PSI_KEYS, map(float, self.mean)))


class RecordingOracle:
    """Passes calls to the trial's oracle and records what the warm start spent and saw: the first
    call's mean and SE, the points queried, seconds, FLOPs and batches. Other attributes (e.g. the
    surrogate's ``surrogate``) pass through."""

    def __init__(self, inner, spec: str):
        self._inner, self._spec = inner, spec
        self.samples: list = []
        self.queries: list[dict] = []

    def __call__(self, psi: dict, n_batches: int):
        if self._inner is None:
            raise ValueError(f"warm start {self._spec!r} needs a hyper-gradient oracle, but the trial gave none")
        psi = space.check_psi(psi)
        sample = self._inner(psi, int(n_batches))
        self.samples.append(sample)
        self.queries.append(psi)
        return sample

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    @property
    def seconds(self) -> float:
        return float(sum(s.seconds for s in self.samples))

