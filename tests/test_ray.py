"""The Ray executor on a local 2-CPU Ray: simulated sweeps give the same store as the local executor,
a chunk whose worker dies is rerun, real replicates are plumbed through Ray tasks (with a fake
replicate function), and Syne Tune's GPU rotation is confined to the GPUs Ray assigned.

The surrogate is a tiny synthetic one fitted here, in the format ``ohgw-bench collect`` writes."""
import json
import os
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from ohgw_bench import space  # noqa: E402
from ohgw_bench.config import SweepConfig  # noqa: E402
from ohgw_bench.space import PSI_KEYS  # noqa: E402
from ohgw_bench.surrogate.fit import fit_surrogate  # noqa: E402
from ohgw_bench.surrogate.model import Surrogate  # noqa: E402
from ohgw_bench.sweeps.executors import ray as ray_executor  # noqa: E402
from ohgw_bench.sweeps.executors.ray import map_chunks, run_real_replicates_ray, syne_tune_gpus  # noqa: E402
from ohgw_bench.sweeps.replicate import chunks_of, consolidate, finished, replicates, write_units  # noqa: E402
from ohgw_bench.sweeps.sweep import run_sweep  # noqa: E402

TASK, EPOCHS = "cifar10-mini", 27
VARIANTS = {"baseline": "none", "ohgw-1step": "hypergradient:eta=1e-3,steps=1,rule=raw"}


