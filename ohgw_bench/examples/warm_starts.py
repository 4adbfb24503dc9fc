"""Example warm-start rules, loaded by spec strings such as
``python:ohgw_bench.examples.warm_starts:lower_lr,delta=0.05``.

A rule is ``(psi, oracle, rng, params) -> (psi_prime, cost_s)``; docs/warm-starts.md explains each
argument. These two are controls for the hyper-gradient warm start:

- ``lower_lr``: always lower the learning rate by ``delta`` of its log10 range, the fixed heuristic
  step that the hyper-gradient's usual sign (smaller effective step) amounts to; no oracle call.
- ``lr_sign``: ask the oracle for ``batches`` hyper-gradient batches and step only log10 lr, by
  ``delta`` of its range against the sign of the mean; pays the oracle's seconds.
"""
from __future__ import annotations

from ohgw_bench import space


def lower_lr(psi: dict, oracle, rng, params: dict) -> tuple[dict, float]:
    delta = float(params.get("delta", 0.05))
    width = space.dim("log10_lr").high - space.dim("log10_lr").low
    out = dict(psi)
    out["log10_lr"] = psi["log10_lr"] - delta * width  # below the bound is clipped by the framework
    return out, 0.0


def lr_sign(psi: dict, oracle, rng, params: dict) -> tuple[dict, float]:
    delta = float(params.get("delta", 0.05))
    sample = oracle(psi, int(params.get("batches", 4)))
    g = float(sample.as_dict()["log10_lr"])
    width = space.dim("log10_lr").high - space.dim("log10_lr").low
    out = dict(psi)
    if g > 0:
        out["log10_lr"] -= delta * width
    elif g < 0:
        out["log10_lr"] += delta * width
    return out, sample.seconds
