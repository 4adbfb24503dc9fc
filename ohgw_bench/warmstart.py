"""Warm-start rules behind one interface, used identically by real and simulated trials.

A rule is a function ``(psi, oracle, rng, params) -> (psi_prime, cost_s)``:

- ``psi``: the sampled configuration, a dict over ``space.PSI_KEYS``;
- ``oracle``: the *hyper-gradient oracle*, ``oracle(psi, n_batches) -> HGSample`` (per-batch rows
  of ∂J/∂ψ and the seconds they took). The real oracle runs mini-batches inside the trial
  (hypergrad.RealOracle); the surrogate's samples its learned hyper-gradient model and also offers
  ``oracle.surrogate`` (the response surface; absent in real trials);
- ``rng``: a numpy Generator of the trial's own warm-start stream (seed, trial id), so paired
  variants draw the same numbers;
- ``params``: the spec's options as a dict;
- returns ψ′ (a dict over PSI_KEYS, finite) and the seconds the warm start cost (at least what its
  oracle calls took). ψ′ is clipped to the search space's bounds after the rule, for every rule.

Applied once, before the first rung of a *new* trial; never on resume.

Spec strings (CLI, YAML):
``none``; ``random:eta=1e-3``; ``hypergradient:eta=1e-3,steps=3,rule=raw``;
``hypergradient:rule=normalized,delta=0.05,batches=4``; ``placebo:batches=4`` (pays the
hyper-gradient's oracle calls, keeps ψ); ``oracle:radius=0.1`` and ``oracle-greedy:radius=0.1,epoch=1``
(surrogate only: best predicted final / epoch-e validation accuracy within a unit-cube ball, zero
cost); ``random-dir:radius=0.1`` (a random unit-cube direction of that length, zero cost);
``python:package.module:function[,key=value,...]`` (a user rule; see docs/warm-starts.md).
"""
from __future__ import annotations

import importlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from . import space
from .space import PSI_KEYS

KINDS = ("none", "random", "hypergradient", "placebo", "oracle", "oracle-greedy", "random-dir", "python")
RULES = ("raw", "normalized")
SURROGATE_ONLY = ("oracle", "oracle-greedy")   # need the surrogate's response surface
CALIBRATION_DIR = Path(__file__).parent / "calibration"

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


Oracle = Callable[[dict, int], "object"]
Rule = Callable[[dict, object, np.random.Generator, Mapping], tuple]


def load_calibration(task: str) -> dict:
    p = CALIBRATION_DIR / f"{task}.json"
    if not p.exists():
        raise ValueError(f"task {task!r} has no hyper-gradient calibration at {p}; "
                         f"run `ohgw-bench calibrate --task {task}` first")
    return json.loads(p.read_text())


# ----------------------------------------------------------------------------- recording oracle
class _RecordingOracle:
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


# ----------------------------------------------------------------------------- built-in rules
def rule_none(psi, oracle, rng, params):
    return dict(psi), 0.0


def rule_random(psi, oracle, rng, params):
    """One Gaussian step with per-coordinate σ (ψ units): the energy of a raw hyper-gradient step."""
    step = rng.normal(0.0, 1.0, len(PSI_KEYS)) * np.asarray(params["sigma"], float)
    return space.clip_psi({k: psi[k] + s for k, s in zip(PSI_KEYS, step)}), 0.0


def rule_hypergradient(psi, oracle, rng, params):
    """``steps`` steps ψ ← ψ − η·ḡ (raw) or, in unit-cube coordinates, u ← u − δ·sign(ḡ) where
    |ḡ| ≥ snr·SE (normalized); ψ is clipped after every step."""
    cur = dict(psi)
    cost = 0.0
    for _ in range(params["steps"]):
        sample = oracle(cur, params["batches"])
        cost += sample.seconds
        g, se = sample.mean, sample.se
        g = np.nan_to_num(g, nan=0.0)  # an unmeasured component (e.g. m excluded) does not move
        if params["rule"] == "raw":
            new_arr = space.psi_array(cur) - params["eta"] * g
            cur = space.clip_psi(dict(zip(PSI_KEYS, new_arr)))
        else:
            gate = np.abs(g) >= params["snr"] * np.nan_to_num(se, nan=np.inf)
            u = space.to_unit(cur) - params["delta"] * np.sign(g) * gate
            cur = space.clip_psi(space.from_unit(np.clip(u, 0.0, 1.0)))
    return cur, cost


def rule_placebo(psi, oracle, rng, params):
    """The hyper-gradient warm start's oracle calls and cost, with ψ left as it is."""
    cost = 0.0
    for _ in range(params["steps"]):
        cost += oracle(dict(psi), params["batches"]).seconds
    return dict(psi), cost


