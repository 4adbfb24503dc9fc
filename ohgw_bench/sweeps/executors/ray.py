"""Ray executor: replicates as Ray tasks on a local Ray or a cluster (``--executor ray``).

The executor runs the function it is given and imports no backend:

- Simulated replicates (:func:`map_chunks`): one task per chunk of replicates, each calling the chunk
  function (the sweep passes ``sweeps.backends.simulated.run_chunk``); results come back to the driver,
  which writes every chunk as one unit of the results store. The surrogate artifact is read once by the driver and shipped
  through Ray's object store, so worker nodes need no shared file system (and all of them use
  the very artifact the driver checked).
- Real replicates (:func:`run_real_replicates_ray`): one task per replicate, reserving the replicate's
  GPUs (``n_workers`` of them by default), running the replicate function (the sweep passes
  ``sweeps.backends.real.run_real_replicate``) on the worker node in a node-local scratch directory;
  each finished replicate is checked and stored as it arrives.

Retries: ``max_retries`` is Ray's count of reruns of a task whose *worker process died* (killed,
OOM, node lost); a Python exception inside a task is not retried (``retry_exceptions=False``), it is
reported. A rerun starts the chunk afresh; simulated replicates are deterministic, so a rerun
yields the same rows. A chunk is written only when its task has returned, so nothing is lost or
duplicated either way, and a failed chunk is redone by ``--resume``.

Ray is imported lazily: ``pip install 'ohgw-bench[ray]'``.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ...atomic import atomic_path
from ...config import SweepConfig
from ..replicate import check_real_replicate, replicate_key, write_units

MISSING_RAY = "executor 'ray' needs Ray: pip install 'ohgw-bench[ray]'"
SURROGATE_FILES = ("surrogate.npz", "surrogate.json")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(MISSING_RAY) from None
    return ray


def _hide_broken_pyarrow() -> None:
    """Ray's serializer imports pyarrow whenever it is installed and tolerates only its absence; a
    pyarrow that is installed but fails to import (e.g. built for NumPy 2 next to NumPy 1) would break
    every task. Such a pyarrow is unusable anyway (pandas falls back to fastparquet): mark it absent."""
    if "pyarrow" in sys.modules:
        return
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        pass
    except ImportError as e:
        logging.getLogger(__name__).debug("pyarrow does not import (%s); hidden from Ray", e)
        sys.modules["pyarrow"] = None  # `import pyarrow` now raises ModuleNotFoundError


def worker_setup() -> None:
    """Ray ``worker_process_setup_hook`` of the jobs this module starts: runs in every worker process
    before it deserialises anything."""
    _hide_broken_pyarrow()


RUNTIME_ENV = {"worker_process_setup_hook": f"{__name__}.worker_setup"}


def connect(address: str | None = None) -> bool:
    """Connect to Ray; returns whether this call started (and so must shut down) the connection.

    ``address`` None: a Ray that is already initialised in this process is reused; otherwise the
    cluster in ``RAY_ADDRESS`` if that is set (as under ``ray job submit``), else a new local Ray with
    ``OHGW_RAY_CPUS`` CPUs (default: all of the machine's). Any other address (``auto``,
    ``host:6379``, ``ray://host:10001``) is passed to ``ray.init``. A Ray initialised elsewhere should
    use ``runtime_env=RUNTIME_ENV`` (see :func:`worker_setup`)."""
    ray = _import_ray()
    _hide_broken_pyarrow()
    if ray.is_initialized():
        return False
    kw = dict(ignore_reinit_error=True, runtime_env=RUNTIME_ENV)
    if address is None and not os.environ.get("RAY_ADDRESS"):
        cpus = os.environ.get("OHGW_RAY_CPUS")
        if cpus:
            try:
                kw["num_cpus"] = int(cpus)
            except ValueError:
                raise ValueError(f"OHGW_RAY_CPUS must be an integer, but got OHGW_RAY_CPUS={cpus!r}") from None
        # "local": always a new local instance, never a `ray start` cluster found on this machine
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, **kw)
    elif address is not None and "://" in address:
        ray.init(address=address, **kw)  # Ray Client forwards few init arguments
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **kw)
    return True


def _cancel(ray, refs) -> None:
    for r in refs:
        with contextlib.suppress(Exception):
            ray.cancel(r)


def _last_line(err: BaseException) -> str:
    """``Type: message`` of a task failure (a RayTaskError's text ends with the cause's last line)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[-1] if text else ''}"


def _cause(err: BaseException) -> BaseException:
    """A task's exception as an instance of its cause's class (so the CLI reports e.g. ValueError)."""
    with contextlib.suppress(Exception):
        return err.as_instanceof_cause()
    return err


