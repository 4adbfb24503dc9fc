"""A persistent trial worker process (``sweeps.backends.persistent.WorkerPool`` starts them): set up
once (torch, this package, the task's data resident on the device, a warm-up pass), then run trial
segments on command through the same entry point as a new process would (``trainer.main`` with the
same command-line arguments), with the trial's std.out/std.err as fds 1 and 2.

Imports torch only inside the process body, so that the pool's parent can import this module cheaply."""
from __future__ import annotations

import os
import sys
import traceback

INTERRUPTED = -15       # exit code of a segment that left its worker at a stop flag


def worker_main(slot: int, conn, cancel, task_name, data_root, threads: int, gpu) -> None:
    """Body of one worker process: set up once, then run segments until told to exit."""
    if gpu is not None:  # before torch touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        import syne_tune  # noqa: F401  (the entry point's Reporter; imported once here)
        import torch

        from ..tasks import get_task
        from . import trainer
        from .data import task_data
        if threads > 0:
            torch.set_num_threads(threads)
        device = trainer.default_device()
        cache: dict = {}

        def data_for(task, root):
            key = (task, str(root))
            if key not in cache:
                cache[key] = task_data(task, root).to(device)
            return cache[key]

        if task_name:
            _warm_up(get_task(task_name), data_for(get_task(task_name), data_root), device)
    except BaseException:
        conn.send(("init_error", traceback.format_exc(limit=6)))
        raise SystemExit(3)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = ("exit",)
        if msg[0] != "run":
            # nothing to tear down; an interpreter shutdown with torch loaded takes seconds on a busy machine
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        _, seg_id, argv, out_path, err_path = msg
        rc, fatal = _run_segment(seg_id, argv, out_path, err_path, cancel, conn, data_for, trainer)
        conn.send(("done", seg_id, rc))
        if fatal:  # a CUDA error can leave the context unusable: let the pool start a fresh worker
            raise SystemExit(4)


def _warm_up(task, data, device) -> None:
    """One forward/backward pass of the task's model, so that the first segment does not pay for
    lazy initialisation (allocator, kernels, autograd)."""
    import torch
    import torch.nn.functional as F

    from .models import build_model
    state = torch.get_rng_state()
    model = build_model(task.model, width=task.width).to(device)
    x = data.train_x[:min(8, len(data.train_x))].float().div(255.0)
    F.cross_entropy(model(x), data.train_y[:len(x)]).backward()
    torch.set_rng_state(state)  # segments seed themselves; leave the global stream as it was


def _run_segment(seg_id, argv, out_path, err_path, cancel, conn, data_for, trainer) -> tuple[int, bool]:
    """Run one segment with fds 1 and 2 appended to the trial's std.out/std.err, as LocalBackend's
    process would have them. Returns (exit code, whether the worker must be replaced)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fatal = False
    with open(out_path, "a") as out, open(err_path, "a") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            rc = trainer.main(argv, data_for=data_for, should_stop=lambda: cancel.value == seg_id,
                              commit_lock=cancel.get_lock(), after_report=lambda: conn.send(("report", seg_id)))
        except trainer.Interrupted:
            rc = INTERRUPTED
        except SystemExit as e:  # argparse errors, as the process would exit
            rc = e.code if isinstance(e.code, int) else 2
        except BaseException as e:
            traceback.print_exc()
            rc = 1
            fatal = "CUDA" in str(e) or type(e).__name__ == "OutOfMemoryError"
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return int(rc or 0), fatal
