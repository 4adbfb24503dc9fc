"""verify end to end: a surrogate checked against 'real' replicates that it generated itself must
agree with itself (band share high, same ranking); plus the band statistic by hand."""
import json
import os
import shutil

import numpy as np
import pytest
import yaml

from ohgw_bench.config import SweepConfig
from ohgw_bench.sweeps.sweep import run_sweep
import pandas as pd

from ohgw_bench.analysis.verify import band_share, ranking_consistency, run_verify


def test_band_share_by_hand():
    rng = np.random.default_rng(0)
    sim = np.tile(np.linspace(0, 1, 5), (50, 1)) + rng.normal(0, 0.01, (50, 5))
    inside = np.tile(np.linspace(0, 1, 5), (3, 1))
    outside = inside + 0.5
    assert band_share(inside, sim, rng)["band_share"] == 1.0
    assert band_share(outside, sim, rng)["band_share"] == 0.0


VARIANTS3 = {"baseline": "none", "ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw",
             "ohgw-3step": "hypergradient:eta=1e-3,steps=3,rule=raw"}


def _relabel_real(d, drop=()):
    """Pretend a surrogate store is real (identical generators must agree); ``drop``: (variant, seed)
    replicates removed, so that a variant has fewer real replicates."""
    c = yaml.safe_load((d / "config.yaml").read_text())
    c["backend"] = "real"
    (d / "config.yaml").write_text(yaml.safe_dump(c))
    for f in ("results.parquet", "replicates.parquet"):
        t = pd.read_parquet(d / f)
        keep = ~pd.Series([(v, s) in drop for v, s in zip(t["variant"], t["seed"])], index=t.index)
        if f == "results.parquet":
            t["backend"] = "real"
        t[keep].reset_index(drop=True).to_parquet(d / f)


@pytest.fixture(scope="module")
def fake_real(synthetic_surrogate_dir, tmp_path_factory):
    """A 'real' store: 4 seeds of asha × 3 variants from the surrogate itself, ohgw-3step with 2 only."""
    root = tmp_path_factory.mktemp("verify")
    os.environ["OHGW_WORKERS"] = "1"
    try:
        cfg = SweepConfig(name="self", task="cifar10-mini", backend="surrogate", surrogate=str(synthetic_surrogate_dir),
                          schedulers=["asha"], variants=VARIANTS3, seeds="0:4", n_workers=2, budget_s=90,
                          out=str(root / "fake-real"))
        d = run_sweep(cfg, progress=False)
    finally:
        os.environ.pop("OHGW_WORKERS")
    _relabel_real(d, drop={("ohgw-3step", 2), ("ohgw-3step", 3)})
    return root, d


def _verify(sur_dir, real_dirs, root, **kw):
    # one output directory for every call: the simulated sweep is simulated once and then reused
    kw = {"sim_seeds": 20, "progress": False, "min_real": 4, **kw}
    return run_verify(str(sur_dir), [str(d) for d in real_dirs], out=str(root / "v"),
                      heldout_curves=str(sur_dir / "curves.parquet"), **kw)