# ----------------------------------------------------------------------------- surrogate shipping
def _surrogate_blob(path: str | None) -> dict | None:
    if not path:
        return None
    d = Path(path)
    if not all((d / f).is_file() for f in SURROGATE_FILES):
        return None  # the worker's run_chunk reports the missing artifact
    blob = {f: (d / f).read_bytes() for f in SURROGATE_FILES}
    blob["sha256"] = hashlib.sha256(blob["surrogate.npz"]).hexdigest()
    return blob


def _materialize_surrogate(blob: dict, root: str | Path | None = None) -> str:
    """Write a shipped artifact into a node-local directory keyed by its checksum (once per node)."""
    root = Path(root or os.environ.get("OHGW_RAY_SURROGATE_CACHE")
                or Path(tempfile.gettempdir()) / "ohgw-bench-surrogates")
    d = root / blob["sha256"][:20]
    if not all((d / f).is_file() and (d / f).read_bytes() == blob[f] for f in SURROGATE_FILES):
        for f in SURROGATE_FILES:  # npz first: surrogate.json names its checksum
            with atomic_path(d / f) as tmp:
                tmp.write_bytes(blob[f])
    return str(d)


def _chunk_task(cfg_json: dict, chunk: list, sur_blob: dict | None, chunk_fn):
    """Ray task body: one chunk of simulated replicates on a worker."""
    if sur_blob is not None:
        cfg_json = dict(cfg_json, surrogate=_materialize_surrogate(sur_blob))
    return chunk_fn(cfg_json, [tuple(r) for r in chunk])


# ----------------------------------------------------------------------------- simulated replicates
def map_chunks(cfg_json: dict, chunks: list[list], address: str | None = None, max_retries: int = 3,
               _chunk_fn=None):
    """Run ``_chunk_fn(cfg_json, chunk)`` for every chunk as a Ray task; yield each result (a list of
    ``((scheduler, variant, seed), rows, meta)``) as soon as its task finishes, in completion order.

    ``_chunk_fn`` is required: the executor knows no backend (the sweep passes the simulated backend's
    ``run_chunk``; tests pass their own). A task whose worker process dies is rerun up to
    ``max_retries`` times. A chunk that still fails does not stop the others: every other result is
    yielded first, then the failure is raised (rerun with ``--resume`` to redo only the missing
    replicates). Ray is shut down at the end only if this call started it.
    """
    ray = _import_ray()  # raise ValueError at the call, not at the first iteration
    if _chunk_fn is None:
        raise TypeError("map_chunks needs _chunk_fn, the function each Ray task runs")
    return _iter_chunks(ray, cfg_json, [list(c) for c in chunks], address, max_retries, _chunk_fn)


def _completed(ray, pending: dict, failures: list):
    """Yield (key, result) as Ray tasks finish; ``pending`` (ref -> key) shrinks in place so that the
    caller's cleanup cancels only what is left. A task that raised, or whose worker died more than
    max_retries times, goes to ``failures`` as (key, exception) instead."""
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready[0])
        try:
            res = ray.get(ready[0])
        except Exception as e:
            failures.append((key, e))
            continue
        yield key, res


def _raise_failure(msg: str, e: BaseException):
    msg += " (finished replicates are stored; rerun with --resume to redo the rest)"
    if isinstance(_cause(e), ValueError):
        raise ValueError(msg) from e
    raise RuntimeError(msg) from e


def _iter_chunks(ray, cfg_json, chunks, address, max_retries, chunk_fn):
    if not chunks:
        return
    started = connect(address)
    pending: dict = {}
    try:
        task = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_chunk_task)
        blob_ref = ray.put(_surrogate_blob(cfg_json.get("surrogate")))
        pending = {task.remote(cfg_json, ch, blob_ref, chunk_fn): i for i, ch in enumerate(chunks)}
        failures = []
        for _, res in _completed(ray, pending, failures):
            yield res
        if failures:
            i, e = failures[0]
            ch = chunks[i]
            _raise_failure(f"{len(failures)} of {len(chunks)} Ray tasks failed; the first ran {len(ch)} replicate(s) "
                           f"from {ch[0]}: {_last_line(e)}", e)
    finally:
        _cancel(ray, pending)
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------- real replicates
@contextlib.contextmanager
def syne_tune_gpus(visible: list[str]):
    """Make Syne Tune's LocalBackend rotate its trials over ``visible`` (the devices Ray assigned),
    not over every GPU of the node.

    Syne Tune counts GPUs with ``nvidia-smi --list-gpus`` (all of the node's, whatever
    ``CUDA_VISIBLE_DEVICES`` says) and sets ``CUDA_VISIBLE_DEVICES=<i>`` for trial i's process with
    i counted from 0, so inside a Ray task it would put trials on GPUs 0.. that other tasks hold.
    Here the backend sees ``len(visible)`` GPUs and its index i becomes ``visible[i]``; with no GPU
    assigned, trial processes get ``CUDA_VISIBLE_DEVICES=""`` (CPU)."""
    from syne_tune.backend.local_backend import LocalBackend

    prepare, allocate = LocalBackend._prepare_for_schedule, LocalBackend._allocate_gpu
    old_env = os.environ.get("CUDA_VISIBLE_DEVICES")

    def _prepare(self, num_gpus=None):
        return prepare(self, num_gpus=len(visible) if num_gpus is None else num_gpus)

    def _allocate(self, trial_id, env):
        allocate(self, trial_id, env)
        if self.rotate_gpus and env.get("CUDA_VISIBLE_DEVICES"):
            env["CUDA_VISIBLE_DEVICES"] = ",".join(visible[int(i)] for i in env["CUDA_VISIBLE_DEVICES"].split(","))

    LocalBackend._prepare_for_schedule, LocalBackend._allocate_gpu = _prepare, _allocate
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(visible)  # inherited when the backend does not rotate
    try:
        yield
    finally:
        LocalBackend._prepare_for_schedule, LocalBackend._allocate_gpu = prepare, allocate
        if old_env is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old_env


