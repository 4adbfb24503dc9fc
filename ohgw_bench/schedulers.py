"""Scheduler registry (names -> Syne Tune's original implementations) and the warm-start wrapper.

The schedulers are Syne Tune 0.14.2's ``legacy_baselines`` — the original promotion-type ASHA,
PASHA and DyHPO, deleted in 0.15 (see README). The warm start hooks into
``_on_config_suggest(config, trial_id, **kw)``: it runs for every *new* trial (DyHPO's
model-chosen ones too) before the config is registered with the searcher, the rung system and the
record used for later promotions, so the searcher, the rungs and every resume see x′. Editing what ``suggest()`` returns instead makes
resumed trials go back to x.
"""
from __future__ import annotations

import logging
from typing import Callable

from .space import PSI_KEYS

METRIC, MODE, RESOURCE_ATTR, MAX_RESOURCE_ATTR = "val_acc", "max", "epoch", "epochs"


def _asha(space, **kw):
    from syne_tune.optimizer.legacy_baselines import ASHA
    return ASHA, dict(type="promotion", **kw)


def _asha_stopping(space, **kw):
    from syne_tune.optimizer.legacy_baselines import ASHA
    return ASHA, dict(type="stopping", **kw)


def _pasha(space, **kw):
    from syne_tune.optimizer.legacy_baselines import PASHA
    return PASHA, kw


def _dyhpo(space, **kw):
    from syne_tune.optimizer.legacy_baselines import DyHPO
    # DyHPO uses linearly spaced rungs (grace + k * rung_increment) instead of a reduction factor
    kw.pop("reduction_factor", None)
    kw.setdefault("rung_increment", 2)
    return DyHPO, kw


def _hyperband(space, **kw):
    from syne_tune.optimizer.schedulers.legacy_hyperband import LegacyHyperbandScheduler
    return LegacyHyperbandScheduler, dict(type="promotion", searcher="random", brackets=3, **kw)


SCHEDULERS: dict[str, Callable] = {
    "asha": _asha,
    "asha-stopping": _asha_stopping,
    "pasha": _pasha,
    "dyhpo": _dyhpo,
    "hyperband": _hyperband,
}

ConfigHook = Callable[[dict, int], dict]


def make_scheduler(name: str, config_space: dict, seed: int, grace_period: int = 1, reduction_factor: int = 3,
                   max_epochs: int | None = None, hook: ConfigHook | None = None, on_first_result=None):
    """A registered Syne Tune scheduler, wrapped so that ``hook(config, trial_id) -> config'`` runs on
    every new trial's config before the scheduler registers it.

    ``on_first_result(trial_id, result) -> dict | None`` (real trials, whose ψ′ is computed inside
    the trial): a ψ′ it returns is written into the scheduler's own record of the trial and the
    searcher's, so promotions and model-based searchers see x′.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"{name!r} is not a scheduler in {list(SCHEDULERS)}")
    kw = dict(metric=METRIC, mode=MODE, resource_attr=RESOURCE_ATTR, max_resource_attr=MAX_RESOURCE_ATTR,
              grace_period=grace_period, reduction_factor=reduction_factor, random_seed=seed)
    base_cls, kw = SCHEDULERS[name](config_space, **kw)
    logging.getLogger("syne_tune").setLevel(logging.WARNING)
    cls = _warm_start_class(base_cls)
    sched = cls(config_space, **kw)
    sched._ws_hook, sched._ws_first = hook, on_first_result
    sched._ws_seen = set()
    return sched


_WRAPPED: dict[type, type] = {}


def _warm_start_class(base: type) -> type:
    if base in _WRAPPED:
        return _WRAPPED[base]

    class WarmStarted(base):
        def _on_config_suggest(self, config, trial_id, **kwargs):
            if self._ws_hook is not None:
                config = self._ws_hook(dict(config), int(trial_id))
            return super()._on_config_suggest(config, trial_id, **kwargs)

        def on_trial_result(self, trial, result):
            tid = trial.trial_id
            if self._ws_first is not None and tid not in self._ws_seen:
                self._ws_seen.add(tid)
                new_psi = self._ws_first(tid, result)
                if new_psi:
                    _pass_on(self, trial, new_psi)
            return super().on_trial_result(trial, result)

    WarmStarted.__name__ = WarmStarted.__qualname__ = f"WarmStarted{base.__name__}"
    _WRAPPED[base] = WarmStarted
    return WarmStarted


def _pass_on(sched, trial, new_psi: dict) -> None:
    """Make the scheduler's records of a running trial say x′ (real trials report ψ′ after starting)."""
    tid = str(trial.trial_id)
    for k in PSI_KEYS:
        trial.config[k] = new_psi[k]
    info = getattr(sched, "_active_trials", {}).get(tid)
    if info is not None:
        info.config.update({k: new_psi[k] for k in PSI_KEYS})
    st = getattr(getattr(sched.searcher, "state_transformer", None), "_state", None)
    cft = getattr(st, "config_for_trial", None)
    if isinstance(cft, dict) and tid in cft:
        cft[tid] = dict(cft[tid], **{k: new_psi[k] for k in PSI_KEYS})
