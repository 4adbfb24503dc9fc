"""The five continuous hyperparameters, their ψ coordinates and Syne Tune config space.

ψ (the coordinates in which warm-start steps are taken) is the dict
``{"log10_lr", "log10_wd", "momentum", "ra_magnitude", "label_smoothing"}``; the
natural hyperparameters x are ``{"lr", "weight_decay", "momentum", "ra_magnitude",
"label_smoothing"}``. Syne Tune configurations use ψ keys directly, so a scheduler's
config *is* a point in ψ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Dim:
    name: str          # ψ key
    natural: str       # natural-hyperparameter key
    low: float
    high: float
    log10: bool        # ψ = log10(natural)
    integer_ops: bool = False  # the training ops need an integer (RandAugment bins)


DIMS: tuple[Dim, ...] = (
    Dim("log10_lr", "lr", -3.0, 0.0, True),
    Dim("log10_wd", "weight_decay", -6.0, -2.0, True),
    Dim("momentum", "momentum", 0.5, 0.99, False),
    Dim("ra_magnitude", "ra_magnitude", 0.0, 30.0, False, integer_ops=True),
    Dim("label_smoothing", "label_smoothing", 0.0, 0.3, False),
)
PSI_KEYS: tuple[str, ...] = tuple(d.name for d in DIMS)
NATURAL_KEYS: tuple[str, ...] = tuple(d.natural for d in DIMS)
_BY_NAME = {d.name: d for d in DIMS}


def check_psi(psi: Mapping[str, float]) -> dict[str, float]:
    """Validate a ψ dict: all five keys present, finite, inside bounds.

    Raises:
        ValueError naming the key, the bounds and the value.
    """
    missing = [k for k in PSI_KEYS if k not in psi]
    if missing:
        raise ValueError(f"hyperparameters {missing} are missing; expected keys {list(PSI_KEYS)}")
    out = {}
    for d in DIMS:
        v = float(psi[d.name])
        if not math.isfinite(v) or not (d.low - 1e-9 <= v <= d.high + 1e-9):
            raise ValueError(
                f"hyperparameter {d.name!r} must lie in [{d.low}, {d.high}], but got {d.name}={v!r}")
        out[d.name] = min(max(v, d.low), d.high)
    return out


def psi_to_natural(psi: Mapping[str, float]) -> dict[str, float]:
    psi = check_psi(psi)
    return {d.natural: (10.0 ** psi[d.name] if d.log10 else psi[d.name]) for d in DIMS}


def natural_to_psi(x: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for d in DIMS:
        if d.natural not in x:
            raise ValueError(f"hyperparameter {d.natural!r} is missing; expected keys {list(NATURAL_KEYS)}")
        v = float(x[d.natural])
        if d.log10:
            if not v > 0:
                raise ValueError(f"hyperparameter {d.natural!r} must be > 0, but got {d.natural}={v!r}")
            v = math.log10(v)
        out[d.name] = v
    return check_psi(out)


def clip_psi(psi: Mapping[str, float]) -> dict[str, float]:
    return {d.name: float(min(max(float(psi[d.name]), d.low), d.high)) for d in DIMS}


def to_unit(psi: Mapping[str, float]) -> np.ndarray:
    """ψ dict -> array in the unit cube (order PSI_KEYS)."""
    return np.array([(float(psi[d.name]) - d.low) / (d.high - d.low) for d in DIMS])


def from_unit(u) -> dict[str, float]:
    u = np.asarray(u, dtype=float)
    return {d.name: float(d.low + u[i] * (d.high - d.low)) for i, d in enumerate(DIMS)}


def psi_array(psi: Mapping[str, float]) -> np.ndarray:
    return np.array([float(psi[k]) for k in PSI_KEYS])


def widths() -> np.ndarray:
    return np.array([d.high - d.low for d in DIMS])


def center() -> dict[str, float]:
    return {d.name: 0.5 * (d.low + d.high) for d in DIMS}


def ops_magnitude(m: float) -> int:
    """RandAugment magnitude bin actually used by the ops (they need an integer)."""
    return int(round(min(max(m, 0.0), 30.0)))


def syne_tune_space(**constants) -> dict:
    """The search space as a Syne Tune config space; ``constants`` are passed through."""
    from syne_tune.config_space import uniform as st_uniform  # local import: syne_tune is heavy
    space = {d.name: st_uniform(d.low, d.high) for d in DIMS}
    space.update(constants)
    return space


def dim(name: str) -> Dim:
    if name not in _BY_NAME:
        raise ValueError(f"{name!r} is not a hyperparameter in {list(PSI_KEYS)}")
    return _BY_NAME[name]