def _assigned_gpus(ray) -> list[str]:
    ids = [str(g) for g in ray.get_gpu_ids()]
    env = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    # Ray sets CUDA_VISIBLE_DEVICES to the assigned devices; trust it when it agrees in number
    return env if ids and len(env) == len(ids) else ids


def _real_task(cfg_json: dict, scheduler: str, variant: str, seed: int, replicate_fn):
    """Ray task body: one real replicate in a node-local scratch directory."""
    import ray

    cfg = SweepConfig(**cfg_json)
    work = Path(tempfile.mkdtemp(prefix=f"ohgw-{replicate_key(scheduler, variant, seed)}-"))
    try:
        with syne_tune_gpus(_assigned_gpus(ray)):
            df, meta = replicate_fn(cfg, scheduler, variant, seed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return (scheduler, variant, seed), df, meta


def _check_fits(ray, num_cpus: float, num_gpus: float) -> None:
    """Warn when no node can hold one replicate: Ray would wait for the autoscaler, maybe forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if nodes and not any(r.get("CPU", 0) >= num_cpus and r.get("GPU", 0) >= num_gpus for r in nodes):
        print(f"ohgw-bench: warning: no Ray node has {num_cpus:g} CPUs and {num_gpus:g} GPUs for one replicate; "
              f"the tasks wait until the cluster grows", file=sys.stderr)


def run_real_replicates_ray(cfg, todo: list, rep_dir: Path, address: str | None = None,
                            gpus_per_replicate: float | None = None, progress: bool = True, max_retries: int = 3,
                            _replicate_fn=None) -> None:
    """Run real replicates as Ray tasks and write each one to the store as it finishes.

    Each task reserves ``gpus_per_replicate`` GPUs (default: ``cfg.n_workers`` where the cluster has
    GPUs, else 0) and ``cfg.n_workers`` CPUs (``n_workers * threads_per_trial`` without GPUs); its
    Syne Tune LocalBackend runs the trials on exactly the GPUs Ray assigned. A replicate whose worker
    dies is rerun from scratch (up to ``max_retries`` times); failures are raised after every other
    replicate is stored. ``_replicate_fn(cfg, scheduler, variant, seed, workdir) -> (rows, meta)`` is
    required: the executor knows no backend (the sweep passes the real backend's
    ``run_real_replicate``; tests pass their own).
    """
    from tqdm import tqdm

    ray = _import_ray()
    if _replicate_fn is None:
        raise TypeError("run_real_replicates_ray needs _replicate_fn, the function each Ray task runs")
    if not todo:
        return
    rep_dir = Path(rep_dir)
    started = connect(address)
    pending: dict = {}
    try:
        if gpus_per_replicate is None:
            gpus_per_replicate = cfg.n_workers if ray.cluster_resources().get("GPU", 0) > 0 else 0
        cpus = cfg.n_workers if gpus_per_replicate else cfg.n_workers * cfg.threads_per_trial
        _check_fits(ray, cpus, gpus_per_replicate)
        task = ray.remote(num_cpus=cpus, num_gpus=gpus_per_replicate, max_retries=max_retries,
                          retry_exceptions=False)(_real_task)
        cfg_json = cfg.model_dump(mode="json")
        pending = {task.remote(cfg_json, s, v, seed, _replicate_fn): (s, v, seed) for s, v, seed in todo}
        bar = tqdm(total=len(todo), desc=f"sweep {cfg.name} (ray)", disable=not progress, file=sys.stderr)
        failures = []
        for key, res in _completed(ray, pending, failures):
            try:
                check_real_replicate(key, res[1])
            except RuntimeError as e:  # not stored: --resume redoes it
                failures.append((key, e))
                continue
            write_units(rep_dir, cfg, [res])
            bar.update(1)
        bar.close()
        if failures:
            key, e = failures[0]
            _raise_failure(f"{len(failures)} of {len(todo)} replicates failed on Ray; the first, {key}: "
                           f"{_last_line(e)}", e)
    finally:
        _cancel(ray, pending)
        if started:
            ray.shutdown()
