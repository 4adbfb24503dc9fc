"""Sweeps: config validation, scheduler registry, pairing, determinism and kill/resume (surrogate
backend, fast), and one real LocalBackend sweep (slow)."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ohgw_bench.config import SweepConfig, load_sweep
from ohgw_bench.space import PSI_KEYS, syne_tune_space
from ohgw_bench.store import COLUMNS
from ohgw_bench.sweeps.schedulers import SCHEDULERS, make_scheduler
from ohgw_bench.sweeps.sweep import run_sweep

VARIANTS = {"baseline": "none", "ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw"}


def sur_cfg(sur_dir, out, **kw):
    base = dict(name="t", task="cifar10-mini", backend="surrogate", surrogate=str(sur_dir), schedulers=["asha"],
                variants=VARIANTS, seeds="0:3", n_workers=2, budget_s=90, out=str(out))
    base.update(kw)
    return SweepConfig(**base)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_config_rejects_unknown_key_and_lists_valid(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "task": "cifar10-mini", "budget_s": 10, "n_wokers": 2}))
    with pytest.raises(ValueError, match=r"'n_wokers' is not known; valid keys are \[.*'n_workers'"):
        load_sweep(p)


def test_config_names_wrong_type(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "task": "cifar10-mini", "budget_s": "ten"}))
    with pytest.raises(ValueError, match="'budget_s'.*'ten'"):
        load_sweep(p)


def test_config_needs_exactly_one_budget():
    with pytest.raises(ValueError, match="exactly one of budget_s and budget_gpu_hours"):
        SweepConfig(name="x", task="cifar10-mini")
    c = SweepConfig(name="x", task="cifar10-mini", budget_gpu_hours=12, n_workers=4)
    assert c.replicate_budget_s == 12 * 3600 / 4


def test_shipped_configs_validate():
    for p in sorted(Path(__file__).parents[1].glob("configs/*.yaml")):
        if p.name.startswith("collect"):
            continue
        load_sweep(p)


def test_unknown_scheduler_lists_valid():
    with pytest.raises(ValueError, match="'hb' is not a scheduler in .*'asha'.*'pasha'.*'dyhpo'"):
        make_scheduler("hb", syne_tune_space(epochs=27), 0)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_registry_builds_every_scheduler(name):
    s = make_scheduler(name, syne_tune_space(epochs=27), 0, max_epochs=27)
    assert s.suggest(0) is not None


def test_surrogate_sweep_store_pairing_and_determinism(synthetic_surrogate_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    out1 = run_sweep(sur_cfg(synthetic_surrogate_dir, tmp_path / "a"), progress=False)
    res = pd.read_parquet(out1 / "results.parquet")
    assert set(COLUMNS) <= set(res.columns)
    assert set(res["variant"]) == set(VARIANTS) and set(res["seed"]) == {0, 1, 2}
    assert set(res["status"]) <= {"completed", "stopped", "paused", "diverged", "failed", "running"}
    # pairing: trial i of seed s samples the same x in every variant
    x = res.groupby(["variant", "seed", "trial_id"])[[f"x_{k}" for k in PSI_KEYS]].first()
    common = x.loc["baseline"].index.intersection(x.loc["ohgw-1step"].index)
    assert len(common) > 10
    pd.testing.assert_frame_equal(x.loc["baseline"].loc[common], x.loc["ohgw-1step"].loc[common])
    # the warm start moved x′ away from x only in the ohgw variant
    ohgw = res[res.variant == "ohgw-1step"]
    assert (ohgw["xp_log10_lr"] != ohgw["x_log10_lr"]).all() and ohgw["hg_log10_lr"].notna().all()
    base = res[res.variant == "baseline"]
    assert (base["xp_log10_lr"] == base["x_log10_lr"]).all()
    # determinism: another run, 2 processes and other chunks, gives byte-identical results
    monkeypatch.setenv("OHGW_WORKERS", "2")
    out2 = run_sweep(sur_cfg(synthetic_surrogate_dir, tmp_path / "b"), progress=False)
    assert sha(out1 / "results.parquet") == sha(out2 / "results.parquet")


def test_existing_results_need_resume(synthetic_surrogate_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    cfg = sur_cfg(synthetic_surrogate_dir, tmp_path / "a", seeds="0:1")
    run_sweep(cfg, progress=False)
    with pytest.raises(ValueError, match="--resume"):
        run_sweep(cfg, progress=False)
    before = sha(tmp_path / "a" / "results.parquet")
    run_sweep(cfg, resume=True, progress=False)  # nothing left to do
    assert sha(tmp_path / "a" / "results.parquet") == before


def _launch(cfg_path, *extra):
    return subprocess.Popen([sys.executable, "-m", "ohgw_bench.cli", "sweep", str(cfg_path), "--no-report",
                             "--no-progress", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _kill_after_first_unit(proc, rep_dir: Path, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if rep_dir.exists() and any(rep_dir.glob("*.meta.parquet")):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("no replicate finished in time")


def test_killed_surrogate_sweep_resumes_without_loss_or_duplicates(synthetic_surrogate_dir, tmp_path):
    cfg = sur_cfg(synthetic_surrogate_dir, tmp_path / "killed", seeds="0:6").model_dump(mode="json")
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OHGW_WORKERS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ohgw_bench.cli", "sweep", str(p), "--no-report", "--no-progress"],
                            env=dict(env, OHGW_CHUNK="2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    _kill_after_first_unit(proc, tmp_path / "killed" / "replicates")
    done_before = {f.name: sha(f) for f in (tmp_path / "killed" / "replicates").glob("*.parquet")}
    r = subprocess.run([sys.executable, "-m", "ohgw_bench.cli", "sweep", str(p), "--no-report", "--no-progress",
                        "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # finished units are untouched, and the store equals an uninterrupted sweep
    for name, h in done_before.items():
        if name.endswith(".meta.parquet"):
            assert sha(tmp_path / "killed" / "replicates" / name) == h
    fresh = run_sweep(SweepConfig(**dict(cfg, out=str(tmp_path / "fresh"))), progress=False)
    a = pd.read_parquet(tmp_path / "killed" / "results.parquet")
    b = pd.read_parquet(fresh / "results.parquet")
    assert not a.duplicated(["variant", "seed", "trial_id", "epoch", "elapsed_s"]).any()
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_real_localbackend_sweep_kill_and_resume(tiny_imagefolder, tmp_path):
    """A real sweep (Syne Tune LocalBackend, real trials) killed after its first replicate and resumed."""
    cfg = dict(name="real-smoke", task="cifar10-smoke", backend="real", schedulers=["asha"], variants=VARIANTS,
               seeds="0:2", n_workers=2, budget_s=45, data_root=str(tiny_imagefolder), out=str(tmp_path / "real"),
               tuner_sleep_time=0.2, runner="local")
    p = tmp_path / "real.yaml"
    p.write_text(yaml.safe_dump(cfg))
    proc = _launch(p)
    _kill_after_first_unit(proc, tmp_path / "real" / "replicates", timeout=600)
    first = {f.name: sha(f) for f in (tmp_path / "real" / "replicates").glob("*.parquet")}
    r = subprocess.run([sys.executable, "-m", "ohgw_bench.cli", "sweep", str(p), "--no-report", "--resume"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = pd.read_parquet(tmp_path / "real" / "results.parquet")
    reps = pd.read_parquet(tmp_path / "real" / "replicates.parquet")
    assert len(reps) == 4 and not reps.duplicated(["scheduler", "variant", "seed"]).any()
    for name, h in first.items():
        assert sha(tmp_path / "real" / "replicates" / name) == h  # nothing finished was redone
    assert not res.duplicated(["variant", "seed", "trial_id", "epoch"]).any()
    ohgw = res[res.variant == "ohgw-1step"]
    assert len(ohgw) and ohgw["hg_log10_lr"].notna().all() and (ohgw["xp_log10_lr"] != ohgw["x_log10_lr"]).all()


def test_sweep_without_a_baseline_variant_finishes_and_says_why_there_is_no_report(synthetic_surrogate_dir,
                                                                                  tmp_path):
    # variants run later against an earlier baseline: the store is complete, its report needs the other store
    cfg = sur_cfg(synthetic_surrogate_dir, tmp_path / "nobase", seeds="0:1").model_dump(mode="json")
    cfg["variants"] = {"ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw"}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "ohgw_bench.cli", "sweep", str(p), "--no-progress"],
                       env=dict(os.environ, OHGW_WORKERS="1"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no report: sweep config key 'variants' has no baseline" in r.stderr
    assert (tmp_path / "nobase" / "results.parquet").exists() and not (tmp_path / "nobase" / "report").exists()


_PASHA_EPSILON = """
import numpy as np
from ohgw_bench.space import syne_tune_space
from ohgw_bench.sweeps.schedulers import make_scheduler
out = []
for k in range(10):
    rng = np.random.default_rng(k)
    s = make_scheduler("pasha", syne_tune_space(epochs=27), 0, max_epochs=27)
    rs = s.terminator._rung_systems[0]
    for t in range(30):   # trials that reached different epochs; accuracies with ties, as on a finite val set
        n = 1 + int(rng.integers(0, 9))
        for e, v in enumerate((0.02 * np.arange(1, n + 1) + rng.normal(0, 0.03, n)).round(2), 1):
            rs._update_per_epoch_results(str(t), {"epoch": e, "val_acc": float(v)})
    rs.current_rung_idx = 2
    rs._update_epsilon()
    out.append(repr(rs.epsilon))
print(out)
"""


def test_pasha_epsilon_does_not_depend_on_the_string_hash_seed():
    """Syne Tune's PASHA iterates sets of string trial ids to estimate its ranking noise ε; with tied
    accuracies the pair orientation, hence ε, followed the per-process hash seed (the same replicate
    seed simulated differently in another process). make_scheduler fixes the order."""
    outs = set()
    for h in ("1", "2", "3", "4"):
        r = subprocess.run([sys.executable, "-c", _PASHA_EPSILON], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": h})
        assert r.returncode == 0, r.stderr
        outs.add(r.stdout)
    assert len(outs) == 1
