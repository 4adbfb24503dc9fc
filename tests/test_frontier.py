"""The frontier table, its summaries, figure and report section, on a small synthetic comparison."""
import math

import numpy as np
import pandas as pd
import pytest

from ohgw_bench import space
from ohgw_bench.analysis import frontier
from ohgw_bench.space import PSI_KEYS

SPECS = {"placebo": "placebo:steps=1,batches=1",
         "raw-1": "hypergradient:eta=1,steps=1,rule=raw,batches=1",
         "raw-10": "hypergradient:eta=10,steps=1,rule=raw,batches=1",
         "raw-100": "hypergradient:eta=100,steps=1,rule=raw,batches=1",
         "norm": "hypergradient:eta=0.001,steps=1,rule=normalized,batches=4,delta=0.05,snr=2",
         "or-0.1": "oracle:radius=0.1", "or-0.3": "oracle:radius=0.3",
         "rd-0.1": "random-dir:radius=0.1"}
# unit-cube move of each variant's trials along log10 lr
MOVE = {"baseline": 0.0, "placebo": 0.0, "raw-1": 0.01, "raw-10": 0.05, "raw-100": 0.4, "norm": 0.05,
        "or-0.1": 0.1, "or-0.3": 0.3, "rd-0.1": 0.1}
RED = {"placebo": (-0.01, -0.03, 0.01), "raw-1": (0.02, -0.01, 0.05), "raw-10": (0.05, 0.0, 0.1),
       "raw-100": (-0.3, -0.5, -0.1), "norm": (0.1, 0.02, 0.2), "or-0.1": (0.15, 0.05, 0.22),
       "or-0.3": (0.25, 0.21, 0.33), "rd-0.1": (-0.05, -0.2, 0.1)}


def synthetic(n_trials=6):
    rng = np.random.default_rng(0)
    rows = []
    for v, mv in MOVE.items():
        for seed in range(2):
            for tid in range(n_trials):
                u = rng.uniform(0.45, 0.55, len(PSI_KEYS))
                x, xp = space.from_unit(u), space.from_unit(u + np.eye(len(PSI_KEYS))[0] * mv)
                for epoch in (1, 2):  # results rows: several per trial
                    rows.append({"task": "t", "scheduler": "asha", "variant": v, "seed": seed, "trial_id": tid,
                                 "epoch": epoch, "warm_start": SPECS.get(v, "none"),
                                 **{f"x_{k}": x[k] for k in PSI_KEYS}, **{f"xp_{k}": xp[k] for k in PSI_KEYS}})
    trials = pd.DataFrame(rows)
    comp = pd.DataFrame([{"task": "t", "scheduler": "asha", "variant": v, "n": 500, "reduction": r, "reduction_ci_low": lo,
                          "reduction_ci_high": hi, "p_value": 0.01, "test_acc_drop": 0.001} for v, (r, lo, hi) in RED.items()])
    return comp, trials


def test_table_families_parameters_and_step_lengths():
    comp, trials = synthetic()
    t = frontier.frontier_table(comp, trials).set_index("variant")
    assert list(t.columns) == [c for c in frontier.FRONTIER_COLUMNS if c != "variant"]
    assert set(t.index) == set(RED)  # one row per compared variant; the baseline is not one
    assert t.loc["or-0.3", ["family", "param_name", "param"]].tolist() == ["oracle", "radius", 0.3]
    assert t.loc["raw-10", ["family", "param_name", "param"]].tolist() == ["hypergradient-raw", "eta", 10.0]
    assert t.loc["norm", ["family", "param"]].tolist() == ["hypergradient-normalized", 0.05]
    assert t.loc["rd-0.1", "family"] == "random-dir" and t.loc["placebo", "family"] == "placebo"
    for v in RED:  # each trial counted once, its step in unit-cube coordinates
        assert t.loc[v, "n_trials"] == 12
        assert t.loc[v, "step_median"] == pytest.approx(MOVE[v], abs=1e-12)
    assert t.loc["or-0.1", "reduction_ci_low"] == 0.05 and t.loc["or-0.1", "n"] == 500


def test_missing_columns_are_named():
    comp, trials = synthetic()
    with pytest.raises(ValueError, match="lacks columns \\['p_value'\\]"):
        frontier.frontier_table(comp.drop(columns="p_value").assign(wilcoxon_p=0.2), trials)
    with pytest.raises(ValueError, match="lacks columns \\['reduction_ci_low'\\]"):
        frontier.frontier_table(comp.drop(columns="reduction_ci_low"), trials)
    with pytest.raises(ValueError, match="xp_log10_lr"):
        frontier.frontier_table(comp, trials.drop(columns="xp_log10_lr"))


def test_claim_radius_and_harm_onset():
    comp, trials = synthetic()
    t = frontier.frontier_table(comp, trials)
    c = frontier.claim_radius(t, "asha")
    assert c["radius_point"] == 0.3 and c["radius_ci"] == 0.3 and c["best_reduction"] == 0.25
    h = frontier.harm_onset(t, "asha", "hypergradient-raw")
    assert h["param"] == 100.0 and h["step_median"] == pytest.approx(0.4)
    assert math.isnan(frontier.harm_onset(t, "asha", "random-dir")["param"])


def test_loess_over_log_eta_follows_a_straight_line():
    etas = [1e-3, 1e-2, 1e-1, 1, 10, 100]
    tab = pd.DataFrame({"scheduler": "asha", "family": "hypergradient-raw", "param": etas,
                        "step_median": np.geomspace(1e-5, 0.5, 6), "reduction": [0.01 * np.log10(e) for e in etas]})
    lo = frontier.loess_raw(tab, "asha")
    assert np.allclose(lo["reduction_loess"], tab["reduction"], atol=1e-9)


def test_figure_and_section(tmp_path):
    comp, trials = synthetic()
    comp = pd.concat([comp, comp.assign(scheduler="pasha", n=250)])
    trials = pd.concat([trials, trials.assign(scheduler="pasha")])
    t = frontier.frontier_table(comp, trials)
    paths = frontier.frontier_figure(t, tmp_path)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    md = frontier.markdown_section(t, "frontier.png")
    assert md.startswith("## What a one-shot warm start can buy") and "![frontier](frontier.png)" in md
    assert "**pasha** (n = 250" in md and "reaches the claimed 20% at radius 0.3" in md
    assert "hypergradient-raw: from eta = 100" in md
