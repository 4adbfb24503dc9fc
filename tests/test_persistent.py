"""Persistent trial workers (persistent.py): same metrics as LocalBackend, pause/resume across workers
bit for bit, a killed worker fails its trial and is replaced, a stop writes nothing more, and a short
real ASHA replicate promotes trials. Real trials of the smoke task on synthetic JPEGs."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ohgw_bench.config import SweepConfig, load_sweep
from ohgw_bench.sweeps.backends.real import ENTRY, run_real_replicate

TASK = "cifar10-smoke"
PSI = {"log10_lr": -1.0, "log10_wd": -3.3, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}
# keys whose values differ between any two runs (clocks); everything else must match bit for bit
TIMING = {"epoch_time", "train_time", "cum_time", "train_start_ts", "plain_step_s", "ws_cost_s",
          "st_worker_time", "st_worker_timestamp", "st_worker_iter"}


@pytest.fixture(scope="module")
def smoke_env(tiny_imagefolder, tmp_path_factory):
    """Environment shared by the pool's worker processes (they inherit it when spawned)."""
    old = {k: os.environ.get(k) for k in ("OHGW_CACHE", "OHGW_DATA")}
    os.environ["OHGW_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["OHGW_DATA"] = str(tiny_imagefolder)
    yield str(tiny_imagefolder)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def pool(smoke_env):
    from ohgw_bench.sweeps.backends.persistent import WorkerPool
    p = WorkerPool(2, task=TASK, data_root=smoke_env, threads=1)
    p.wait_ready(timeout=300)
    yield p
    p.close()


def config(data_root, epochs, trial_seed=7, warm_start="none"):
    return dict(PSI, task=TASK, epochs=epochs, warm_start=warm_start, replicate_seed=0, torch_threads=1,
                data_root=data_root, trial_seed=trial_seed)


def backend_for(pool, path: Path, **kw):
    from ohgw_bench.sweeps.backends.persistent import PersistentBackend
    b = PersistentBackend(entry_point=ENTRY, pool=pool, **kw)
    b.set_path(str(path))
    return b


def wait_status(backend, trial_id, want=("Completed", "Failed"), timeout=120.0) -> str:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st, _ = backend.fetch_status_results([trial_id])
        if str(st[trial_id][1]) in want:
            return str(st[trial_id][1])
        time.sleep(0.01)
    raise AssertionError(f"trial {trial_id} not in {want} after {timeout} s")


def metrics(backend, trial_id) -> list[dict]:
    from syne_tune.report import retrieve
    return retrieve(backend.stdout(trial_id))


def stripped(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def wait_lines(backend, trial_id, n, timeout=60.0):
    t0 = time.time()
    while len(metrics(backend, trial_id)) < n:
        assert time.time() - t0 < timeout, f"trial {trial_id}: fewer than {n} report lines after {timeout} s"
        time.sleep(0.002)


# ----------------------------------------------------------------------------------------------- tests
def test_worker_segment_equals_localbackend_segment(pool, smoke_env, tmp_path):
    from syne_tune.backend import LocalBackend
    cfg = config(smoke_env, epochs=2, warm_start="hypergradient:eta=1e-3,steps=1,rule=raw")
    local = LocalBackend(entry_point=ENTRY, rotate_gpus=False)
    local.set_path(str(tmp_path / "local"))
    local.start_trial(dict(cfg))
    pers = backend_for(pool, tmp_path / "persistent")
    pers.start_trial(dict(cfg))
    assert wait_status(pers, 0) == "Completed"
    assert wait_status(local, 0) == "Completed", "".join(local.stderr(0))[-2000:]
    a, b = metrics(local, 0), metrics(pers, 0)
    assert [r["epoch"] for r in a] == [1, 2] and stripped(a) == stripped(b)
    assert {p.name for p in (tmp_path / "persistent" / "0").iterdir()} == \
        {p.name for p in (tmp_path / "local" / "0").iterdir()}  # config.json, std.out/err, end, checkpoints


def test_pause_at_epoch_1_resume_to_3_on_other_worker_is_bit_identical(pool, smoke_env, tmp_path):
    b = backend_for(pool, tmp_path / "r", delete_checkpoints=True)
    ws = "hypergradient:eta=1e-3,steps=1,rule=raw"
    b.start_trial(config(smoke_env, epochs=1, trial_seed=11, warm_start=ws))          # trial 0, one epoch
    assert wait_status(b, 0) == "Completed"
    first = b.trial_subprocess[0]
    b.pause_trial(0)
    b.start_trial(config(smoke_env, epochs=3, trial_seed=99))                          # trial 1 takes a worker
    time.sleep(0.05)
    b.resume_trial(0, new_config=config(smoke_env, epochs=3, trial_seed=11, warm_start=ws))
    b.start_trial(config(smoke_env, epochs=3, trial_seed=11, warm_start=ws))          # trial 2: uninterrupted
    for t in (0, 1, 2):
        assert wait_status(b, t) == "Completed", "".join(b.stderr(t))[-2000:]
    second = b.trial_subprocess[0]
    assert first.worker.slot != second.worker.slot  # the resume ran on the other worker
    resumed, whole = metrics(b, 0), metrics(b, 2)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert stripped(resumed) == stripped(whole)


def test_stop_mid_segment_leaves_no_stale_line_and_no_checkpoint(pool, smoke_env, tmp_path):
    b = backend_for(pool, tmp_path / "s", delete_checkpoints=True)
    b.start_trial(config(smoke_env, epochs=3, trial_seed=5))
    wait_lines(b, 0, 1)        # the worker is now in epoch 2
    b.stop_trial(0)            # touches `stop`, sets the stop flag under the commit lock, deletes checkpoints
    n = len(metrics(b, 0))
    pool.drain(timeout=60)
    time.sleep(0.2)
    assert 1 <= n < 3 and len(metrics(b, 0)) == n  # nothing written after the stop
    assert not (tmp_path / "s" / "0" / "checkpoints").exists()
    assert b.trial_subprocess[0].poll() is not None
    st, _ = b.fetch_status_results([0])
    assert str(st[0][1]) == "Stopped"


def test_queued_segment_waits_fifo_and_cancel_before_dispatch(pool, smoke_env, tmp_path):
    b = backend_for(pool, tmp_path / "q")
    for t in range(3):
        b.start_trial(config(smoke_env, epochs=2, trial_seed=t))
    segs = [b.trial_subprocess[t] for t in range(3)]
    assert segs[2].worker is None  # both workers busy: the third waits
    b.stop_trial(2)
    assert segs[2].poll() is not None and segs[2].worker is None
    for t in (0, 1):
        assert wait_status(b, t) == "Completed"
    assert b.stdout(2) == []  # never ran


def test_kill9_mid_epoch_fails_the_trial_and_replaces_the_worker(pool, smoke_env, tmp_path):
    b = backend_for(pool, tmp_path / "k")
    b.start_trial(config(smoke_env, epochs=3, trial_seed=3))
    wait_lines(b, 0, 1)
    seg = b.trial_subprocess[0]
    victim = seg.worker.proc.pid
    os.kill(victim, signal.SIGKILL)
    assert wait_status(b, 0) == "Failed"
    assert "died" in "".join(b.stderr(0))
    pool.wait_ready(timeout=300)
    assert victim not in pool.pids() and pool.replaced >= 1
    b.start_trial(config(smoke_env, epochs=1, trial_seed=4))  # the pool goes on
    assert wait_status(b, 1) == "Completed"


def test_runner_config_key(tmp_path):
    c = SweepConfig(name="x", task=TASK, budget_s=10)
    assert c.runner is None and c.real_runner == "persistent"
    assert SweepConfig(name="x", task=TASK, budget_s=10, runner="local").real_runner == "local"
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntask: cifar10-smoke\nbudget_s: 10\nrunner: docker\n")
    with pytest.raises(ValueError, match=r"'runner'.*'docker'"):
        load_sweep(p)


def test_backend_state_holds_no_pool_or_process_handles(pool, smoke_env, tmp_path):
    import pickle
    b = backend_for(pool, tmp_path / "d")
    b.start_trial(config(smoke_env, epochs=1))
    state = b.__getstate__()   # what Tuner.save's dill dump sees
    assert state["pool"] is None and state["trial_subprocess"] == {}
    # everything else pickles (Syne Tune's own defaultdict with a lambda needs dill, as for LocalBackend)
    pickle.dumps({k: v for k, v in state.items() if k != "_last_metric_seen_index"})
    assert b.pool is pool and wait_status(b, 0) == "Completed"


def _replicate_cfg(smoke_env, tmp_path, budget):
    return SweepConfig(name="p", task=TASK, backend="real", schedulers=["asha"], variants={"baseline": "none"},
                       seeds="0:1", n_workers=2, budget_s=budget, data_root=smoke_env, tuner_sleep_time=0.5,
                       out=str(tmp_path / "out"))


def test_short_asha_replicate_with_persistent_runner_promotes(pool, smoke_env, tmp_path):
    cfg = _replicate_cfg(smoke_env, tmp_path, budget=8)
    df, meta = run_real_replicate(cfg, "asha", "baseline", 0, tmp_path / "w", pool=pool)
    assert meta["runner"] == "persistent"
    seg_starts = df.groupby("trial_id")["segment_start_s"].nunique()
    promoted = seg_starts[seg_starts > 1].index
    assert len(promoted) >= 1, df[["trial_id", "epoch", "segment_start_s"]]
    top = df[df.trial_id.isin(promoted)]
    assert (top.groupby("trial_id")["epoch"].apply(lambda e: sorted(e) == list(range(1, len(e) + 1)))).all()
    assert df["epoch"].max() == 3
    assert not df.duplicated(["trial_id", "epoch"]).any()
    # every call the Tuner made into the scheduler is timed, with the results it had seen by then
    calls = pd.DataFrame(meta["decisions"], columns=["call", "results_seen", "cpu_s", "wall_s"])
    assert (calls["call"] == "suggest").sum() >= df["trial_id"].nunique()
    assert (calls["call"] == "on_trial_result").sum() == len(df)
    assert calls["results_seen"].is_monotonic_increasing
    assert calls.loc[calls["call"] == "on_trial_result", "results_seen"].tolist() == list(range(len(df)))
    assert (calls["wall_s"] >= 0).all() and (calls["cpu_s"] >= 0).all()
    # and stored beside the unit's rows, which a resumed sweep deletes with it
    from ohgw_bench.sweeps.replicate import finished_units, unit_files, write_units
    write_units(tmp_path / "reps", cfg, [(("asha", "baseline", 0), df, meta)])
    (rows, m), = finished_units(tmp_path / "reps")
    stored = pd.read_parquet(unit_files(m)[3])
    assert len(stored) == len(calls) and set(stored["scheduler"]) == {"asha"} and set(stored["seed"]) == {0}


@pytest.mark.slow
def test_replicate_survives_a_killed_worker(pool, smoke_env, tmp_path):
    """kill -9 of the worker running a resumed segment: that trial ends Failed, the pool replaces the
    worker, and the replicate runs to its budget."""
    cfg = _replicate_cfg(smoke_env, tmp_path, budget=20)
    killed = {}

    def killer():
        from syne_tune.report import retrieve
        t0 = time.time()
        while not killed and time.time() - t0 < 18:
            with pool._lock:
                busy = [w for w in pool._workers if w.state == "busy" and w.seg is not None]
            for w in busy:
                seg = w.seg
                if seg is None or seg.cancelled:
                    continue
                lines = retrieve(Path(seg.out_path).read_text().splitlines())
                if lines and "--epochs 3".split() == seg.argv[seg.argv.index("--epochs"):][:2]:
                    os.kill(w.proc.pid, signal.SIGKILL)
                    killed.update(trial=seg.trial_id, seg=seg, pid=w.proc.pid)
                    return
            time.sleep(0.005)

    replaced = pool.replaced
    th = threading.Thread(target=killer)
    th.start()
    df, meta = run_real_replicate(cfg, "asha", "baseline", 0, tmp_path / "w", pool=pool)
    th.join()
    assert killed, "no resumed segment to kill"
    assert pool.replaced == replaced + 1 and killed["pid"] not in pool.pids()
    tid = killed["trial"]
    if killed["seg"].rc not in (None, 0) and not df[df.trial_id == tid].empty:
        assert set(df.loc[df.trial_id == tid, "status"]) <= {"failed", "completed"}
    assert df["elapsed_s"].max() > 10  # it went on after the kill
    assert df.loc[df.elapsed_s > df.elapsed_s.max() - 5, "trial_id"].nunique() >= 1


# ------------------------------------------------------------------ per-runner start-up calibration
def _fake_store(d: Path, runner: str | None, overhead: float):
    import json

    import pandas as pd
    d.mkdir(parents=True)
    rows = [dict(scheduler="asha", variant="baseline", seed=0, trial_id=t, epoch=1, segment_start_s=10.0 * t,
                 epoch_time=2.0, elapsed_s=10.0 * t + 2.0 + overhead) for t in range(5)]
    pd.DataFrame(rows).to_parquet(d / "results.parquet")
    if runner is not None:
        (d / "provenance.json").write_text(json.dumps({"backend": "real", "runner": runner}))


def test_startup_calibration_per_runner(tmp_path):
    from ohgw_bench.surrogate.overhead import runner_of, startup_by_runner
    _fake_store(tmp_path / "old", None, 9.0)          # written before runners were recorded: LocalBackend
    _fake_store(tmp_path / "pers", "persistent", 0.25)
    _fake_store(tmp_path / "loc", "local", 7.0)
    assert runner_of(tmp_path / "old") == "local"
    _fake_store(tmp_path / "new", None, 0.3)
    (tmp_path / "new" / "config.yaml").write_text("name: x\nbackend: real\nrunner: null\n")
    assert runner_of(tmp_path / "new") == "persistent"  # the key unset means the default
    cal = startup_by_runner([str(tmp_path / "old"), str(tmp_path / "pers"), str(tmp_path / "loc")])
    assert list(cal) == ["local", "persistent"]
    assert cal["local"]["n"] == 10 and cal["local"]["median_s"] == pytest.approx(8.0)
    assert cal["persistent"]["median_s"] == pytest.approx(0.25)


def test_surrogate_clock_follows_the_configured_runner(synthetic_surrogate_dir, tmp_path):
    import shutil

    from ohgw_bench.surrogate.model import Surrogate
    sur = Surrogate.load(synthetic_surrogate_dir)     # no per-runner entry: its overhead is LocalBackend's
    assert sur.for_runner(None) is sur and sur.for_runner("local").startup_s == sur.startup_s
    with pytest.raises(ValueError, match=r"'runner'.*runner='persistent'"):
        sur.for_runner("persistent")
    sur.meta["startup_s_by_runner"] = {"local": 8.9, "persistent": 0.2}
    d = tmp_path / "sur"
    shutil.copytree(synthetic_surrogate_dir, d)
    sur.save(d)
    again = Surrogate.load(d)
    assert again.for_runner("persistent").startup_s == 0.2 and again.for_runner("local").startup_s == 8.9
    assert again.startup_s == sur.startup_s  # the default clock is unchanged


def test_simulated_sweep_uses_the_runner_calibration(synthetic_surrogate_dir, tmp_path, monkeypatch):
    import shutil

    import pandas as pd

    from ohgw_bench.surrogate.model import Surrogate
    from ohgw_bench.sweeps.sweep import run_sweep
    monkeypatch.setenv("OHGW_WORKERS", "1")
    d = tmp_path / "sur"
    shutil.copytree(synthetic_surrogate_dir, d)
    sur = Surrogate.load(d)
    sur.meta["startup_s_by_runner"] = {"local": sur.startup_s, "persistent": 0.0}
    sur.save(d)
    base = dict(name="t", task="cifar10-mini", backend="surrogate", surrogate=str(d), schedulers=["asha"],
                variants={"baseline": "none"}, seeds="0:1", n_workers=2, budget_s=60)
    out = {r: pd.read_parquet(run_sweep(SweepConfig(**base, runner=r, out=str(tmp_path / str(r))),
                                        progress=False) / "results.parquet") for r in (None, "local", "persistent")}
    pd.testing.assert_frame_equal(out[None], out["local"])    # an artifact's default clock is LocalBackend's
    assert len(out["persistent"]) > len(out["local"])         # no start-up cost: more epochs in the budget
