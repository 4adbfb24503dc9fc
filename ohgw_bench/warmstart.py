"""The warm-start object: ``none | random | hypergradient(eta, steps, rule)``.

One object serves real and simulated trials: it asks a *hyper-gradient oracle* —
``oracle(psi: dict, n_batches: int) -> HGSample`` — for ∂J/∂ψ. The real oracle runs mini-batches
inside the trial (hypergrad.RealOracle); the surrogate's samples its learned hyper-gradient model.
Applied once, before the first rung of a *new* trial; never on resume.

Spec strings (CLI, YAML): ``none``, ``random``, ``random:eta=1e-3``,
``hypergradient:eta=1e-3,steps=3,rule=raw``, ``hypergradient:rule=normalized,delta=0.05,batches=4``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from . import space
from .space import PSI_KEYS

KINDS = ("none", "random", "hypergradient")
RULES = ("raw", "normalized")
CALIBRATION_DIR = Path(__file__).parent / "calibration"


@dataclass
class WarmStartResult:
    psi_before: dict
    psi_after: dict
    hypergrad: dict               # mean raw ∂J/∂ψ of the first step (NaN for none/random)
    hypergrad_se: dict
    steps_taken: list = field(default_factory=list)  # per step: the ψ-space step actually applied
    cost_seconds: float = 0.0
    flops: float = float("nan")
    n_batches: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def flat(self) -> dict:
        """Flat record for result rows: x_*, xp_*, hg_*, ws_cost_s."""
        out = {f"x_{k}": self.psi_before[k] for k in PSI_KEYS}
        out.update({f"xp_{k}": self.psi_after[k] for k in PSI_KEYS})
        out.update({f"hg_{k}": self.hypergrad[k] for k in PSI_KEYS})
        out.update(ws_cost_s=self.cost_seconds, ws_flops=self.flops, ws_batches=self.n_batches)
        return out


Oracle = Callable[[dict, int], "object"]


def load_calibration(task: str) -> dict:
    p = CALIBRATION_DIR / f"{task}.json"
    if not p.exists():
        raise ValueError(f"task {task!r} has no hyper-gradient calibration at {p}; "
                         f"run `ohgw-bench calibrate --task {task}` first")
    return json.loads(p.read_text())


@dataclass(frozen=True)
class WarmStart:
    kind: str = "none"
    eta: float = 1e-3
    steps: int = 1
    rule: str = "raw"
    batches: int = 1          # mini-batches per hyper-gradient estimate (normalized rule: K >= 2)
    delta: float = 0.05       # normalized rule: step in unit-cube coordinates
    snr: float = 2.0          # normalized rule: step only where |mean| >= snr * SE
    sigma: tuple | None = None  # random: per-coordinate σ in ψ units; None -> eta * calibrated E|g|

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"warm-start kind {self.kind!r} is not one of {list(KINDS)}")
        if self.rule not in RULES:
            raise ValueError(f"warm-start rule {self.rule!r} is not one of {list(RULES)}")
        if not (self.eta > 0):
            raise ValueError(f"warm-start eta must be > 0, but got eta={self.eta!r}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"warm-start steps must be an integer >= 1, but got steps={self.steps!r}")
        if not (isinstance(self.batches, int) and self.batches >= 1):
            raise ValueError(f"warm-start batches must be an integer >= 1, but got batches={self.batches!r}")
        if self.kind == "hypergradient" and self.rule == "normalized" and self.batches < 2:
            raise ValueError(f"rule 'normalized' needs batches >= 2 for its SNR gate, but got batches={self.batches}")
        if self.sigma is not None and len(self.sigma) != len(PSI_KEYS):
            raise ValueError(f"warm-start sigma needs {len(PSI_KEYS)} values ({list(PSI_KEYS)}), got {self.sigma!r}")

    # ---------------------------------------------------------------- spec strings
    @classmethod
    def parse(cls, spec: "str | dict | WarmStart | None") -> "WarmStart":
        if spec is None:
            return cls()
        if isinstance(spec, WarmStart):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        spec = str(spec).strip()
        kind, _, rest = spec.partition(":")
        kind = {"ohgw": "hypergradient", "hg": "hypergradient", "baseline": "none"}.get(kind, kind)
        types = {f.name: f.type for f in fields(cls)}
        kw: dict = {}
        for item in filter(None, rest.split(",")):
            key, eq, val = item.partition("=")
            key = key.strip()
            if not eq or key not in types or key in ("kind", "sigma"):
                valid = [k for k in types if k not in ("kind", "sigma")]
                raise ValueError(f"warm-start option {key!r} in {spec!r} is not known; valid options are {valid}")
            try:
                kw[key] = int(val) if key in ("steps", "batches") else (val if key == "rule" else float(val))
            except ValueError:
                raise ValueError(f"warm-start option {key}={val!r} in {spec!r} is not a number") from None
        if kind == "hypergradient" and kw.get("rule") == "normalized" and "batches" not in kw:
            kw["batches"] = 4
        return cls(kind=kind, **kw)

    def spec(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "random":
            return f"random:eta={self.eta:g}"
        s = f"hypergradient:eta={self.eta:g},steps={self.steps},rule={self.rule},batches={self.batches}"
        if self.rule == "normalized":
            s += f",delta={self.delta:g},snr={self.snr:g}"
        return s

    # ---------------------------------------------------------------- application
    def random_sigma(self, task: str | None) -> np.ndarray:
        if self.sigma is not None:
            return np.asarray(self.sigma, float)
        if task is None:
            raise ValueError("warm-start 'random' needs a task calibration or an explicit sigma")
        cal = load_calibration(task)
        return self.eta * np.array([cal["abs_hypergrad_mean"][k] for k in PSI_KEYS])

    def apply(self, psi: dict, oracle: Oracle | None, rng: np.random.Generator,
              task: str | None = None) -> WarmStartResult:
        """Move ψ once (before the first rung). Returns ψ before/after, raw hyper-gradients and cost."""
        psi = space.check_psi(psi)
        nan = {k: float("nan") for k in PSI_KEYS}
        res = WarmStartResult(psi_before=dict(psi), psi_after=dict(psi), hypergrad=dict(nan), hypergrad_se=dict(nan))
        if self.kind == "none":
            return res
        if self.kind == "random":
            step = rng.normal(0.0, 1.0, len(PSI_KEYS)) * self.random_sigma(task)
            new = space.clip_psi({k: psi[k] + s for k, s in zip(PSI_KEYS, step)})
            res.psi_after = new
            res.steps_taken.append({k: new[k] - psi[k] for k in PSI_KEYS})
            return res
        if oracle is None:
            raise ValueError("warm-start 'hypergradient' needs a hyper-gradient oracle")
        cur = dict(psi)
        cost, flops = 0.0, 0.0
        for i in range(self.steps):
            sample = oracle(cur, self.batches)
            g, se = sample.mean, sample.se
            cost += sample.seconds
            flops += sample.flops
            res.n_batches += len(sample.per_batch)
            if i == 0:
                res.hypergrad = dict(zip(PSI_KEYS, map(float, g)))
                res.hypergrad_se = dict(zip(PSI_KEYS, map(float, se)))
            g = np.nan_to_num(g, nan=0.0)  # an unmeasured component (e.g. m excluded) does not move
            if self.rule == "raw":
                new_arr = space.psi_array(cur) - self.eta * g
                new = space.clip_psi(dict(zip(PSI_KEYS, new_arr)))
            else:
                gate = np.abs(g) >= self.snr * np.nan_to_num(se, nan=np.inf)
                u = space.to_unit(cur) - self.delta * np.sign(g) * gate
                new = space.clip_psi(space.from_unit(np.clip(u, 0.0, 1.0)))
            res.steps_taken.append({k: new[k] - cur[k] for k in PSI_KEYS})
            cur = new
        res.psi_after = cur
        res.cost_seconds, res.flops = cost, flops
        return res


# The seed's variants, by name (configs refer to these or give a spec string).
VARIANTS: dict[str, str] = {
    "baseline": "none",
    "random-warm": "random:eta=1e-3",
    "ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw",
    "ohgw-3step": "hypergradient:eta=1e-3,steps=3,rule=raw",
    "ohgw-normalized": "hypergradient:rule=normalized,delta=0.05,batches=4",
}


def from_variant(name_or_spec: str) -> WarmStart:
    return WarmStart.parse(VARIANTS.get(name_or_spec, name_or_spec))
