"""Targeted collection: which configurations get repeated seeds, that a larger selection extends a stored
one, and that bad input is refused with the key and value named."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_collection

from ohgw_bench.config import CollectConfig, TargetedConfig, load_collect
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.surrogate import collect as collect_mod
from ohgw_bench.surrogate.fit import effective_step
from ohgw_bench.surrogate.targets import ID_BASE, select_targets, subsets, sweep_trials, target_jobs

EPOCHS = 27


def fake_sweep(path, n_trials=40, seed=0, backend="real"):
    """results.parquet of a sweep whose trial t reached epoch max_epochs[t]; trials 0 and 1 trained the same ψ."""
    rng = np.random.default_rng(seed)
    reach = rng.choice([1, 3, 9, 27], n_trials)
    rows = []
    for t in range(n_trials):
        x = {f"xp_{k}": float(v) for k, v in zip(PSI_KEYS, rng.random(5))}
        if t == 1:
            x = first
        first = x if t == 0 else first
        for e in range(1, int(reach[t]) + 1):
            rows.append({"backend": backend, "scheduler": "asha", "variant": "baseline", "seed": 0, "trial_id": t,
                         "epoch": e, "val_acc": 0.3, **x})
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path / "results.parquet")
    return pd.DataFrame(rows)


def design(n_configs=40, n_rep=10):
    curves, _ = synthetic_collection(n_configs=n_configs, n_rep=n_rep, epochs=EPOCHS, n_hg=1, seed=3)
    return curves


def test_promoted_configurations_come_from_the_rungs_the_sweep_reached(tmp_path):
    res = fake_sweep(tmp_path / "sw")
    reach = res.groupby("trial_id")["epoch"].max()
    tc = TargetedConfig(sweeps=[str(tmp_path / "sw")], promoted_9=4, promoted_3=3)
    t = select_targets(design(), tc, EPOCHS, 10)
    xp = res.groupby("trial_id")[[f"xp_{k}" for k in PSI_KEYS]].first().to_numpy()
    for _, r in t.iterrows():
        psi = np.array([r[f"psi_{k}"] for k in PSI_KEYS])
        trials = np.flatnonzero(np.all(np.isclose(xp, psi), axis=1))
        reached = reach.iloc[trials].max()
        assert (reached >= 9) if r["kind"] == "promoted-9" else (3 <= reached < 9)
    assert sorted(t["config_id"]) == [ID_BASE["promoted-9"] + i for i in range(4)] + \
        [ID_BASE["promoted-3"] + i for i in range(3)]
    # the twice-trained ψ is one configuration
    assert not t[[f"psi_{k}" for k in PSI_KEYS]].round(9).duplicated().any()
    assert (t["seeds"] == 3).all()


def test_design_targets_are_single_seed_top_quartile_and_largest_step():
    curves = design()
    tc = TargetedConfig(top_quartile=4, edge=3, seeds=3)
    t = select_targets(curves, tc, EPOCHS, 10)
    final = curves[curves["epoch"] == EPOCHS].groupby("config_id")["val_acc"].mean()
    q = final.quantile(0.75)
    top = t.loc[t["kind"] == "top-quartile", "config_id"]
    assert len(top) == 4 and all(c >= 10 and final[c] >= q for c in top)
    psi = curves.groupby("config_id")[[f"psi_{k}" for k in PSI_KEYS]].first()
    rest = [c for c in final.index if c >= 10 and final[c] < q]
    step = pd.Series(effective_step(psi.loc[rest]), index=rest).sort_values(ascending=False)
    assert t.loc[t["kind"] == "edge", "config_id"].tolist() == step.index[:3].tolist()


def test_raising_a_count_extends_the_selection(tmp_path):
    fake_sweep(tmp_path / "sw")
    small = TargetedConfig(sweeps=[str(tmp_path / "sw")], promoted_9=2, promoted_3=2, top_quartile=2, edge=1)
    big = small.model_copy(update={"promoted_9": 4, "top_quartile": 3})
    a, b = select_targets(design(), small, EPOCHS, 10), select_targets(design(), big, EPOCHS, 10)
    assert collect_mod._is_extension(a, b) and not collect_mod._is_extension(b, a)
    assert len(b) == len(a) + 3


def test_jobs_skip_runs_already_collected():
    t = pd.DataFrame({"config_id": [5, 10000], "kind": ["edge", "promoted-9"], "seeds": [3, 3],
                      **{f"psi_{k}": [0.1, 0.2] for k in PSI_KEYS}})
    jobs = target_jobs(t, {(5, 0), (10000, 1)})
    assert [(c, s) for c, s, _ in jobs] == [(5, 1), (5, 2), (10000, 0), (10000, 2)]


def test_too_many_requested_names_the_key_and_the_value(tmp_path):
    fake_sweep(tmp_path / "sw", n_trials=6)
    with pytest.raises(ValueError, match=r"targeted\.promoted_9=50, but the sweeps hold only"):
        select_targets(design(), TargetedConfig(sweeps=[str(tmp_path / "sw")], promoted_9=50), EPOCHS, 10)
    with pytest.raises(ValueError, match=r"targeted\.top_quartile=99"):
        select_targets(design(), TargetedConfig(top_quartile=99), EPOCHS, 10)


def test_simulated_or_missing_sweeps_are_refused(tmp_path):
    fake_sweep(tmp_path / "sim", backend="surrogate")
    with pytest.raises(ValueError, match="holds simulated results"):
        sweep_trials([str(tmp_path / "sim")])
    with pytest.raises(ValueError, match="holds no results.parquet"):
        sweep_trials([str(tmp_path / "nowhere")])


def test_config_errors_are_one_line_with_the_key():
    with pytest.raises(ValueError, match="targeted.sweeps must name real sweeps when promoted_9=3"):
        CollectConfig(task="cifar10-mini", targeted={"promoted_9": 3})
    with pytest.raises(Exception, match="seeds"):
        CollectConfig(task="cifar10-mini", targeted={"edge": 2, "seeds": 1})


def test_a_resumed_collection_may_raise_counts_but_not_change_the_draw(tmp_path):
    out = tmp_path / "sur"
    out.mkdir()
    old = {"sweeps": ["a"], "promoted_9": 2, "promoted_3": 0, "top_quartile": 1, "edge": 0, "seeds": 3, "seed": 0}
    collect_mod._check_extends(old, dict(old, promoted_9=5), out)
    with pytest.raises(ValueError, match=r"targeted\.seed=0; this config has targeted\.seed=1"):
        collect_mod._check_extends(old, dict(old, seed=1), out)
    with pytest.raises(ValueError, match=r"targeted\.promoted_9=2; this config has targeted\.promoted_9=1"):
        collect_mod._check_extends(old, dict(old, promoted_9=1), out)
    with pytest.raises(ValueError, match="targeted=None"):
        collect_mod._check_extends(old, None, out)


def test_targets_need_the_complete_design(tmp_path):
    curves = design(n_configs=12, n_rep=4)
    cfg = CollectConfig(task="cifar10-mini", n_configs=13, n_repeat_configs=4, targeted={"edge": 1})
    with pytest.raises(ValueError, match="needs the complete design first: 1 design runs"):
        collect_mod._targets(tmp_path, cfg, curves)
    cfg = cfg.model_copy(update={"n_configs": 12})
    t = collect_mod._targets(tmp_path, cfg, curves)
    assert (tmp_path / "targets.parquet").exists() and len(t) == 1
    # the stored selection is what later fits and verifications group by
    added = curves[curves["config_id"] == t["config_id"].iloc[0]].assign(seed=1)
    assert subsets(tmp_path, pd.concat([curves, added])) == {"edge": [int(t["config_id"].iloc[0])]}


def test_the_shipped_collect_config_targets_no_verification_sweep():
    import json
    cfg = load_collect("configs/collect-cifar10-mini.yaml")
    assert cfg.targeted is not None and cfg.targeted.sweeps
    for f in ("verify-heldout", "verify-heldout-dyhpo"):
        roles = json.load(open(f"surrogates/cifar10-mini/{f}/verify.json"))["stores"]["real"]
        verifying = {r["path"] for r in roles}
        assert verifying and not verifying & set(cfg.targeted.sweeps)