# ----------------------------------------------------------------------------- fixtures
def synthetic_collect(epochs: int = EPOCHS, n_configs: int = 12, n_repeated: int = 4, n_hg: int = 8,
                      seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """curves/hypergrads frames shaped like collect.py's: rising logistic learning curves whose level
    depends smoothly on ψ, two seeds for the first ``n_repeated`` configs, test accuracy at the rung
    milestones only, no divergence; hyper-gradients smooth in ψ plus batch noise."""
    rng = np.random.default_rng(seed)
    lo = np.array([d.low for d in space.DIMS])
    hi = np.array([d.high for d in space.DIMS])
    milestones = {1, 3, 9, epochs}
    rows = []
    for c in range(n_configs):
        u = rng.random(len(PSI_KEYS))
        psi = dict(zip(PSI_KEYS, lo + u * (hi - lo)))
        quality = 1.5 - 3.0 * (u[0] - 0.6) ** 2 - 0.5 * u[1] + 0.3 * u[2]
        for s in range(2 if c < n_repeated else 1):
            offset = rng.normal(0, 0.1)
            for e in range(1, epochs + 1):
                z = 2 * quality * np.log(e) / np.log(epochs) - 1 + offset + rng.normal(0, 0.05)
                val = 1 / (1 + np.exp(-z))
                rows.append({"config_id": c, "seed": s, **{f"psi_{k}": psi[k] for k in PSI_KEYS}, "epoch": e,
                             "val_acc": val,
                             "test_acc": val - 0.01 + rng.normal(0, 0.005) if e in milestones else np.nan,
                             "epoch_time": 2.0 * np.exp(0.3 * u[3] + rng.normal(0, 0.05)) * (1.5 if e == 1 else 1.0),
                             "diverged": 0})
    hrows = []
    for c in range(n_hg):
        u = rng.random(len(PSI_KEYS))
        psi = dict(zip(PSI_KEYS, lo + u * (hi - lo)))
        for b in range(4):
            hrows.append({"hg_config_id": c, "batch": b, **{f"psi_{k}": psi[k] for k in PSI_KEYS},
                          **{f"hg_{k}": float(np.sin(3 * u[j]) + rng.normal(0, 0.2)) for j, k in enumerate(PSI_KEYS)},
                          "seconds": 0.05})
    return pd.DataFrame(rows), pd.DataFrame(hrows)


@pytest.fixture(scope="module")
def surrogate_dir(tmp_path_factory):
    curves, hgs = synthetic_collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's GP bound warnings on 12 points
        sur = fit_surrogate(curves, hgs, TASK, EPOCHS, startup_s=1.0)
    return str(sur.save(tmp_path_factory.mktemp("surrogate")))


@pytest.fixture(scope="module")
def sur_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sur-cache")


@pytest.fixture(scope="module")
def ray_local(sur_cache):
    """A local Ray with 2 CPUs, started the way the executor starts one (OHGW_RAY_CPUS); its workers
    (which inherit this environment) cache shipped surrogates under a pytest directory."""
    env = {"OHGW_RAY_CPUS": "2", "OHGW_RAY_SURROGATE_CACHE": str(sur_cache)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        started = ray_executor.connect(None)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert ray.cluster_resources().get("CPU") == 2 or not started
    yield ray
    if started:
        ray.shutdown()


def sweep_cfg(surrogate: str, out, **kw) -> SweepConfig:
    base = dict(name="ray-test", task=TASK, backend="surrogate", surrogate=surrogate, schedulers=["asha"],
                variants=VARIANTS, seeds="0:3", n_workers=2, budget_s=120, out=str(out))
    return SweepConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def local_results(surrogate_dir, tmp_path_factory) -> bytes:
    """results.parquet of the sweep run by the local executor (in-process: one chunk)."""
    out = run_sweep(sweep_cfg(surrogate_dir, tmp_path_factory.mktemp("local") / "out"), progress=False)
    return (out / "results.parquet").read_bytes()


def assert_same_store(path, expected: bytes):
    got = path.read_bytes()
    if got != expected:  # say what differs
        import io
        a, b = pd.read_parquet(io.BytesIO(expected)), pd.read_parquet(path)
        pd.testing.assert_frame_equal(b, a)
        pytest.fail("results.parquet has equal frames but different bytes")


# ----------------------------------------------------------------------------- simulated sweeps
def test_ray_sweep_store_is_byte_identical_to_local(ray_local, sur_cache, surrogate_dir, local_results, tmp_path):
    cfg = sweep_cfg(surrogate_dir, tmp_path / "out")
    out = run_sweep(cfg, progress=False, executor="ray")
    assert_same_store(out / "results.parquet", local_results)
    shipped = [d for d in sur_cache.iterdir() if (d / "surrogate.json").exists()]
    assert len(shipped) == 1  # the task simulated on the copy shipped through the object store
    reps = pd.read_parquet(out / "replicates.parquet")
    assert sorted(zip(reps["scheduler"], reps["variant"], reps["seed"])) == sorted(replicates(cfg))
    assert ray.is_initialized()  # map_chunks did not shut down a Ray it did not start


def _run_chunks(cfg, chunks, **kw) -> int:
    rep_dir = cfg.out_dir / "replicates"
    rep_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for res in map_chunks(cfg.model_dump(mode="json"), chunks, **kw):
        write_units(rep_dir, cfg, res)
        n += 1
    return n


def _dies_once_on_seed(marker, seed):
    """A chunk function (pickled by value: it is a closure) whose worker process dies the first time
    it meets ``seed``."""
    def chunk_fn(cfg_json, chunk):
        from ohgw_bench.sweeps.backends.simulated import run_chunk
        if any(s == seed for _, _, s in chunk) and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return run_chunk(cfg_json, chunk)
    return chunk_fn


def test_killed_worker_chunk_is_rerun_and_store_unchanged(ray_local, surrogate_dir, local_results, tmp_path):
    cfg = sweep_cfg(surrogate_dir, tmp_path / "out")
    todo = replicates(cfg)
    chunks = chunks_of(todo, 2)  # one chunk per seed
    marker = tmp_path / "died"
    n = _run_chunks(cfg, chunks, _chunk_fn=_dies_once_on_seed(marker, 1))
    assert marker.exists(), "the worker was never killed"
    assert n == len(chunks) == 3
    assert finished(cfg.out_dir / "replicates") == set(todo)
    consolidate(cfg.out_dir)  # three chunks, one rerun: the same store as one local chunk
    assert_same_store(cfg.out_dir / "results.parquet", local_results)


def test_chunk_failing_past_retries_lets_the_others_finish(ray_local, surrogate_dir, tmp_path):
    cfg = sweep_cfg(surrogate_dir, tmp_path / "out", seeds="0:2")
    todo = replicates(cfg)
    rep_dir = cfg.out_dir / "replicates"
    with pytest.raises(RuntimeError, match=r"1 of 2 Ray tasks failed.*--resume"):
        _run_chunks(cfg, chunks_of(todo, 2), max_retries=0, _chunk_fn=_dies_once_on_seed(tmp_path / "died", 0))
    assert finished(rep_dir) == {r for r in todo if r[2] == 1}


def test_task_exception_is_reported_not_retried(ray_local, surrogate_dir, tmp_path):
    cfg = sweep_cfg(surrogate_dir, tmp_path / "out", seeds="0:1")
    calls = tmp_path / "calls"
    calls.mkdir()

    def bad(cfg_json, chunk):
        (calls / str(len(list(calls.iterdir())))).touch()
        raise ValueError("boom in the task")

    with pytest.raises(ValueError, match="1 of 1 Ray tasks failed.*ValueError: boom in the task"):
        _run_chunks(cfg, [replicates(cfg)], _chunk_fn=bad)
    assert len(list(calls.iterdir())) == 1


def test_surrogate_is_shipped_and_materialized(surrogate_dir, tmp_path):
    blob = ray_executor._surrogate_blob(surrogate_dir)
    d = ray_executor._materialize_surrogate(blob, root=tmp_path)
    assert Surrogate.load(d).epochs == EPOCHS
    mtime = os.stat(os.path.join(d, "surrogate.npz")).st_mtime_ns
    assert ray_executor._materialize_surrogate(blob, root=tmp_path) == d  # once per node
    assert os.stat(os.path.join(d, "surrogate.npz")).st_mtime_ns == mtime


def test_missing_ray_is_a_value_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"executor 'ray' needs Ray: pip install 'ohgw-bench\[ray\]'"):
        map_chunks({}, [[("asha", "baseline", 0)]])


# ----------------------------------------------------------------------------- real replicates
def test_real_replicates_as_ray_tasks(ray_local, tmp_path):
    cfg = SweepConfig(name="ray-real", task=TASK, backend="real", schedulers=["asha"], variants=VARIANTS,
                      seeds="0:2", n_workers=1, budget_s=60, out=str(tmp_path / "out"))
    seen = tmp_path / "seen"
    seen.mkdir()

    def fake_replicate(cfg, scheduler, variant, seed, workdir):
        assert workdir.is_dir() and not any(workdir.iterdir())
        (seen / f"{scheduler}-{variant}-{seed}.json").write_text(json.dumps(
            {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "workdir": str(workdir), "pid": os.getpid()}))
        df = pd.DataFrame({"trial_id": [0, 0, 1], "epoch": [1, 2, 1], "val_acc": [0.3, 0.4 + seed / 10, 0.2],
                           "elapsed_s": [1.0, 2.0, 2.5], "status": ["completed", "completed", "stopped"]})
        return df, {"wall_s": 3.0, "n_trials": 2}

    todo = replicates(cfg)
    rep_dir = cfg.out_dir / "replicates"
    run_real_replicates_ray(cfg, todo, rep_dir, progress=False, _replicate_fn=fake_replicate)
    assert finished(rep_dir) == set(todo)
    res = consolidate(cfg.out_dir)
    assert len(res) == 3 * len(todo)
    assert set(res["backend"]) == {"real"} and set(res["task"]) == {TASK}
    got = res[(res["variant"] == "ohgw-1step") & (res["seed"] == 1)].sort_values(["trial_id", "epoch"])
    assert got["val_acc"].tolist() == pytest.approx([0.3, 0.5, 0.2])
    for f in seen.iterdir():
        info = json.loads(f.read_text())
        assert info["cuda"] == ""  # no GPU reserved: trials see none
        assert not os.path.exists(info["workdir"])  # scratch removed
    assert len(list(seen.iterdir())) == len(todo)
    assert ray.is_initialized()


def test_failed_real_replicate_leaves_the_others_stored(ray_local, tmp_path):
    cfg = SweepConfig(name="ray-real-fail", task=TASK, backend="real", variants=VARIANTS, seeds="0:2", n_workers=1,
                      budget_s=60, out=str(tmp_path / "out"))

    def fake_replicate(cfg, scheduler, variant, seed, workdir):
        if (variant, seed) == ("ohgw-1step", 1):
            raise ValueError("no data here")
        return pd.DataFrame({"trial_id": [0], "epoch": [1], "val_acc": [0.3], "elapsed_s": [1.0],
                             "status": ["stopped"]}), {"wall_s": 1.0, "n_trials": 1}

    todo = replicates(cfg)
    rep_dir = cfg.out_dir / "replicates"
    with pytest.raises(ValueError, match=r"1 of 4 replicates failed on Ray.*'ohgw-1step', 1\).*no data here"):
        run_real_replicates_ray(cfg, todo, rep_dir, progress=False, _replicate_fn=fake_replicate)
    assert finished(rep_dir) == set(todo) - {("asha", "ohgw-1step", 1)}


def test_real_replicate_whose_trials_all_failed_is_not_stored_on_ray(ray_local, tmp_path):
    cfg = SweepConfig(name="ray-real-allfail", task=TASK, backend="real", variants={"baseline": "none"},
                      seeds="0:2", n_workers=1, budget_s=60, out=str(tmp_path / "out"))

    def fake_replicate(cfg, scheduler, variant, seed, workdir):
        return pd.DataFrame({"trial_id": [0, 1], "epoch": [1, 1], "val_acc": [0.3, 0.2], "elapsed_s": [1.0, 2.0],
                             "status": ["failed", "failed" if seed == 1 else "stopped"]}), {"wall_s": 1.0}

    todo = replicates(cfg)
    rep_dir = cfg.out_dir / "replicates"
    with pytest.raises(RuntimeError, match=r"1 of 2 replicates failed on Ray.*all 2 trials that reported failed"):
        run_real_replicates_ray(cfg, todo, rep_dir, progress=False, _replicate_fn=fake_replicate)
    assert finished(rep_dir) == {("asha", "baseline", 0)}


def test_syne_tune_rotates_trials_over_the_assigned_gpus_only(monkeypatch, tmp_path):
    from syne_tune.backend import LocalBackend

    from ohgw_bench.sweeps.backends.real import ENTRY
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # what Ray sets for a task given GPUs 3 and 5
    prepare, allocate = LocalBackend._prepare_for_schedule, LocalBackend._allocate_gpu

    def trial_envs(visible, n):
        b = LocalBackend(entry_point=ENTRY, rotate_gpus=True)
        with syne_tune_gpus(visible):
            b._prepare_for_schedule()  # would count the node's GPUs with nvidia-smi
            envs = [{} for _ in range(n)]
            for tid, env in enumerate(envs):
                b._allocate_gpu(tid, env)
                env.setdefault("CUDA_VISIBLE_DEVICES", os.environ["CUDA_VISIBLE_DEVICES"])  # inherited
        return [e["CUDA_VISIBLE_DEVICES"] for e in envs]

    assert trial_envs(["3", "5"], 2) == ["3", "5"]
    assert trial_envs(["7"], 2) == ["7", "7"]  # one GPU: no rotation, the task's device is inherited
    assert trial_envs([], 2) == ["", ""]      # no GPU reserved: CPU trials
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert (LocalBackend._prepare_for_schedule, LocalBackend._allocate_gpu) == (prepare, allocate)
