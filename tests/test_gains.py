"""Real against predicted warm-start gains (``surrogate/gains.py``, ``ohgw-bench gains``): pairing of
the runs, agreement figures, collapses, resumable collection and input errors."""
import numpy as np
import pandas as pd
import pytest

from ohgw_bench import space
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.surrogate import gains
from ohgw_bench.surrogate.model import Surrogate


def _law(u):  # the synthetic collection's final accuracy (tests/conftest.py), the surrogate's training law
    return 0.25 + 0.35 * np.exp(-4 * (u[0] - 0.6) ** 2) - 0.08 * u[3] + 0.05 * u[2]


def _rows(config_id, variant, psi_x, psi_xp, finals, diverged_at=0):
    rows = []
    for e in range(1, 28):
        if diverged_at and e > diverged_at:
            break
        div = int(bool(diverged_at) and e == diverged_at)
        rows.append({"config_id": config_id, "variant": variant, "spec": "none",
                     **{f"x_{k}": psi_x[k] for k in PSI_KEYS}, **{f"xp_{k}": psi_xp[k] for k in PSI_KEYS},
                     "epoch": e, "val_acc": 0.1 if div else finals * (1 - np.exp(-e / 6)) + 0.1 * np.exp(-e / 6),
                     "test_acc": np.nan, "epoch_time": 1.0, "diverged": div, "ws_cost_s": 0.0})
    return rows


