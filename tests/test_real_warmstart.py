"""How real schedulers learn a warm-started configuration x′: a real trial computes ψ′ inside its
process and reports it with its first result, so the scheduler must rewrite its own record, its
searcher's and the trial's. Driven here as the Tuner drives a scheduler (suggest, on_trial_add,
on_trial_result) with synthetic results, no training."""
from datetime import datetime

import numpy as np
import pytest
from syne_tune.backend.trial_status import Trial

from ohgw_bench import space
from ohgw_bench.space import PSI_KEYS, syne_tune_space
from ohgw_bench.sweeps.schedulers import _pass_on, make_scheduler, xprime_from_result


def _start(sched, tid):
    sug = sched.suggest(tid)
    trial = Trial(trial_id=tid, config=dict(sug.config), creation_time=datetime.now())
    sched.on_trial_add(trial)
    return trial


def _moved(config):
    x = {k: float(config[k]) for k in PSI_KEYS}
    u = np.clip(space.to_unit(x) + 0.01, 0, 1)
    return space.from_unit(u)


def _searcher_config(sched, tid):
    inner = getattr(sched.searcher, "_searcher_int", sched.searcher)
    if hasattr(inner, "state_transformer"):
        return inner.state_transformer.state.config_for_trial[str(tid)]
    assert inner._config_for_trial_id is None  # a random searcher without duplicate checks keeps no record
    return None


@pytest.mark.parametrize("name", ["asha", "pasha", "dyhpo"])
def test_first_result_puts_x_prime_into_scheduler_searcher_and_trial(name):
    sched = make_scheduler(name, syne_tune_space(epochs=27), 0, max_epochs=27, on_first_result=xprime_from_result)
    trials = [_start(sched, tid) for tid in range(3)]
    for t in trials:
        xp = _moved(t.config)
        assert any(xp[k] != t.config[k] for k in PSI_KEYS)
        sched.on_trial_result(t, {"epoch": 1, "val_acc": 0.2 + 0.1 * t.trial_id, "epochs": 1,
                                  **{f"xp_{k}": xp[k] for k in PSI_KEYS}})
        for where, cfg in (("trial", t.config), ("scheduler", sched._active_trials[str(t.trial_id)].config),
                           ("searcher", _searcher_config(sched, t.trial_id))):
            if cfg is not None:
                assert {k: cfg[k] for k in PSI_KEYS} == pytest.approx(xp), f"{name}: the {where}'s record"
    # a later result of the same trial is not a first result: x′ stays
    t = trials[0]
    before = dict(t.config)
    sched.on_trial_result(t, {"epoch": 2, "val_acc": 0.5, "epochs": 3, **{f"xp_{k}": 0.0 for k in PSI_KEYS}})
    assert {k: t.config[k] for k in PSI_KEYS} == {k: before[k] for k in PSI_KEYS}


def test_first_result_without_x_prime_is_an_error():
    sched = make_scheduler("asha", syne_tune_space(epochs=27), 0, max_epochs=27, on_first_result=xprime_from_result)
    t = _start(sched, 0)
    with pytest.raises(ValueError, match="trial 0's first result lacks 'xp_log10_lr'"):
        sched.on_trial_result(t, {"epoch": 1, "val_acc": 0.3, "epochs": 1})


def test_pass_on_refuses_a_trial_the_scheduler_does_not_know():
    sched = make_scheduler("asha", syne_tune_space(epochs=27), 0, max_epochs=27)
    stranger = Trial(trial_id=7, config=dict(space.center()), creation_time=datetime.now())
    with pytest.raises(KeyError, match="no record of trial 7"):
        _pass_on(sched, stranger, space.center())


@pytest.mark.parametrize("name", ["asha", "pasha", "dyhpo"])
def test_searcher_draws_do_not_depend_on_numpy_global_rng(name):
    """Pairing: a scheduler built with the replicate seed suggests the same configurations whatever
    numpy's global RNG state is (0.14.2 searchers keep their own RandomState seeded by random_seed)."""
    def configs(global_seed):
        np.random.seed(global_seed)
        sched = make_scheduler(name, syne_tune_space(epochs=27), 5, max_epochs=27)
        out = []
        for tid in range(4):
            np.random.random(17)  # anything else drawing from the global RNG in between
            cfg = sched.suggest(tid).config
            out.append({k: cfg[k] for k in PSI_KEYS})
        return out
    a, b = configs(0), configs(12345)
    assert a == b
    assert len({tuple(c.values()) for c in a}) == 4