def test_verify_surrogate_against_itself(synthetic_surrogate_dir, fake_real, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    root, d = fake_real
    res = _verify(synthetic_surrogate_dir, [d], root)
    assert (root / "v" / "verify.md").exists()
    assert set(res["hpo_level"]["checked_variants"]) == {"asha/baseline", "asha/ohgw-1step"}
    assert res["hpo_level"]["per_variant"]["asha/ohgw-3step"]["n_real"] == 2  # reported, not checked
    assert res["checks"]["hpo/asha/baseline/n_real>=4"] is True and "hpo/asha/baseline/band" in res["checks"]
    assert "hpo/asha/ohgw-3step/band" not in res["checks"]
    assert "hpo/pasha/baseline/n_real>=4" not in res["checks"]  # pasha did not run
    (pair,) = res["hpo_level"]["ranking_consistency"]["pairs"]
    assert pair["paired"] and pair["a"] == "baseline" and pair["b"] == "ohgw-1step"
    js = json.loads((root / "v" / "verify.json").read_text())
    for k in ("asha/baseline", "asha/ohgw-1step"):
        v = js["hpo_level"]["per_variant"][k]
        assert v["band_share"] >= 0.7 and v["n_real"] == 4 and v["n_sim"] == 20
    assert js["stores"]["real"][0]["role"] == "verification" and res["checks"]["stores/real_not_calibration"] is True
    assert res["shift"]["n_results"] > 0
    # too few real replicates: reported, but no band check and the required-n check fails
    res10 = _verify(synthetic_surrogate_dir, [d], root, min_real=10)
    assert res10["checks"]["hpo/asha/baseline/n_real>=10"] is False and res10["pass"] is False
    assert not any(k.endswith("/band") for k in res10["checks"])
    assert res10["hpo_level"]["ranking_consistency"]["agrees"] is None


def test_verify_fails_when_the_real_curves_are_shifted(synthetic_surrogate_dir, fake_real, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    root, d = fake_real
    shifted = tmp_path / "shifted"
    shutil.copytree(d, shifted)
    r = pd.read_parquet(shifted / "results.parquet")
    r["val_acc"] -= 0.08  # real runs that learn worse than the surrogate says
    r.to_parquet(shifted / "results.parquet")
    res = _verify(synthetic_surrogate_dir, [shifted], root)
    for k in ("asha/baseline", "asha/ohgw-1step"):  # the same replicates unshifted lie in the band >= 70 %
        assert res["hpo_level"]["per_variant"][k]["band_share"] < 0.3 and res["checks"][f"hpo/{k}/band"] is False
    assert res["pass"] is False


def test_verdict_agreement_counts_only_variants_with_enough_real_replicates(synthetic_surrogate_dir, fake_real,
                                                                            monkeypatch):
    """ohgw-3step has 2 real replicates (< min_real 4): its verdict is shown but must not decide."""
    from ohgw_bench.analysis import verify
    monkeypatch.setenv("OHGW_WORKERS", "1")
    root, d = fake_real
    orig, seen = verify._verdicts, []

    def real_flips_ohgw3(results, reps, cfg, tau):
        m, rank, ver = orig(results, reps, cfg, tau)
        if not seen:  # the first call scores the real replicates
            ver = {k: (not v if k == "asha/ohgw-3step" else v) for k, v in ver.items()}
        seen.append(1)
        return m, rank, ver

    monkeypatch.setattr(verify, "_verdicts", real_flips_ohgw3)
    res = _verify(synthetic_surrogate_dir, [d], root)
    h = res["hpo_level"]
    assert h["verdict_real"]["asha/ohgw-3step"] != h["verdict_sim"]["asha/ohgw-3step"]
    assert h["verdict_real"]["asha/ohgw-1step"] == h["verdict_sim"]["asha/ohgw-1step"]
    assert h["verdict_agrees"] is True and res["checks"]["hpo/verdict_agrees"] is True


def test_verify_refuses_surrogate_store_as_real(synthetic_surrogate_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    cfg = SweepConfig(name="s", task="cifar10-mini", backend="surrogate", surrogate=str(synthetic_surrogate_dir),
                      seeds="0:1", budget_s=60, out=str(tmp_path / "s"))
    d = run_sweep(cfg, progress=False)
    with pytest.raises(ValueError, match="verify needs real replicates"):
        run_verify(str(synthetic_surrogate_dir), [str(d)], out=str(tmp_path / "v"), sim_seeds=5, progress=False)


# ----------------------------------------------------------------------------- calibration vs verification
def test_store_roles_flag_the_stores_the_time_model_was_fitted_on(synthetic_surrogate_dir, fake_real, tmp_path):
    from ohgw_bench.store import store_record
    from ohgw_bench.surrogate.model import Surrogate
    from ohgw_bench.analysis.verify import store_roles
    _, d = fake_real
    other = tmp_path / "other"
    shutil.copytree(d, other)
    reps = pd.read_parquet(other / "replicates.parquet")
    reps["wall_s"] += 1.0  # other replicates: other measured wall-clock
    reps.to_parquet(other / "replicates.parquet")
    sur = Surrogate.load(synthetic_surrogate_dir)
    sur.meta = dict(sur.meta, time_model_source="5 epochs of real sweep trials", calibration_stores=[store_record(d)])
    sur.save(tmp_path / "sur")
    roles = store_roles(Surrogate.load(tmp_path / "sur"), [str(other), str(d)])
    assert [r["role"] for r in roles["real"]] == ["verification", "calibration"]
    assert roles["real"][1]["n_replicates_in_calibration"] == 10 and roles["independent"] is False
    assert store_roles(Surrogate.load(tmp_path / "sur"), [str(other)])["independent"] is True
    # an artifact whose time model came from real sweeps it does not name: cannot tell
    js = json.loads((tmp_path / "sur" / "surrogate.json").read_text())
    del js["meta"]["calibration_stores"], js["content_sha256"]
    (tmp_path / "sur" / "surrogate.json").write_text(json.dumps(js))
    roles = store_roles(Surrogate.load(tmp_path / "sur"), [str(other)])
    assert roles["real"][0]["role"] == "unknown" and roles["independent"] is None


def test_a_store_that_chose_targeted_configurations_does_not_verify(synthetic_surrogate_dir, fake_real, tmp_path):
    from ohgw_bench.store import store_record
    from ohgw_bench.surrogate.model import Surrogate
    from ohgw_bench.analysis.verify import store_roles
    _, d = fake_real
    sur = Surrogate.load(synthetic_surrogate_dir)
    sur.meta = dict(sur.meta, calibration_stores=[], targeted_stores=[store_record(d)])
    sur.save(tmp_path / "sur")
    roles = store_roles(Surrogate.load(tmp_path / "sur"), [str(d)])
    assert roles["real"][0]["role"] == "targeted collection source" and roles["independent"] is False
    assert roles["real"][0]["n_replicates_in_targeted_sources"] == 10
    assert [c["path"] for c in roles["targeted_sources"]] == [str(d)]


def test_config_level_figures_are_not_read_from_an_unchecked_json(synthetic_surrogate_dir, tmp_path):
    from ohgw_bench.surrogate.model import Surrogate
    from ohgw_bench.analysis.verify import config_level
    d = tmp_path / "sur"
    d.mkdir()
    for f in ("surrogate.npz", "surrogate.json"):  # the artifact alone: no curves to recompute from
        shutil.copy(synthetic_surrogate_dir / f, d / f)
    sur = Surrogate.load(d)
    sur.meta = dict(sur.meta, fidelity_heldout={"scheme": "5-fold", "final_val_spearman": 0.5, "n_runs": 1,
                                                "n_configs": 1})
    sur.save(d)
    assert config_level(Surrogate.load(d), d, None)["final_val_spearman"] == 0.5  # covered by the checksum
    js = json.loads((d / "surrogate.json").read_text())
    del js["content_sha256"]  # as written before the checksum covered surrogate.json
    js["meta"]["fidelity_heldout"]["final_val_spearman"] = 0.99
    (d / "surrogate.json").write_text(json.dumps(js))
    assert config_level(Surrogate.load(d), d, None) is None


# ----------------------------------------------------------------------------- merging real stores
def _store(d, name="a", task="cifar10-mini", budget_s=60, variants=None, seeds=(0,), backend="real", **cfg):
    d.mkdir(parents=True)
    variants = variants or {"baseline": "none"}
    rows = [{"scheduler": "asha", "variant": v, "seed": s, "trial_id": 0, "epoch": 1, "val_acc": 0.3,
             "elapsed_s": 5.0} for v in variants for s in seeds]
    pd.DataFrame(rows).to_parquet(d / "results.parquet")
    pd.DataFrame([{k: r[k] for k in ("scheduler", "variant", "seed")} | {"wall_s": 60.0 + r["seed"], "n_results": 1}
                  for r in rows]).to_parquet(d / "replicates.parquet")
    c = {**dict(name=name, task=task, backend=backend, schedulers=["asha"], variants=variants, budget_s=budget_s,
                n_workers=2, max_trials=None, tuner_sleep_time=0.5), **cfg}
    (d / "config.yaml").write_text(yaml.safe_dump(c))
    return str(d)


def test_load_real_merges_variants_and_seeds(tmp_path):
    from ohgw_bench.analysis.verify import load_real
    a = _store(tmp_path / "a", seeds=(0, 1))
    b = _store(tmp_path / "b", variants={"ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw"}, seeds=(0, 1, 2))
    c = _store(tmp_path / "c", seeds=(2,))
    real, reps, cfg = load_real([a, b, c])
    assert sorted(cfg["variants"]) == ["baseline", "ohgw-1step"] and len(reps) == 6 and len(real) == 6
    assert sorted(reps[reps.variant == "baseline"]["seed"]) == [0, 1, 2]


@pytest.mark.parametrize("other,match", [
    (dict(budget_s=90), r"has budget_s=90, the first store has 60"),
    (dict(task="cifar10-smoke"), r"has task='cifar10-smoke'"),
    (dict(tuner_sleep_time=5.0), r"has tuner_sleep_time=5.0"),
    (dict(variants={"baseline": "random:eta=1e-3"}, seeds=(5,)), r"has variants.baseline='random:eta=1e-3', the first "
                                                                  r"store has 'none'"),
    (dict(seeds=(1,)), r"the same \(scheduler, variant, seed\) replicate appears twice"),
    (dict(backend="surrogate"), r"is a 'surrogate' sweep; verify needs real replicates"),
])
def test_load_real_refuses_stores_that_do_not_merge(tmp_path, other, match):
    from ohgw_bench.analysis.verify import load_real
    a = _store(tmp_path / "a", seeds=(0, 1))
    b = _store(tmp_path / "b", **{"seeds": (7,), **other})
    with pytest.raises(ValueError, match=match):
        load_real([a, b])


def _metrics(vals: dict, seeds=None) -> pd.DataFrame:
    rows = []
    for v, xs in vals.items():
        for i, x in enumerate(xs):
            rows.append({"scheduler": "asha", "variant": v, "seed": (seeds or range(len(xs)))[i], "t_tau_s": float(x)})
    return pd.DataFrame(rows)


def test_ranking_consistency_resolved_and_unresolved():
    rng = np.random.default_rng(1)
    keys = ["asha/a", "asha/b"]
    # real: a clearly faster than b (resolved) -> the surrogate must give the same sign
    real = _metrics({"a": 50 + rng.normal(0, 1, 12), "b": 80 + rng.normal(0, 1, 12)})
    same = _metrics({"a": 60 + rng.normal(0, 1, 200), "b": 70 + rng.normal(0, 1, 200)})
    flipped = _metrics({"a": 70 + rng.normal(0, 1, 200), "b": 60 + rng.normal(0, 1, 200)})
    r = ranking_consistency(real, same, keys)
    assert r["pairs"][0]["resolved_by_real"] and r["pairs"][0]["paired"] and r["agrees"] is True
    assert ranking_consistency(real, flipped, keys)["agrees"] is False
    # real: no resolved difference -> the surrogate's difference must lie inside the real CI
    noisy = _metrics({"a": 60 + rng.normal(0, 10, 12), "b": 60 + rng.normal(0, 10, 12)})
    r2 = ranking_consistency(noisy, same, keys)
    lo, hi = r2["pairs"][0]["ci95_real"]
    assert not r2["pairs"][0]["resolved_by_real"] and lo < -1 and hi > 1
    assert ranking_consistency(noisy, _metrics({"a": 60 + rng.normal(0, 0.1, 200), "b": 60 + rng.normal(0, 0.1, 200)}),
                               keys)["agrees"] is True  # a surrogate difference of ~0 lies inside the real CI
    far = _metrics({"a": 0 + rng.normal(0, 1, 200), "b": 100 + rng.normal(0, 1, 200)})
    assert ranking_consistency(noisy, far, keys)["agrees"] is False
    # different seed sets -> unpaired bootstrap
    unp = _metrics({"a": [50, 51, 52], "b": [80, 81, 82]}, seeds=None)
    unp.loc[unp.variant == "b", "seed"] += 10
    assert ranking_consistency(unp, same, keys)["pairs"][0]["paired"] is False


def test_median_check_places_the_simulated_km_median_against_a_seed_bootstrap_ci():
    from ohgw_bench.analysis.verify import median_check
    real = pd.DataFrame({"t_tau_s": np.arange(10.0, 110.0, 10.0), "censored": False})   # median 50 (KM: 50)
    near = pd.DataFrame({"t_tau_s": np.linspace(12.0, 100.0, 200), "censored": False})
    far = near.assign(t_tau_s=near["t_tau_s"] + 200.0)
    m = median_check(real, near, np.random.default_rng(0))
    assert m["km_median_real"] == 50.0 and m["median_in_real_ci"]
    lo, hi = m["km_median_real_ci"]
    # a resample's KM median is one of the ten values; the CI cannot reach the extremes of 10 draws
    assert 10.0 < lo <= 50.0 <= hi < 100.0
    assert not median_check(real, far, np.random.default_rng(0))["median_in_real_ci"]
    # half or more censored at the budget: the median is not reached, in the real and in the simulated arm
    cens = pd.DataFrame({"t_tau_s": [30.0, 40.0, 120.0, 120.0, 120.0, 120.0], "censored": [False, False] + [True] * 4})
    sim_cens = pd.DataFrame({"t_tau_s": [120.0] * 50, "censored": True})
    mc = median_check(cens, sim_cens, np.random.default_rng(0))
    assert mc["km_median_real"] == float("inf") and mc["km_median_real_ci"][1] == float("inf")
    assert mc["median_in_real_ci"]


def test_clock_figures_per_replicate():
    from ohgw_bench.analysis.verify import clock_figures
    # seed 0: trial 0 runs epochs 1-3 (epoch time 2 s), trial 1 epoch 1 (4 s); seed 1: one trial, one epoch
    res = pd.DataFrame({"scheduler": "asha", "variant": "baseline",
                        "seed": [0, 0, 0, 0, 1], "trial_id": [0, 0, 0, 1, 0], "epoch": [1, 2, 3, 1, 1],
                        "elapsed_s": [5.0, 7.0, 9.0, 11.0, 6.0], "epoch_time": [2.0, 2.0, 2.0, 4.0, 3.0],
                        "val_acc": [0.1, 0.2, 0.25, 0.3, 0.15]})
    c = clock_figures(res).set_index("seed")
    assert c.loc[0, "trials"] == 2 and c.loc[0, "epochs"] == 4 and c.loc[0, "epoch_time_s"] == 2.0
    assert c.loc[0, "top_rung"] == 3 and c.loc[0, "t_first_top_rung_s"] == 9.0 and c.loc[0, "final_best_val"] == 0.3
    assert c.loc[1, "trials"] == 1 and c.loc[1, "t_first_top_rung_s"] == 6.0


def test_rank_consistency_reads_a_replicates_order_from_epoch_1_to_3():
    from ohgw_bench.analysis.verify import rank_consistency
    acc1 = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    rows = [{"trial_id": t, "epoch": e, "val_acc": a + (e == 3) * d}
            for t, (a, d) in enumerate(zip(acc1, [0.0, 0.0, 0.0, 0.0, 0.0])) for e in (1, 2, 3)]
    same = pd.DataFrame(rows)
    assert rank_consistency(same) == pytest.approx(1.0)
    rev = same.copy()
    rev.loc[rev.epoch == 3, "val_acc"] = 1.0 - rev.loc[rev.epoch == 3, "val_acc"]
    assert rank_consistency(rev) == pytest.approx(-1.0)
    # trials stopped at epoch 1 do not count; fewer than four at both epochs: undefined
    assert np.isnan(rank_consistency(same[(same.trial_id < 3) | (same.epoch == 1)]))


def _bench(name):
    import importlib.util
    from pathlib import Path
    p = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_band_null_rate_rejects_shifted_real_curves_only(synthetic_surrogate_dir, fake_real, tmp_path, monkeypatch):
    """benchmarks/band_null_rate.py: simulated stand-ins for the real replicates give the band check's
    false-failure rate; the Holm-adjusted test rejects real curves shifted down, not the surrogate's own."""
    monkeypatch.setenv("OHGW_WORKERS", "1")
    bench = _bench("band_null_rate")
    root, d = fake_real
    shifted = tmp_path / "shifted"
    shutil.copytree(d, shifted)
    r = pd.read_parquet(shifted / "results.parquet")
    r["val_acc"] -= 0.08
    r.to_parquet(shifted / "results.parquet")
    out = {}
    for label, real in (("self", d), ("shifted", shifted)):
        res = _verify(synthetic_surrogate_dir, [real], root)
        assert bench.main([str(root / "v"), "--draws", "60"]) == 0
        js = json.loads((root / "v" / "band-null.json").read_text())
        assert [v["variant"] for v in js["variants"]] == res["hpo_level"]["checked_variants"]
        for v in js["variants"]:
            assert v["real_band_share"] == res["hpo_level"]["per_variant"][v["variant"]]["band_share"]
            assert 0.0 <= v["false_fail_rate"] <= 1.0 and v["p_holm"] >= v["p_share_le_real"] >= 1 / 61
        out[label] = js
    assert out["self"]["rejected_holm_0.05"] == []
    assert out["shifted"]["rejected_holm_0.05"] == ["asha/baseline", "asha/ohgw-1step"]
    assert (root / "v" / "band-null.md").read_text().count("| asha/") == 2


def _epoch_time_store(d, sur, factor, runner, seed):
    """A store whose epochs take exactly ``factor`` × the surrogate's time model (epoch 1 + 5 s)."""
    from ohgw_bench import space
    from ohgw_bench.space import PSI_KEYS
    rng = np.random.default_rng(seed)
    U = rng.random((40, 5))
    rows = []
    for u, lt in zip(U, sur.epoch_log_time(U)):
        psi = space.from_unit(u)
        for e in (1, 2, 3):
            rows.append({**{f"xp_{k}": psi[k] for k in PSI_KEYS}, "epoch": e, "ws_cost_s": 0.0,
                         "epoch_time": float(np.exp(lt)) * factor + (5.0 if e == 1 else 0.0)})
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(d / "results.parquet")
    (d / "config.yaml").write_text(yaml.safe_dump({"runner": runner}))
    return d


def test_clock_matched_copy_scales_only_the_runner_epoch_time(synthetic_surrogate_dir, tmp_path):
    """benchmarks/verify_clock_matched.py: each store's epoch-time scale against the time model, and an
    artifact copy whose runner clock is scaled by the pooled one (model arrays untouched)."""
    from ohgw_bench.surrogate.model import Surrogate
    bench = _bench("verify_clock_matched")
    sur = Surrogate.load(synthetic_surrogate_dir)
    a = _epoch_time_store(tmp_path / "a", sur, 1.3, "local", 0)
    b = _epoch_time_store(tmp_path / "b", sur, 1.1, "local", 1)
    runner, scales, pooled = bench.store_scales(sur, [str(a), str(b)])
    assert runner == "local" and scales["scale"].tolist() == pytest.approx([1.3, 1.1])
    assert 1.1 <= pooled <= 1.3
    copy = bench.matched_copy(synthetic_surrogate_dir, tmp_path / "copy", runner, pooled)
    again = Surrogate.load(tmp_path / "copy")   # checksums hold
    assert again.meta["epoch_time_scale_by_runner"]["local"] == pytest.approx(pooled)
    orig_doc = json.loads((synthetic_surrogate_dir / "surrogate.json").read_text())
    copy_doc = json.loads((tmp_path / "copy" / "surrogate.json").read_text())
    assert copy_doc["npz_sha256"] == orig_doc["npz_sha256"] and copy.model_checksum != sur.model_checksum
    U = np.random.default_rng(2).random((5, 5))
    assert again.for_runner("local").epoch_log_time(U) - sur.epoch_log_time(U) == pytest.approx(np.log(pooled))
    _, s2, _ = bench.store_scales(again, [str(a)])
    assert s2["scale"].iloc[0] == pytest.approx(1.3 / pooled)
    c = _epoch_time_store(tmp_path / "c", sur, 1.0, "persistent", 3)
    with pytest.raises(SystemExit, match="different trial runners"):
        bench.store_scales(sur, [str(a), str(c)])
