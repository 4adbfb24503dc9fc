"""Scheduler registry (names -> Syne Tune's original implementations) and the warm-start wrapper.

The schedulers are Syne Tune 0.14.2's ``legacy_baselines`` — the original promotion-type ASHA,
PASHA and DyHPO, deleted in 0.15 (see README). The warm start hooks into
``_on_config_suggest(config, trial_id, **kw)``: it runs for every *new* trial (DyHPO's
model-chosen ones too) before the config is registered with the searcher, the rung system and the
record used for later promotions, so the searcher, the rungs and every resume see x′. Editing what ``suggest()`` returns instead makes
resumed trials go back to x.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Callable

from ..space import PSI_KEYS

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

# Measured compute time of the schedulers' own calls (benchmarks/bench_decision_time.py --write-calibration)
DECISION_TIME_FILE = Path(__file__).resolve().parents[1] / "calibration" / "scheduler_decision_time.json"


def decision_time_model(name: str) -> dict[str, tuple[float, float]]:
    """The modelled compute time of scheduler ``name``'s calls, ``{call: (intercept_s, per_result_s)}``:
    a call costs ``intercept_s + per_result_s × (results the scheduler has seen)``. Empty for a
    scheduler whose measured decisions take less than one Tuner polling interval per replicate in all
    (the simulated clock's resolution; see the calibration file's ``rule``), and when nothing was
    measured."""
    if not DECISION_TIME_FILE.exists():
        return {}
    try:
        cal = json.loads(DECISION_TIME_FILE.read_text())
        entry = cal["schedulers"].get(name) or {}
        if not entry.get("modelled"):
            return {}
        return {call: (float(c["intercept_s"]), float(c["per_result_s"])) for call, c in entry["calls"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"scheduler decision-time calibration {str(DECISION_TIME_FILE)!r} is malformed "
                         f"({type(e).__name__}: {e}); rerun benchmarks/bench_decision_time.py --write-calibration") from e


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
    _pasha_in_trial_order(sched)
    return sched


class _TrialIds(set):
    """A set of trial ids that iterates in numeric order. Syne Tune's PASHA estimates its ranking
    noise ε by iterating sets of string trial ids (``PASHARungSystem._update_epsilon``); their order
    follows Python's per-process string hash seed, so the same seed gave another ε, other promotions
    and another result in another process. In id order every pair is also met in one orientation, so
    its de-duplication of pairs across epochs (``seen_pairs``) works as written."""

    def __iter__(self):
        return iter(sorted(set.__iter__(self), key=lambda t: (len(str(t)), str(t))))


class _TrialsByEpoch(dict):
    def __setitem__(self, key, value):
        super().__setitem__(key, _TrialIds(value))


def _pasha_in_trial_order(sched) -> None:
    """Make PASHA's ε reproducible (see ``_TrialIds``); other schedulers are left alone."""
    from syne_tune.optimizer.schedulers.legacy_hyperband_pasha import PASHARungSystem
    for rs in getattr(getattr(sched, "terminator", None), "_rung_systems", None) or ():
        if isinstance(rs, PASHARungSystem):
            rs.epoch_to_trials = _TrialsByEpoch({k: _TrialIds(v) for k, v in rs.epoch_to_trials.items()})


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


def xprime_from_result(trial_id, result: dict) -> dict:
    """ψ′ from a warm-started real trial's first result (the trainer reports ``xp_*`` with every result)."""
    missing = [f"xp_{k}" for k in PSI_KEYS if f"xp_{k}" not in result]
    if missing:
        raise ValueError(f"trial {trial_id}'s first result lacks {missing[0]!r}: the scheduler cannot learn its "
                         f"warm-started configuration x′")
    return {k: float(result[f"xp_{k}"]) for k in PSI_KEYS}


def _searcher_records(searcher) -> list[tuple[dict, bool]]:
    """The searcher's per-trial config records (trial id -> config) that must say x′, each with whether
    it must already hold the trial.

    Random searchers keep none unless they exclude duplicates; model-based ones (DyHPO's GP, wrapped
    in ``_searcher_int``) keep ``config_for_trial`` in their model state, which is their training data.
    A searcher of any other shape is refused rather than silently left holding x."""
    inner = getattr(searcher, "_searcher_int", searcher)
    if hasattr(inner, "state_transformer"):
        return [(inner.state_transformer.state.config_for_trial, True)]
    if hasattr(inner, "_config_for_trial_id"):  # filled only once a trial reports, if at all
        return [] if inner._config_for_trial_id is None else [(inner._config_for_trial_id, False)]
    raise TypeError(f"searcher {type(inner).__name__} keeps configs where the warm start cannot update them")


def _pass_on(sched, trial, new_psi: dict) -> None:
    """Make every record of a running trial say x′: the trial's config (shared with the backend, used
    when it is resumed), the scheduler's record (used for promotions) and the searcher's."""
    tid = str(trial.trial_id)
    upd = {k: float(new_psi[k]) for k in PSI_KEYS}
    info = sched._active_trials.get(tid)
    if info is None:
        raise KeyError(f"scheduler {type(sched).__name__} has no record of trial {tid} to update with x′")
    records = _searcher_records(sched.searcher)
    trial.config.update(upd)
    info.config.update(upd)
    for rec, required in records:
        if tid in rec:
            rec[tid] = dict(rec[tid], **upd)
        elif required:
            raise KeyError(f"searcher {type(sched.searcher).__name__} has no record of trial {tid} to update with x′")


# the Tuner's calls into a scheduler, timed in real sweeps and charged in simulated ones
DECISION_CALLS = ("suggest", "on_trial_add", "on_trial_result", "on_trial_complete", "on_trial_error", "on_trial_remove")


def wrap_calls(sched, calls, around) -> None:
    """Route the scheduler's ``calls`` through ``around(call, results_seen)``, a context manager entered
    around each call; ``results_seen`` counts the ``on_trial_result`` calls before this one (so
    ``calls`` must include it for the count)."""
    seen = [0]
    for call in calls:
        fn = getattr(sched, call, None)
        if fn is None:
            continue

        def wrapped(*args, _fn=fn, _call=call, **kw):
            try:
                with around(_call, seen[0]):
                    return _fn(*args, **kw)
            finally:
                seen[0] += _call == "on_trial_result"
        setattr(sched, call, wrapped)


def call_timer(log: list):
    """A context manager factory for ``wrap_calls`` appending (call, results seen, cpu_s, wall_s)."""
    @contextlib.contextmanager
    def timed(call: str, seen: int):
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            log.append((call, int(seen), time.thread_time() - c0, time.perf_counter() - w0))
    return timed
