"""The results store across invocations: what --resume may reuse (same config, surrogate checksum and
code revision), provenance per finished unit, replicates that must not count as finished, and
finished chunks that a failing chunk must not take down with it."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ohgw_bench.config import SweepConfig
from ohgw_bench.surrogate.model import Surrogate
from ohgw_bench.sweeps.backends import simulated as simulate
from ohgw_bench.sweeps.replicate import final_status as _final_status
from ohgw_bench.sweeps.sweep import run_sweep

VARIANTS = {"baseline": "none", "ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw"}


def sur_cfg(sur_dir, out, **kw):
    base = dict(name="t", task="cifar10-mini", backend="surrogate", surrogate=str(sur_dir), schedulers=["asha"],
                variants={"baseline": "none"}, seeds="0:2", n_workers=2, budget_s=40, out=str(out))
    base.update(kw)
    return SweepConfig(**base)


@pytest.fixture()
def own_surrogate(synthetic_surrogate_dir, tmp_path):
    d = tmp_path / "sur"
    shutil.copytree(synthetic_surrogate_dir, d)
    return d


@pytest.fixture()
def one_worker(monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")


# ----------------------------------------------------------------------------- what resume may reuse
def test_resume_after_refit_refuses_old_simulations(own_surrogate, tmp_path, one_worker):
    cfg = sur_cfg(own_surrogate, tmp_path / "r", seeds="0:1")
    run_sweep(cfg, progress=False)
    sur = Surrogate.load(own_surrogate)
    sur.startup_s += 5.0  # a refit in place: same directory, same config, other model
    sur.save(own_surrogate)
    with pytest.raises(ValueError, match=r"--resume: unit 'asha__baseline__s0' .*surrogate_sha256="):
        run_sweep(cfg, resume=True, progress=False)


def test_resume_reuses_simulations_when_only_the_fidelity_report_changed(own_surrogate, tmp_path, one_worker):
    """Refitting the report of an unchanged model (meta: fidelity figures) keeps simulations valid."""
    cfg = sur_cfg(own_surrogate, tmp_path / "r", seeds="0:1")
    run_sweep(cfg, progress=False)
    sur = Surrogate.load(own_surrogate)
    sur.meta = dict(sur.meta, fidelity_heldout={"final_val_spearman": 0.5})
    sur.save(own_surrogate)
    run_sweep(cfg, resume=True, progress=False)   # no error: same model


def test_stale_units_are_redone_where_the_store_is_a_cache(own_surrogate, tmp_path, one_worker, capsys):
    cfg = sur_cfg(own_surrogate, tmp_path / "r", seeds="0:1")
    old = pd.read_parquet(run_sweep(cfg, progress=False) / "results.parquet")
    sur = Surrogate.load(own_surrogate)
    sur.startup_s += 5.0
    sur.save(own_surrogate)
    new = pd.read_parquet(run_sweep(cfg, resume=True, progress=False, on_stale="redo") / "results.parquet")
    assert "redone" in capsys.readouterr().err
    fresh = pd.read_parquet(run_sweep(sur_cfg(own_surrogate, tmp_path / "f", seeds="0:1"), progress=False)
                            / "results.parquet")
    pd.testing.assert_frame_equal(new, fresh)
    assert not old["elapsed_s"].equals(new["elapsed_s"])


def test_resume_refuses_units_of_another_code_revision(own_surrogate, tmp_path, one_worker, monkeypatch):
    from ohgw_bench import provenance
    cfg = sur_cfg(own_surrogate, tmp_path / "r", seeds="0:1")
    run_sweep(cfg, progress=False)
    monkeypatch.setattr(provenance, "code_digest", lambda: "another-code" + "0" * 52)
    with pytest.raises(ValueError, match=r"code_sha256=.*this code is 'another-code'"):
        run_sweep(cfg, resume=True, progress=False)


def test_resume_with_another_config_names_the_key(own_surrogate, tmp_path, one_worker):
    run_sweep(sur_cfg(own_surrogate, tmp_path / "r", seeds="0:1"), progress=False)
    with pytest.raises(ValueError, match=r"config key budget_s=50\.0 \(the store has 40\.0\)"):
        run_sweep(sur_cfg(own_surrogate, tmp_path / "r", seeds="0:1", budget_s=50), resume=True, progress=False)
    with pytest.raises(ValueError, match=r"config key report\.tau_quantile=0\.5 \(the store has 0\.25\)"):
        run_sweep(sur_cfg(own_surrogate, tmp_path / "r", seeds="0:1", report={"tau_quantile": 0.5}), resume=True,
                  progress=False)


def test_provenance_is_kept_per_unit(own_surrogate, tmp_path, one_worker, monkeypatch):
    from ohgw_bench import provenance
    monkeypatch.setenv("OHGW_CHUNK", "1")
    out = tmp_path / "r"
    run_sweep(sur_cfg(own_surrogate, out, seeds="0:2", schedulers=["asha"]), progress=False)
    (out / "replicates" / "asha__baseline__s1.meta.parquet").unlink()  # as if killed before seed 1 finished
    first = json.loads((out / "replicates" / "asha__baseline__s0.provenance.json").read_text())
    assert first["surrogate_sha256"] == Surrogate.load(own_surrogate).model_checksum
    # a later invocation on another host adds its own units and leaves the first unit's record alone
    monkeypatch.setattr(provenance, "collect", lambda device=None: {"host": "elsewhere", "versions": {}})
    run_sweep(sur_cfg(own_surrogate, out, seeds="0:2", schedulers=["asha"]), resume=True, progress=False)
    units = json.loads((out / "provenance.json").read_text())["units"]
    assert units["asha__baseline__s0"]["host"] == first["host"] != "elsewhere"
    assert units["asha__baseline__s1"]["host"] == "elsewhere"
    assert json.loads((out / "provenance.json").read_text())["host"] == sorted([json.dumps(first["host"]),
                                                                                 json.dumps("elsewhere")])


# ----------------------------------------------------------------------------- what counts as finished
def _real_rows(status):
    return pd.DataFrame({"trial_id": [0, 0, 1], "epoch": [1, 2, 1], "val_acc": [0.2, 0.3, 0.25],
                         "elapsed_s": [5.0, 8.0, 9.0], "status": status})


def test_real_replicate_whose_trials_all_failed_is_not_stored(tmp_path, monkeypatch):
    from ohgw_bench.sweeps import sweep

    def fake(cfg, scheduler, variant, seed, workdir, pool=None):
        if seed == 1:
            return _real_rows(["failed"] * 3), {"wall_s": 10.0, "n_trials": 2}
        return _real_rows(["completed", "completed", "stopped"]), {"wall_s": 10.0, "n_trials": 2}

    monkeypatch.setattr(sweep, "run_real_replicate", fake)
    cfg = SweepConfig(name="r", task="cifar10-mini", backend="real", runner="local", variants={"baseline": "none"},
                      seeds="0:3", budget_s=30, out=str(tmp_path / "r"))
    with pytest.raises(RuntimeError, match=r"asha__baseline__s1: all 2 trials that reported failed"):
        run_sweep(cfg, progress=False)
    reps = pd.read_parquet(tmp_path / "r" / "replicates.parquet")
    assert sorted(reps["seed"]) == [0]  # seed 0 stored; seed 1 not; seed 2 never ran
    monkeypatch.setattr(sweep, "run_real_replicate", lambda *a, **k: (_real_rows(["stopped"] * 3), {"wall_s": 1.0}))
    run_sweep(cfg, resume=True, progress=False)
    assert sorted(pd.read_parquet(tmp_path / "r" / "replicates.parquet")["seed"]) == [0, 1, 2]


def test_real_replicate_without_results_is_not_stored(tmp_path, monkeypatch):
    from ohgw_bench.sweeps import sweep
    monkeypatch.setattr(sweep, "run_real_replicate",
                        lambda *a, **k: (pd.DataFrame(columns=["trial_id", "epoch", "val_acc", "status"]),
                                         {"wall_s": 30.0, "n_trials": 0}))
    cfg = SweepConfig(name="r", task="cifar10-mini", backend="real", runner="local", variants={"baseline": "none"},
                      seeds="0:1", budget_s=30, out=str(tmp_path / "r"))
    with pytest.raises(RuntimeError, match="no trial reported a result"):
        run_sweep(cfg, progress=False)
    assert len(pd.read_parquet(tmp_path / "r" / "replicates.parquet")) == 0


def _chunk_failing_on_seed_1(cfg_json, chunk):
    """run_chunk, except that a chunk holding seed 1 fails at once (module level: runs in pool workers)."""
    if any(seed == 1 for _, _, seed in chunk):
        raise RuntimeError("chunk with seed 1 failed")
    return _REAL_RUN_CHUNK(cfg_json, chunk)


_REAL_RUN_CHUNK = simulate.run_chunk


def test_failing_chunk_in_process_pool_keeps_the_finished_ones(own_surrogate, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "2")
    monkeypatch.setenv("OHGW_CHUNK", "1")
    monkeypatch.setattr(simulate, "run_chunk", _chunk_failing_on_seed_1)
    cfg = sur_cfg(own_surrogate, tmp_path / "p", seeds="0:4")
    with pytest.raises(RuntimeError, match="seed 1 failed"):
        run_sweep(cfg, progress=False)
    reps = pd.read_parquet(tmp_path / "p" / "replicates.parquet")
    assert sorted(reps["seed"]) == [0, 2, 3]


# ----------------------------------------------------------------------------- final status of a trial
def test_final_status_of_each_kind_of_trial():
    rows = pd.DataFrame({"trial_id": [0, 0, 1, 2, 3, 4, 5, 6],
                         "epoch": [1, 27, 3, 1, 3, 9, 5, 27],
                         "diverged": [0, 0, 0, 0, 0, 0, 1, 0]})
    decisions = {0: "CONTINUE", 1: "PAUSE", 2: "STOP", 3: "CONTINUE", 4: "PAUSE", 5: "CONTINUE", 6: "STOP"}
    backend = {4: "Failed", 6: "Failed"}
    assert _final_status(rows, decisions, backend, 27) == {
        0: "completed",   # reached the full budget
        1: "paused",      # waiting at a rung when the replicate ended
        2: "stopped",
        3: "running",     # cut by the replicate's budget
        4: "failed",      # the backend's word beats the scheduler's last decision
        5: "diverged",
        6: "completed"}   # finished the budget before its process failed


def test_final_status_without_a_divergence_column():
    rows = pd.DataFrame({"trial_id": [0, 1], "epoch": [27, 2]})
    assert _final_status(rows, {1: "PAUSE"}, {}, 27) == {0: "completed", 1: "paused"}
