"""The warm-start object: a spec string (``hypergradient:eta=1e-3,steps=1``) parsed into options,
validated before any run, and applied once to a new trial's ψ through its rule and oracle."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import space
from ..space import PSI_KEYS
from .calibration import load_calibration
from .oracles import Oracle, RecordingOracle
from .rules import BUILTIN_RULES, Rule, check_rule_output, load_plugin, plugin_value

KINDS = ("none", "random", "hypergradient", "placebo", "oracle", "oracle-greedy", "random-dir", "python")
RULES = ("raw", "normalized")
SURROGATE_ONLY = ("oracle", "oracle-greedy")   # need the surrogate's response surface

# options each built-in kind accepts in its spec string, with their types
_OPTION_TYPES = {"eta": float, "steps": int, "rule": str, "batches": int, "delta": float, "snr": float,
                 "radius": float, "epoch": int}
_OPTIONS = {
    "none": (),
    "random": ("eta",),
    "hypergradient": ("eta", "steps", "rule", "batches", "delta", "snr"),
    "placebo": ("steps", "batches"),
    "oracle": ("radius",),
    "oracle-greedy": ("radius", "epoch"),
    "random-dir": ("radius",),
}
_ALIASES = {"ohgw": "hypergradient", "hg": "hypergradient", "baseline": "none"}


@dataclass
class WarmStartResult:
    psi_before: dict
    psi_after: dict
    hypergrad: dict               # mean raw ∂J/∂ψ of the first oracle call (NaN when none was made)
    hypergrad_se: dict
    steps_taken: list = field(default_factory=list)  # the ψ-space moves between oracle queries and ψ′
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


# ----------------------------------------------------------------------------- the warm-start object
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
    radius: float = 0.1       # oracle, oracle-greedy, random-dir: unit-cube step length
    epoch: int = 1            # oracle-greedy: the epoch whose predicted accuracy is maximised
    target: str = ""          # python: "package.module:function"
    options: tuple = ()       # python: ((key, value string), ...) in spec order

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
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"warm-start radius must be a finite number > 0, but got radius={self.radius!r}")
        if not (isinstance(self.epoch, int) and self.epoch >= 1):
            raise ValueError(f"warm-start epoch must be an integer >= 1, but got epoch={self.epoch!r}")
        if self.kind == "python":
            load_plugin(self.spec(), self.target)  # a missing module or function fails here, before any run

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
        kind = _ALIASES.get(kind, kind)
        if kind == "python":
            return cls._parse_python(spec, rest)
        if kind not in _OPTIONS:
            raise ValueError(f"warm-start kind {kind!r} in {spec!r} is not one of {list(KINDS)}")
        valid = _OPTIONS[kind]
        kw: dict = {}
        for item in filter(None, rest.split(",")):
            key, eq, val = item.partition("=")
            key, val = key.strip(), val.strip()
            if not eq or key not in valid:
                raise ValueError(f"warm-start option {key!r} in {spec!r} is not known; valid options for "
                                 f"{kind!r} are {list(valid)}")
            try:
                kw[key] = _OPTION_TYPES[key](val)
            except ValueError:
                raise ValueError(f"warm-start option {key}={val!r} in {spec!r} is not a number") from None
        if kind == "hypergradient" and kw.get("rule") == "normalized" and "batches" not in kw:
            kw["batches"] = 4
        return cls(kind=kind, **kw)

    @classmethod
    def _parse_python(cls, spec: str, rest: str) -> "WarmStart":
        target, *items = [s.strip() for s in rest.split(",")]
        opts = []
        for item in filter(None, items):
            key, eq, val = item.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise ValueError(f"warm-start option {item!r} in {spec!r} must be key=value")
            if key in dict(opts):
                raise ValueError(f"warm-start option {key!r} appears twice in {spec!r}")
            opts.append((key, val.strip()))
        return cls(kind="python", target=target, options=tuple(opts))

    def spec(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "random":
            return f"random:eta={self.eta:g}"
        if self.kind == "hypergradient":
            s = f"hypergradient:eta={self.eta:g},steps={self.steps},rule={self.rule},batches={self.batches}"
            if self.rule == "normalized":
                s += f",delta={self.delta:g},snr={self.snr:g}"
            return s
        if self.kind == "placebo":
            return f"placebo:steps={self.steps},batches={self.batches}"
        if self.kind in ("oracle", "random-dir"):
            return f"{self.kind}:radius={self.radius:g}"
        if self.kind == "oracle-greedy":
            return f"oracle-greedy:radius={self.radius:g},epoch={self.epoch}"
        return ",".join([f"python:{self.target}", *(f"{k}={v}" for k, v in self.options)])

    @property
    def surrogate_only(self) -> bool:
        return self.kind in SURROGATE_ONLY

    def check_backend(self, backend: str) -> None:
        """Oracle rules need the surrogate's response surface: a real trial cannot run them."""
        if backend == "real" and self.surrogate_only:
            raise ValueError(f"warm start {self.spec()!r} needs the surrogate's response surface and cannot run "
                             f"in a real trial; use it with backend surrogate")

    # ---------------------------------------------------------------- application
    def random_sigma(self, task: str | None) -> np.ndarray:
        if self.sigma is not None:
            return np.asarray(self.sigma, float)
        if task is None:
            raise ValueError("warm-start 'random' needs a task calibration or an explicit sigma")
        cal = load_calibration(task)
        return self.eta * np.array([cal["abs_hypergrad_mean"][k] for k in PSI_KEYS])

    def rule_function(self) -> Rule:
        if self.kind == "python":
            return load_plugin(self.spec(), self.target)
        return BUILTIN_RULES[self.kind]

    def params(self, task: str | None = None) -> dict:
        """The rule's ``params``: the spec's options (typed for the built-ins)."""
        if self.kind == "python":
            return {k: plugin_value(v) for k, v in self.options}
        p = {k: getattr(self, k) for k in _OPTIONS[self.kind]}
        if self.kind == "random":
            p["sigma"] = self.random_sigma(task)
        if self.kind == "oracle":
            p["epoch"] = None  # the surrogate's last epoch
        if self.kind in SURROGATE_ONLY:
            p["spec"] = self.spec()
        return p

    def apply(self, psi: dict, oracle: Oracle | None, rng: np.random.Generator,
              task: str | None = None) -> WarmStartResult:
        """Move ψ once (before the first rung). Returns ψ before/after, raw hyper-gradients and cost."""
        psi = space.check_psi(psi)
        spec = self.spec()
        rec = RecordingOracle(oracle, spec)
        fn = self.rule_function()
        if self.kind == "python":
            try:
                out = fn(dict(psi), rec, rng, self.params(task))
            except ValueError as e:
                if spec in str(e):
                    raise
                raise ValueError(f"warm-start spec {spec!r}: the rule raised ValueError: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}") from e
            except Exception as e:  # noqa: BLE001 - a failing user rule is reported as its spec's error
                msg = str(e).splitlines()[0] if str(e) else ""
                raise ValueError(f"warm-start spec {spec!r}: the rule raised {type(e).__name__}: {msg}") from e
        else:
            out = fn(dict(psi), rec, rng, self.params(task))
        new, cost = check_rule_output(spec, out, rec.seconds)
        nan = {k: float("nan") for k in PSI_KEYS}
        res = WarmStartResult(psi_before=dict(psi), psi_after=new, hypergrad=dict(nan), hypergrad_se=dict(nan),
                              cost_seconds=cost)
        if rec.samples:
            first = rec.samples[0]
            res.hypergrad = dict(zip(PSI_KEYS, map(float, first.mean)))
            res.hypergrad_se = dict(zip(PSI_KEYS, map(float, first.se)))
            res.n_batches = int(sum(len(s.per_batch) for s in rec.samples))
            res.flops = float(sum(s.flops for s in rec.samples))
        points = [psi, *rec.queries[1:], new]
        res.steps_taken = [{k: b[k] - a[k] for k in PSI_KEYS} for a, b in zip(points[:-1], points[1:])]
        return res


# The seed's variants, by name (configs refer to these or give a spec string).
VARIANTS: dict[str, str] = {
    "baseline": "none",
    "random-warm": "random:eta=1e-3",
    "ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw",
    "ohgw-3step": "hypergradient:eta=1e-3,steps=3,rule=raw",
    "ohgw-normalized": "hypergradient:rule=normalized,delta=0.05,batches=4",
    "placebo": "placebo:steps=1,batches=1",
}


def from_variant(name_or_spec: str) -> WarmStart:
    return WarmStart.parse(VARIANTS.get(name_or_spec, name_or_spec))
