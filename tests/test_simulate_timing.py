"""Simulated time: with one worker, a new trial's first result comes start-up + its epoch after the
previous trial's last result, plus at most one Tuner polling tick (``tuner_sleep_time``) — the
simulator must poll as often as the real sweeps do, not at Syne Tune's default 5 s."""
import numpy as np
import pytest

from ohgw_bench.config import SweepConfig
from ohgw_bench.surrogate.model import Surrogate
from ohgw_bench.sweeps.backends.simulated import run_one


def _gaps(sur, sleep, runner=None):
    cfg = SweepConfig(name="t", task="cifar10-mini", backend="surrogate", surrogate="unused", schedulers=["asha"],
                      seeds="0:1", n_workers=1, budget_s=150, tuner_sleep_time=sleep, runner=runner)
    df, _ = run_one(sur, cfg, "asha", "baseline", 3)
    df = df.sort_values("elapsed_s").reset_index(drop=True)
    switch = df["trial_id"].ne(df["trial_id"].shift()) & (df.index > 0)
    prev_t = df["elapsed_s"].shift()
    # idle time before a (re)started trial's first result: minus start-up and that epoch's own time
    idle = (df["elapsed_s"] - prev_t - sur.startup_s - df["epoch_time"])[switch]
    return idle.to_numpy()


@pytest.mark.parametrize("sleep", [0.5, 5.0])
def test_idle_time_between_trials_is_one_polling_tick_at_most(synthetic_surrogate_dir, sleep):
    sur = Surrogate.load(synthetic_surrogate_dir)
    idle = _gaps(sur, sleep)
    assert len(idle) >= 3
    # Syne Tune's simulator adds its own 0.05 s delays (result, stop, completion, start)
    assert np.all(idle >= -1e-6) and np.all(idle <= sleep + 0.25), idle
    if sleep == 5.0:
        assert idle.max() > 0.5  # the coarse tick is visible: the check above is not vacuous


@pytest.mark.parametrize("sleep", [0.5, 5.0])
def test_persistent_runner_wakes_on_the_next_event_instead_of_polling(synthetic_surrogate_dir, sleep):
    # the persistent runner's Tuner waits for news, not for the polling tick: a freed worker starts the
    # next segment within a few milliseconds whatever tuner_sleep_time is
    sur = Surrogate.load(synthetic_surrogate_dir)
    idle = _gaps(sur, sleep, runner="persistent")
    assert len(idle) >= 3
    assert np.all(idle >= -1e-6) and np.all(idle <= 0.01), idle
    # so at least as many (re)starts fit into the same budget as with the polling (LocalBackend) clock
    assert len(idle) >= len(_gaps(sur, sleep, runner="local"))


def test_modelled_decision_time_delays_every_start_by_that_much(synthetic_surrogate_dir, monkeypatch):
    # a scheduler whose every suggest() is modelled at 3 s: each (re)started trial's first result comes
    # 3 s later than the polling tick alone allows, and no earlier
    import ohgw_bench.sweeps.backends.simulated as simulated
    sur = Surrogate.load(synthetic_surrogate_dir)
    monkeypatch.setattr(simulated, "decision_time_model", lambda name: {"suggest": (3.0, 0.0)})
    idle = _gaps(sur, 0.5)
    assert len(idle) >= 3
    assert np.all(idle >= 3.0 - 1e-6) and np.all(idle <= 3.0 + 0.5 + 0.25), idle


def test_decision_time_calibration_models_only_schedulers_slower_than_a_polling_tick():
    from ohgw_bench.sweeps.schedulers import DECISION_TIME_FILE, decision_time_model
    import json
    cal = json.loads(DECISION_TIME_FILE.read_text())
    for name, entry in cal["schedulers"].items():
        assert entry["modelled"] == (entry["replicate_decide_s_median"] >= entry["measured"]["tuner_sleep_time"]), name
        assert bool(decision_time_model(name)) == entry["modelled"]
    assert decision_time_model("no-such-scheduler") == {}
