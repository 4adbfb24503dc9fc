"""Simulated replicates: the warm start's cost lands in epoch 1 of the trial it was spent on, results
past the budget never happened, and the random warm start's σ."""
import json

import numpy as np
import pytest

from ohgw_bench import space
from ohgw_bench.config import SweepConfig
from ohgw_bench.surrogate.model import Surrogate
from ohgw_bench.sweeps.backends.simulated import run_one
from ohgw_bench.warmstart import calibration
from ohgw_bench.warmstart.spec import WarmStart

OHGW = "hypergradient:eta=1e-3,steps=1,rule=raw"


def _cfg(budget_s=60, **kw):
    return SweepConfig(name="t", task="cifar10-mini", backend="surrogate", surrogate="unused", schedulers=["asha"],
                       variants={"baseline": "none", "ohgw": OHGW, "ohgw3": OHGW.replace("steps=1", "steps=3")},
                       seeds="0:1", n_workers=1, budget_s=budget_s, **kw)


@pytest.fixture(scope="module")
def sur(synthetic_surrogate_dir):
    return Surrogate.load(synthetic_surrogate_dir)


@pytest.mark.parametrize("variant,batches", [("ohgw", 1), ("ohgw3", 3)])
def test_warm_start_cost_is_added_to_epoch_one(sur, variant, batches):
    base, _ = run_one(sur, _cfg(), "asha", "baseline", 7)
    ws, _ = run_one(sur, _cfg(), "asha", variant, 7)
    b0 = base[base.trial_id == 0].set_index("epoch")
    w0 = ws[ws.trial_id == 0].set_index("epoch")
    cost = batches * sur.hg_batch_seconds
    assert w0["ws_cost_s"].iloc[0] == pytest.approx(cost)
    # same seed and trial: the same epoch-time draws (x′ is 1e-4 away from x); epoch 1 carries the cost
    assert w0.loc[1, "epoch_time"] - b0.loc[1, "epoch_time"] == pytest.approx(cost, abs=0.01)
    assert w0.loc[1, "elapsed_s"] - b0.loc[1, "elapsed_s"] == pytest.approx(cost, abs=0.01)
    later = sorted(set(b0.index) & set(w0.index) - {1})
    assert later and np.allclose(w0.loc[later, "epoch_time"], b0.loc[later, "epoch_time"], atol=0.01)


def test_budget_truncates_a_replicate_like_a_shorter_real_run(sur):
    """A replicate with budget B is the first B seconds of a longer one: same results up to B, nothing
    after it."""
    short, _ = run_one(sur, _cfg(budget_s=40), "asha", "baseline", 3)
    long, _ = run_one(sur, _cfg(budget_s=80), "asha", "baseline", 3)
    assert short["elapsed_s"].max() <= 40 < long["elapsed_s"].max()
    cols = ["trial_id", "epoch", "val_acc", "elapsed_s"]
    head = long[long["elapsed_s"] <= 40][cols].sort_values(cols).reset_index(drop=True)
    assert head.equals(short[cols].sort_values(cols).reset_index(drop=True))
    assert "completed" not in set(short["status"])  # nothing reached 27 epochs in 40 s


def test_random_sigma_is_eta_times_the_calibrated_mean_magnitude(tmp_path, monkeypatch):
    cal = {"abs_hypergrad_mean": {"log10_lr": 2.0, "log10_wd": 0.5, "momentum": 4.0, "ra_magnitude": 10.0,
                                  "label_smoothing": 1.0}}
    (tmp_path / "toy.json").write_text(json.dumps(cal))
    monkeypatch.setattr(calibration, "CALIBRATION_DIR", tmp_path)
    ws = WarmStart.parse("random:eta=1e-2")
    assert ws.random_sigma("toy").tolist() == pytest.approx([0.02, 0.005, 0.04, 0.1, 0.01])
    assert WarmStart(kind="random", sigma=(1, 2, 3, 4, 5)).random_sigma(None).tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="task 'nope' has no hyper-gradient calibration.*ohgw-bench calibrate"):
        ws.random_sigma("nope")
    with pytest.raises(ValueError, match="needs a task calibration or an explicit sigma"):
        ws.random_sigma(None)
    # the steps it takes have that spread (away from the bounds, where clipping does not act)
    psi = space.center()
    steps = np.array([[r.psi_after[k] - psi[k] for k in space.PSI_KEYS]
                      for r in (ws.apply(psi, None, np.random.default_rng(i), task="toy") for i in range(2000))])
    assert steps.std(0) == pytest.approx([0.02, 0.005, 0.04, 0.1, 0.01], rel=0.08)
