"""The built-in warm-start rules and user rules loaded from ``python:package.module:function`` specs.

A rule is ``(psi, oracle, rng, params) -> (psi_prime, cost_s)`` (see the package doc); every rule's
return value goes through :func:`check_rule_output`."""
from __future__ import annotations

import importlib
import math
import numbers
from typing import Callable, Mapping

import numpy as np

from .. import space
from ..space import PSI_KEYS

Rule = Callable[[dict, object, np.random.Generator, Mapping], tuple]


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
def plugin_value(val: str):
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
