"""Persistent trial workers for Syne Tune 0.14.2: real sweeps that train instead of starting processes.

Syne Tune's ``LocalBackend`` starts a new Python process for every trial segment (a new trial or a
resume): on the CPU task that is ≈9 s of interpreter start, imports, data and checkpoint loading
against ≈2.5 s per epoch. Here a :class:`WorkerPool` keeps one long-lived process per worker slot
(``spawn`` start method): it imports torch and this package once, keeps the task's data resident on its
device (GPU tensors where there is one; with several GPUs each worker is pinned to one before CUDA
initialises) and runs segments on command, through the same entry point as ``LocalBackend``
(``trial.trainer.main`` with the same command-line arguments; the process body is ``trial.worker``).

:class:`PersistentBackend` subclasses ``LocalBackend`` and replaces only how a segment is started,
killed and polled. Trial folders, ``config.json``, ``std.out``/``std.err`` (appended, fd-level),
the ``pause``/``stop``/``end`` markers, checkpoint copy/delete and the ``Reporter`` lines are
LocalBackend's own, so the scheduler, the results store, report and verify see no difference.

Semantics:
- starts and resumes wait in one FIFO queue for a free worker; a resume may run on another worker
  (the checkpoint on disk is the truth; nothing is cached in memory between segments);
- a pause or stop sets the segment's stop flag while holding the worker's commit lock, under which
  the worker writes a checkpoint and its report line. Once ``kill()`` returns, the worker writes
  nothing more for that segment: no line after a pause (it would resurface after the resume and trip
  promotion ASHA's milestone assertion), no checkpoint save that re-creates a folder just deleted.
  The worker leaves the segment at its next step;
- a worker that dies (crash, out of memory, kill -9, a CUDA error) fails its segment (the trial
  becomes Failed, a line in its ``std.err`` says why) and is replaced; the sweep goes on;
- every report line and every finished segment wakes the tuner (:class:`WakingTuner`), so the
  scheduler's decisions do not wait for ``tuner_sleep_time``.
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import multiprocessing.connection
import os
import threading
import time
from collections import deque
from pathlib import Path

from syne_tune.backend import LocalBackend
from syne_tune.constants import ST_CHECKPOINT_DIR, ST_CONFIG_JSON_FNAME_ARG
from syne_tune.util import dump_json_with_numpy

from ...trial.worker import worker_main

KILLED = -9             # poll() of a segment cancelled before it reached a worker (as a killed process)
START_ATTEMPTS = 3      # a slot whose worker dies this often before it is ready breaks the pool


class PoolError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------ parent side
class Segment:
    """One trial segment. Quacks like LocalBackend's ``Popen``: ``poll()`` (None while queued or
    running, then an exit code) and ``kill()``."""

    def __init__(self, pool: "WorkerPool", seg_id: int, trial_id: int, argv: list[str], out_path: str,
                 err_path: str):
        self.pool, self.id, self.trial_id, self.argv = pool, seg_id, trial_id, argv
        self.out_path, self.err_path = out_path, err_path
        self.rc: int | None = None
        self.worker: "_Worker | None" = None
        self.cancelled = False
        self.t_submit = time.time()
        self.t_dispatch = float("nan")
        self.t_done = float("nan")

    def poll(self) -> int | None:
        return self.rc

    def kill(self) -> None:
        self.pool.cancel(self)

    def __repr__(self):
        return f"Segment(id={self.id}, trial_id={self.trial_id}, rc={self.rc})"


class _Worker:
    def __init__(self, slot: int, proc, conn, cancel, gpu, attempts: int):
        self.slot, self.proc, self.conn, self.cancel, self.gpu = slot, proc, conn, cancel, gpu
        self.state = "starting"           # starting | idle | busy | dead
        self.seg: Segment | None = None
        self.attempts = attempts          # consecutive starts of this slot that died before ready
        self.init_error = ""
        self.t_spawn = time.time()


def _visible_gpus() -> list[str]:
    """GPU ids the workers are pinned to, round robin: ``CUDA_VISIBLE_DEVICES`` if set (empty: none,
    as a Ray task without GPUs has it), else all the machine has."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    from syne_tune.num_gpu import get_num_gpus
    return [str(i) for i in range(get_num_gpus())]


