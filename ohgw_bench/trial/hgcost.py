"""Hyper-gradients at initialisation and what they cost relative to one plain training step."""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import space
from ..space import PSI_KEYS
from ..tasks import Task
from .hypergrad import BatchSource, RealOracle, sync
from .trainer import Trial


def _oracle_after_first_step(task: Task, psi: dict, seed: int, data, device, count_flops=False):
    """A fresh trial after its first ordinary SGD step (so μ has a gradient), and its real oracle."""
    trial = Trial(task, psi, seed, data, device=device)
    perm = torch.randperm(len(trial.data.train_y), generator=trial.gen, device=trial.gen.device).to(trial.device)
    nat = space.psi_to_natural(trial.psi)
    trial._train_step(perm[: task.batch_size], nat)
    d = trial.data
    src = BatchSource(d.train_x, d.train_y, d.mean, d.std, batch_size=task.hg_batch, num_ops=task.num_ops,
                      cutout=task.cutout)
    return trial, RealOracle(trial.model, trial.opt, src, trial.gen, count_flops=count_flops)


def hypergrad_at_init(task: Task, psi: dict, seed: int, data, device=None, n_batches: int = 4) -> np.ndarray:
    """(n_batches, 5) raw ∂J/∂ψ at initialisation, PSI_KEYS order."""
    _, oracle = _oracle_after_first_step(task, psi, seed, data, device)
    return oracle(psi, n_batches).per_batch


def _peak_bytes(fn, device) -> float:
    """Peak memory of fn: CUDA allocator on GPU; on CPU the running sum of the profiler's per-op
    allocations (an estimate: the CPU has no allocator high-water mark)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.cpu_parent is None), key=lambda e: e.time_range.start)
    cur = peak = 0.0
    for e in events:
        cur += e.cpu_memory_usage
        peak = max(peak, cur)
    return float(peak)


def measure(task: Task, psi: dict, seed: int, data, device, n_batches: int = 4, repeats: int = 5) -> dict:
    """Hyper-gradients at init plus cost ratios (time, peak memory, FLOPs) vs one plain training step."""
    from torch.utils.flop_counter import FlopCounterMode
    trial, oracle = _oracle_after_first_step(task, psi, seed, data, device)
    nat = space.psi_to_natural(psi)
    perm = torch.randperm(len(trial.data.train_y), generator=trial.gen, device=trial.gen.device).to(trial.device)
    idx = perm[: task.batch_size]

    def plain():
        trial._train_step(idx, nat)

    def one_hg(with_m: bool):
        oracle.with_m = with_m
        oracle(psi, 1)

    for _ in range(2):  # warm-up (allocator, kernels)
        plain(), one_hg(True)
    res = {}
    for name, fn in (("plain_step", plain), ("hypergrad_4", lambda: one_hg(False)),
                     ("hypergrad_5", lambda: one_hg(True))):
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
        with FlopCounterMode(display=False) as fc:
            fn()
        res[name] = {"seconds_median": float(np.median(times)), "seconds_min": float(np.min(times)),
                     "flops": float(fc.get_total_flops()), "peak_bytes": _peak_bytes(fn, device)}
    base = res["plain_step"]
    ratios = {k: {"time": res[k]["seconds_median"] / base["seconds_median"],
                  "flops": res[k]["flops"] / base["flops"] if base["flops"] else float("nan"),
                  "peak_memory": res[k]["peak_bytes"] / base["peak_bytes"] if base["peak_bytes"] else float("nan")}
              for k in ("hypergrad_4", "hypergrad_5")}
    oracle.with_m = True
    hg = oracle(psi, n_batches)
    return {
        "task": task.name, "psi": psi, "seed": seed, "device": str(device), "n_batches": n_batches,
        "hypergrad_mean": dict(zip(PSI_KEYS, map(float, hg.mean))),
        "hypergrad_se": dict(zip(PSI_KEYS, map(float, hg.se))),
        "cost": res,
        "ratios_vs_plain_step": ratios,
        "epoch_share": {k: res[k]["seconds_median"] / (base["seconds_median"] * trial.steps_per_epoch)
                        for k in ("hypergrad_4", "hypergrad_5")},
        "notes": "hypergrad_4: lr, wd, momentum, label smoothing (one look-ahead); hypergrad_5 adds the "
                 "CRN finite difference in m (two more look-aheads). CPU peak memory is a profiler estimate.",
    }