def _runs(law, n=12, seed=0):
    """Baseline and one warm start per configuration; the warm start moves the learning rate's unit
    coordinate by ±0.3; the real final accuracies follow ``law``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        u = rng.uniform(0.2, 0.8, 5)
        up = u.copy()
        up[0] = np.clip(u[0] + rng.choice([-0.3, 0.3]), 0.0, 1.0)
        x, xp = space.from_unit(u), space.from_unit(up)
        rows += _rows(i, "baseline", x, x, law(u)) + _rows(i, "step", x, xp, law(up))
    return pd.DataFrame(rows)


def test_gains_agree_where_the_real_runs_follow_the_law_the_surrogate_learned(synthetic_surrogate_dir):
    sur = Surrogate.load(synthetic_surrogate_dir)
    res = gains.gain_check(sur, _runs(_law))
    assert res["final"]["n"] == 12
    assert res["final"]["spearman"] >= 0.8 and res["final"]["sign_agreement"] >= 0.9, res["final"]
    assert res["meets"] == {"spearman": True, "sign_agreement": True}
    # the ±0.3 lr steps that cost ≥ 5 pp in the real runs are predicted as such
    assert res["collapses"]["n"] >= 3 and res["collapses"]["predicted"] >= 0.8 * res["collapses"]["n"], res["collapses"]


def test_gains_disagree_where_the_real_effect_is_reversed(synthetic_surrogate_dir):
    sur = Surrogate.load(synthetic_surrogate_dir)
    res = gains.gain_check(sur, _runs(lambda u: 0.9 - _law(u)))
    assert res["final"]["spearman"] < 0 and res["final"]["sign_agreement"] < 0.5, res["final"]
    assert res["meets"] == {"spearman": False, "sign_agreement": False}


def test_a_warm_start_that_diverges_counts_at_chance_and_as_a_collapse(synthetic_surrogate_dir):
    sur = Surrogate.load(synthetic_surrogate_dir)
    runs = _runs(_law, n=4)
    cid = 2
    keep = runs[~((runs["config_id"] == cid) & (runs["variant"] == "step"))]
    row = runs[(runs["config_id"] == cid) & (runs["variant"] == "step")].iloc[0]
    x = {k: row[f"x_{k}"] for k in PSI_KEYS}
    xp = {k: row[f"xp_{k}"] for k in PSI_KEYS}
    runs = pd.concat([keep, pd.DataFrame(_rows(cid, "step", x, xp, 0.5, diverged_at=2))], ignore_index=True)
    t = gains.gain_table(sur, runs, 27).set_index("config_id")
    base_final = runs[(runs.config_id == cid) & (runs.variant == "baseline") & (runs.epoch == 27)]["val_acc"].item()
    assert t.loc[cid, "real_ws"] == 0.1 and t.loc[cid, "real_gain"] == pytest.approx(0.1 - base_final)
    res = gains.gain_check(sur, runs)
    case = [c for c in res["collapses"]["cases"] if c["config_id"] == cid]
    assert len(case) == 1 and case[0]["real_ws"] == 0.1
    # at epoch 1 the run had not diverged yet: its own accuracy counts there
    t1 = gains.gain_table(sur, runs, 1).set_index("config_id")
    assert t1.loc[cid, "real_ws"] > 0.1


def _fake_run(task_name, config_id, variant, spec, psi, data_root, pair_seed=0):
    xp = dict(psi)
    if variant != "baseline":
        u = space.to_unit(psi)
        u[0] = min(1.0, u[0] + 0.2)
        xp = space.from_unit(u)
    import os
    # epoch_time marks the worker process that ran it: a resumed collection must not rerun old pairs
    return [r | {"epoch_time": float(os.getpid()), "pair_seed": pair_seed}
            for r in _rows(config_id, variant, psi, xp, _law(space.to_unit(xp)))]


def test_collection_resumes_and_refuses_another_design(tmp_path, monkeypatch):
    monkeypatch.setattr(gains, "_run", _fake_run)
    monkeypatch.setattr(gains, "_task_data", lambda *a: None)
    v = {"raw-eta1": "hypergradient:eta=1,steps=1,rule=raw"}
    df = gains.collect_gains("cifar10-mini", tmp_path, v, n_configs=3, workers=1, progress=False)
    assert sorted(set(zip(df.config_id, df.variant))) == [(i, w) for i in range(3) for w in ("baseline", "raw-eta1")]
    df2 = gains.collect_gains("cifar10-mini", tmp_path, v, n_configs=4, workers=1, progress=False)
    assert len(df2) == len(df) + 2 * 27
    old_pids = set(df["epoch_time"])
    assert set(df2[df2.config_id < 3]["epoch_time"]) == old_pids          # kept, not rerun
    assert not set(df2[df2.config_id == 3]["epoch_time"]) & old_pids      # the new configuration ran now
    pd.testing.assert_frame_equal(df2[df2.config_id < 3].reset_index(drop=True), df.reset_index(drop=True))
    with pytest.raises(ValueError, match="design_seed"):
        gains.collect_gains("cifar10-mini", tmp_path, v, n_configs=4, design_seed=1, workers=1, progress=False)
    with pytest.raises(ValueError, match="variants"):
        gains.collect_gains("cifar10-mini", tmp_path, {"norm": "hypergradient:rule=normalized,delta=0.3"},
                            n_configs=4, workers=1, progress=False)


def test_more_pair_seeds_extend_a_stored_collection(tmp_path, monkeypatch):
    monkeypatch.setattr(gains, "_run", _fake_run)
    monkeypatch.setattr(gains, "_task_data", lambda *a: None)
    v = {"raw-eta1": "hypergradient:eta=1,steps=1,rule=raw"}
    df = gains.collect_gains("cifar10-mini", tmp_path, v, n_configs=2, workers=1, progress=False)
    # a collection written before pairs had seeds reads as pair seed 0
    df.drop(columns="pair_seed").to_parquet(tmp_path / "gains.parquet")
    df2 = gains.collect_gains("cifar10-mini", tmp_path, v, n_configs=2, workers=1, progress=False, pair_seeds=2)
    assert sorted(set(zip(df2.config_id, df2.variant, df2.pair_seed))) == \
        [(i, w, s) for i in range(2) for w in ("baseline", "raw-eta1") for s in (0, 1)]
    assert set(df2[df2.pair_seed == 0]["epoch_time"]) == set(df["epoch_time"])
    assert "pair_seeds: 2" in (tmp_path / "gains.yaml").read_text()
    assert gains.pair_seed_value(3, 0) != gains.pair_seed_value(3, 1)


def test_targets_use_seed_means_and_pairs_get_a_rerun_ceiling(synthetic_surrogate_dir):
    sur = Surrogate.load(synthetic_surrogate_dir)
    a = _runs(_law)
    # a second pair seed whose warm-started runs are 4 pp worse: the seed-mean gain moves by −2 pp
    b = a.assign(pair_seed=1)
    b.loc[b["variant"] == "step", "val_acc"] -= 0.04
    runs = pd.concat([a.assign(pair_seed=0), b], ignore_index=True)
    res = gains.gain_check(sur, runs)
    one = gains.gain_table(sur, a, 27).set_index("config_id")
    mean = gains.seed_mean(gains.gain_table(sur, runs, 27)).set_index("config_id")
    assert res["pair_seeds"] == 2 and res["final"]["n"] == 12 and (mean["n_pair_seeds"] == 2).all()
    np.testing.assert_allclose(mean["real_gain"], one["real_gain"] - 0.02, atol=1e-9)
    r = res["per_pair"]["27"]
    assert r["surrogate"]["n"] == 24 and r["rerun"]["n"] == 24
    # ordered pairs of seeds: seed 0's gain predicted by seed 1's and the other way round
    g = one["real_gain"].to_numpy()
    assert r["rerun"]["sign_agreement"] == pytest.approx(np.mean(np.r_[np.sign(g) == np.sign(g - 0.04),
                                                                        np.sign(g - 0.04) == np.sign(g)]))
    assert "rerun ceiling" in "\n".join(gains.gains_markdown(res))
    # seed noise-free pairs: a rerun predicts a pair perfectly
    same = gains.gain_check(sur, pd.concat([a.assign(pair_seed=0), a.assign(pair_seed=1)], ignore_index=True))
    assert same["per_pair"]["27"]["rerun"]["spearman"] == pytest.approx(1.0)
    assert same["per_pair"]["27"]["rerun"]["sign_agreement"] == 1.0


def test_a_rerun_ceiling_needs_two_seeds_of_a_pair():
    t = pd.DataFrame({"config_id": [0, 1], "variant": ["a", "a"], "real_gain": [0.1, -0.1], "pred_gain": [0, 0]})
    assert gains.rerun_ceiling(t) is None


@pytest.mark.parametrize("variant, msg", [("noequals", "NAME=SPEC"), ("o=oracle:radius=0.1", "cannot be paired"),
                                          ("b=hypergradient:eta=x", "not a number")])
def test_gains_cli_input_errors_are_one_line(synthetic_surrogate_dir, tmp_path, capsys, variant, msg):
    from ohgw_bench.cli.main import main
    rc = main(["gains", str(synthetic_surrogate_dir), "--variant", variant, "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and msg in err, err
    assert not (tmp_path / "g").exists()