class WorkerPool:
    """``n_workers`` persistent worker processes with a FIFO queue of segments.

    ``task``/``data_root``: data made resident (and a warm-up pass run) before a worker says it is
    ready; a segment for another task loads that task's data on first use. ``threads``: torch threads
    per worker. ``gpus``: ids to pin workers to (default: the visible ones; none on a CPU machine)."""

    def __init__(self, n_workers: int, task: str | None = None, data_root: str | None = None, threads: int = 1,
                 gpus: list[str] | None = None):
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, but got n_workers={n_workers}")
        self.n_workers, self.task, self.data_root, self.threads = n_workers, task, data_root, threads
        self.gpus = _visible_gpus() if gpus is None else [str(g) for g in gpus]
        self._ctx = mp.get_context("spawn")
        self._lock = threading.RLock()
        self._queue: deque[Segment] = deque()
        self._event = threading.Event()
        self._ids = itertools.count(1)
        self._broken = ""
        self._closed = False
        self.replaced = 0                 # workers that died and were replaced
        self._workers = [self._spawn(i, 0) for i in range(n_workers)]
        self._thread = threading.Thread(target=self._listen, name="ohgw-worker-pool", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- lifecycle
    def _spawn(self, slot: int, attempts: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        cancel = self._ctx.Value("q", 0)  # id of the segment to stop; its (recursive) lock is the commit lock
        gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
        proc = self._ctx.Process(target=worker_main, name=f"ohgw-worker-{slot}", daemon=True,
                                 args=(slot, child, cancel, self.task, self.data_root, self.threads, gpu))
        proc.start()
        child.close()
        return _Worker(slot, proc, parent, cancel, gpu, attempts)

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Block until every worker is ready; returns the seconds waited."""
        t0 = time.time()
        while True:
            with self._lock:
                self._raise_if_broken()
                if all(w.state in ("idle", "busy") for w in self._workers):
                    return time.time() - t0
            if time.time() - t0 > timeout:
                raise PoolError(f"persistent workers not ready after {timeout:.0f} s")
            self._event.wait(0.05)
            self._event.clear()

    def _raise_if_broken(self) -> None:
        if self._broken:
            raise PoolError(self._broken)

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until no segment is queued or running (cancelled ones leave at their next step)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            with self._lock:
                if self._broken or (not self._queue and all(w.state != "busy" for w in self._workers)):
                    return
            time.sleep(0.01)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for seg in self._queue:
                seg.rc = KILLED
            self._queue.clear()
            workers = list(self._workers)
        for w in workers:
            if w.seg is not None:
                self.cancel(w.seg)
            try:
                w.conn.send(("exit",))
            except (OSError, ValueError):
                pass
        for w in workers:
            w.proc.join(timeout)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
            w.conn.close()
        self._thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers]

    # ---------------------------------------------------------------- segments
    def submit(self, trial_id: int, argv: list[str], out_path: str, err_path: str) -> Segment:
        with self._lock:
            self._raise_if_broken()
            if self._closed:
                raise PoolError("the worker pool is closed")
            seg = Segment(self, next(self._ids), trial_id, argv, str(out_path), str(err_path))
            self._queue.append(seg)
            self._dispatch()
        return seg

    def cancel(self, seg: Segment) -> None:
        """Stop ``seg``: dequeue it, or set its stop flag under its worker's commit lock. When this
        returns, the worker writes nothing more for it."""
        with self._lock:
            if seg.rc is not None or seg.cancelled:
                return
            seg.cancelled = True
            if seg.worker is None:
                self._queue.remove(seg)
                seg.rc = KILLED
                self._event.set()
                return
            w = seg.worker
        lock = w.cancel.get_lock()
        while not lock.acquire(timeout=0.05):
            if not w.proc.is_alive():  # died holding the lock: it writes nothing any more either
                return
        try:
            w.cancel.value = seg.id
        finally:
            lock.release()

    def _dispatch(self) -> None:
        """Hand queued segments to idle workers, oldest first (caller holds the lock)."""
        while self._queue:
            idle = [w for w in self._workers if w.state == "idle"]
            if not idle:
                return
            w, seg = idle[0], self._queue.popleft()
            try:
                w.conn.send(("run", seg.id, seg.argv, seg.out_path, seg.err_path))
            except (OSError, ValueError):
                self._queue.appendleft(seg)
                w.state = "dying"  # the listener sees its end and replaces it
                continue
            w.state, w.seg, seg.worker, seg.t_dispatch = "busy", seg, w, time.time()

    def wait_event(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, less if a worker reports a result or ends a segment."""
        self._event.wait(timeout)
        self._event.clear()

    # ---------------------------------------------------------------- listener thread
    def _listen(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                live = [w for w in self._workers if w.state != "dead"]
            handles = {}
            for w in live:
                handles[w.conn] = (w, False)
                handles[w.proc.sentinel] = (w, True)
            try:
                ready = mp.connection.wait(list(handles), timeout=0.1)
            except (OSError, ValueError):
                continue
            for h in ready:
                w, is_sentinel = handles[h]
                if w.state == "dead":
                    continue
                if not is_sentinel:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        self._died(w)
                        continue
                    self._handle(w, msg)
                else:
                    try:
                        while w.conn.poll():  # what it said before it ended
                            self._handle(w, w.conn.recv())
                    except (EOFError, OSError):
                        pass
                    self._died(w)

    def _handle(self, w: _Worker, msg: tuple) -> None:
        with self._lock:
            kind = msg[0]
            if kind == "ready":
                w.state, w.attempts = "idle", 0
                self._dispatch()
            elif kind == "init_error":
                w.init_error = msg[1]
            elif kind == "done":
                seg = w.seg
                if seg is not None and seg.id == msg[1]:
                    seg.rc, seg.t_done = int(msg[2]), time.time()
                    w.seg = None
                if w.state == "busy":
                    w.state = "idle"
                self._dispatch()
            self._event.set()

    def _died(self, w: _Worker) -> None:
        with self._lock:
            if w.state == "dead":
                return
            was_ready = w.state != "starting"
            w.state = "dead"
            w.proc.join(1)
            code = w.proc.exitcode
            seg, w.seg = w.seg, None
            if seg is not None and seg.rc is None:
                try:
                    with open(seg.err_path, "a") as f:
                        f.write(f"persistent worker {w.slot} (pid {w.proc.pid}) died with exit code {code} "
                                f"during this segment; the trial fails and the worker is replaced\n")
                except OSError:
                    pass
                seg.rc, seg.t_done = (code if code else 1), time.time()
            try:
                w.conn.close()
            except OSError:
                pass
            if not self._closed:
                attempts = 0 if was_ready else w.attempts + 1
                if attempts >= START_ATTEMPTS:
                    last = (w.init_error.strip().splitlines() or [f"exit code {code}"])[-1]
                    self._broken = (f"persistent worker {w.slot} died {attempts} times before it was ready; "
                                    f"last error: {last}")
                    for s in self._queue:
                        s.rc = 1
                    self._queue.clear()
                else:
                    self._workers[w.slot] = self._spawn(w.slot, attempts)
                    self.replaced += 1
            self._event.set()


# ------------------------------------------------------------------------------------------ backend
class PersistentBackend(LocalBackend):
    """``LocalBackend`` whose segments run on a :class:`WorkerPool` instead of new processes."""

    def __init__(self, entry_point: str, pool: WorkerPool, delete_checkpoints: bool = False,
                 pass_args_as_json: bool = False):
        # GPUs belong to workers (pinned when they start), not to trials
        super().__init__(entry_point=entry_point, delete_checkpoints=delete_checkpoints,
                         pass_args_as_json=pass_args_as_json, rotate_gpus=False)
        self.pool = pool

    def _schedule(self, trial_id: int, config: dict):
        trial_path = self.trial_path(trial_id)
        os.makedirs(trial_path, exist_ok=True)
        for name in ("std.out", "std.err"):  # as LocalBackend opens them, even if a segment writes nothing
            open(trial_path / name, "a").close()
        config_json_fname = str(trial_path / "config.json")
        if self.pass_args_as_json:
            config_for_args = {ST_CONFIG_JSON_FNAME_ARG: config_json_fname}
        else:
            config_for_args = config.copy()
        config_for_args[ST_CHECKPOINT_DIR] = str(self.checkpoint_trial_path(trial_id))
        # the very argument list LocalBackend's command line splits into
        config_str = " ".join([f"--{key} {value}" for key, value in config_for_args.items()])
        dump_json_with_numpy(config, config_json_fname)
        self.trial_subprocess[trial_id] = self.pool.submit(trial_id, config_str.split(" "),
                                                           trial_path / "std.out", trial_path / "std.err")
        self._busy_trial_id_candidates.add(trial_id)

    def wait_for_event(self, timeout: float) -> None:
        self.pool.wait_event(timeout)

    def __getstate__(self):
        # Tuner.save dill-dumps the backend: no pool, threads or process handles in it
        state = dict(self.__dict__)
        state["pool"] = None
        state["trial_subprocess"] = {}
        return state

    def __str__(self):
        return f"persistent entry_point {Path(self.entry_point).name}"


def waking_tuner_class():
    """``syne_tune.Tuner`` whose idle wait ends early when the backend has news (a report line, a
    finished segment); backends without ``wait_for_event`` sleep as usual."""
    from syne_tune import Tuner

    class WakingTuner(Tuner):
        def _sleep(self):
            wait = getattr(self.trial_backend, "wait_for_event", None)
            if wait is None:
                return super()._sleep()
            wait(self.sleep_time)
            for callback in self.callbacks:
                callback.on_tuning_sleep(self.sleep_time)

    return WakingTuner