def _surrogate_of(oracle, spec: str):
    sur = getattr(oracle, "surrogate", None)
    if sur is None:
        raise ValueError(f"warm start {spec!r} needs the surrogate's response surface, which only simulated "
                         f"trials have (backend surrogate)")
    return sur


def rule_oracle(psi, oracle, rng, params):
    """Best predicted validation accuracy (surrogate mean; final epoch, or ``epoch``) within the
    unit-cube ball of ``radius`` around ψ, clipped to the cube; zero cost."""
    sur = _surrogate_of(oracle, params["spec"])
    epoch = params.get("epoch") or sur.epochs
    if not 1 <= epoch <= sur.epochs:
        raise ValueError(f"warm start {params['spec']!r}: epoch must lie in [1, {sur.epochs}], but got epoch={epoch}")
    u = sur.best_in_ball(space.to_unit(psi), params["radius"], epoch, rng)
    return space.from_unit(u), 0.0


def rule_random_dir(psi, oracle, rng, params):
    """A uniformly random unit-cube direction of length ``radius`` (before clipping); zero cost."""
    d = rng.standard_normal(len(PSI_KEYS))
    d /= np.linalg.norm(d)
    u = np.clip(space.to_unit(psi) + params["radius"] * d, 0.0, 1.0)
    return space.from_unit(u), 0.0


BUILTIN_RULES: dict[str, Rule] = {
    "none": rule_none, "random": rule_random, "hypergradient": rule_hypergradient, "placebo": rule_placebo,
    "oracle": rule_oracle, "oracle-greedy": rule_oracle, "random-dir": rule_random_dir,
}


# ----------------------------------------------------------------------------- user rules
def _plugin_value(val: str):
    for conv in (int, float):
        try:
            return conv(val)
        except ValueError:
            pass
    return val


def load_plugin(spec: str, target: str) -> Rule:
    """``package.module:function`` -> the function; a ValueError naming the spec otherwise."""
    module, colon, name = target.partition(":")
    if not colon or not module or not name.isidentifier():
        raise ValueError(f"warm-start spec {spec!r} must name its rule as python:package.module:function, "
                         f"but got {target!r}")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ValueError(f"warm-start spec {spec!r}: module {module!r} cannot be imported ({e})") from None
    except Exception as e:  # noqa: BLE001 - any failure while importing user code is a bad spec
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"warm-start spec {spec!r}: importing module {module!r} failed "
                         f"({type(e).__name__}: {msg})") from None
    fn = getattr(mod, name, None)
    if fn is None:
        raise ValueError(f"warm-start spec {spec!r}: module {module!r} has no function {name!r}")
    if not callable(fn):
        raise ValueError(f"warm-start spec {spec!r}: {module}.{name} is a {type(fn).__name__}, not a function")
    return fn


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_rule_output(spec: str, out, oracle_seconds: float) -> tuple[dict, float]:
    """A rule's return value -> (ψ′ clipped to the bounds, cost). Non-finite values, wrong keys, a
    wrong return type or a cost below what the oracle calls took are errors; finite values outside
    the bounds are clipped, as every built-in rule's are."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError(f"warm-start spec {spec!r}: the rule must return (psi_prime: dict, cost_s: float), "
                         f"but returned {type(out).__name__} {_short(out)}")
    psi_p, cost = out
    if not isinstance(psi_p, Mapping):
        raise ValueError(f"warm-start spec {spec!r}: psi_prime must be a dict over {list(PSI_KEYS)}, "
                         f"but is {type(psi_p).__name__} {_short(psi_p)}")
    missing = [k for k in PSI_KEYS if k not in psi_p]
    extra = [k for k in psi_p if k not in PSI_KEYS]
    if missing or extra:
        raise ValueError(f"warm-start spec {spec!r}: psi_prime must have exactly the keys {list(PSI_KEYS)}, "
                         f"but lacks {missing} and has unknown {extra}")
    for k in PSI_KEYS:
        v = psi_p[k]
        if not _is_real(v) or not math.isfinite(float(v)):
            raise ValueError(f"warm-start spec {spec!r}: psi_prime[{k!r}] must be a finite number, but is {v!r}")
    if not _is_real(cost) or not math.isfinite(float(cost)) or float(cost) < 0:
        raise ValueError(f"warm-start spec {spec!r}: cost_s must be a finite number >= 0, but is {cost!r}")
    cost = float(cost)
    if cost < oracle_seconds * (1 - 1e-9) - 1e-12:
        raise ValueError(f"warm-start spec {spec!r}: cost_s={cost!r} is less than the {oracle_seconds!r} s its "
                         f"oracle calls took")
    return space.clip_psi(psi_p), cost


def _short(x) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


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
            return {k: _plugin_value(v) for k, v in self.options}
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
        rec = _RecordingOracle(oracle, spec)
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
