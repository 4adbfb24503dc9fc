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

