"""One real trial: train a configuration ψ on a task, reporting every epoch.

Usable three ways: ``run_trial(...)`` from Python, ``ohgw-bench train`` from the shell, and as a
Syne Tune LocalBackend entry point (``python -m ohgw_bench.trial.trainer --task ... --log10_lr ...``),
reporting through ``syne_tune.Reporter`` and pausing/resuming through ``--st_checkpoint_dir``.

The cosine learning-rate schedule always runs over the task's maximum budget, so a trial that a
scheduler pauses at a rung and resumes later follows exactly the schedule of an uninterrupted run.
A checkpoint (model, optimizer, RNG, epoch, the warm-started ψ′ and its record) is written
atomically *before* each report, because a pause kills the process right after it.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import space
from ..atomic import atomic_path
from ..seeding import derive_seed, rng_for
from ..space import PSI_KEYS
from ..tasks import Task, get_task
from ..warmstart.spec import WarmStart, WarmStartResult
from . import augment
from .data import TaskData, task_data
from .hypergrad import BatchSource, RealOracle, sync
from .models import build_model

CKPT_NAME = "trial.pt"
CHANCE = 0.1  # reported validation accuracy of a diverged run (10 classes)


class Interrupted(Exception):
    """Raised by ``Trial.run`` when its ``should_stop`` hook says so: the segment ends at once and the
    checkpoint on disk stays that of the last reported epoch."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _set_hparams(opt: torch.optim.Optimizer, nat: dict, lr_now: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr_now
        g["momentum"] = nat["momentum"]
        g["weight_decay"] = nat["weight_decay"]


def cosine_lr(lr0: float, step: int, total_steps: int) -> float:
    return 0.5 * lr0 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


@torch.no_grad()
def evaluate(model, x_u8, y, mean, std, device, amp: bool, bs: int = 1000) -> tuple[float, float]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), bs):
        xb = augment.normalise(x_u8[i:i + bs], mean, std)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb).float()
        loss_sum += float(F.cross_entropy(out, y[i:i + bs], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + bs]).sum())
    model.train()
    return loss_sum / len(y), correct / len(y)


class Trial:
    """State of one training run; ``run(until_epoch, report)`` trains and reports per epoch."""

    def __init__(self, task: Task, psi: dict, seed: int, data: TaskData, device: torch.device | None = None,
                 warm_start: WarmStart | str | None = None, checkpoint_dir: str | None = None,
                 smooth: bool = False, count_flops: bool = False):
        self.task, self.seed = task, int(seed)
        self.device = device or default_device()
        self.data = data.to(self.device)
        self.amp = self.device.type == "cuda"
        self.warm_start = WarmStart.parse(warm_start)
        self.ckpt = Path(checkpoint_dir) / CKPT_NAME if checkpoint_dir else None
        self.psi_x = space.check_psi(psi)
        torch.manual_seed(derive_seed(self.seed, "init"))
        self.model = build_model(task.model, smooth=smooth, width=task.width).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(derive_seed(self.seed, "data"))
        self.steps_per_epoch = len(self.data.train_y) // task.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"task {task.name!r}: n_train={len(self.data.train_y)} is smaller than "
                             f"batch_size={task.batch_size}")
        self.total_steps = task.max_epochs * self.steps_per_epoch
        self.step = 0
        self.epoch = 0
        self.cum_time = 0.0
        self.diverged = False
        self.psi = dict(self.psi_x)  # ψ′ after the warm start
        self.ws: WarmStartResult | None = None
        self.plain_step_seconds = float("nan")
        self.count_flops = count_flops
        self.resumed = self._maybe_resume()

    # ------------------------------------------------------------ checkpointing
    def _maybe_resume(self) -> bool:
        if self.ckpt is None or not self.ckpt.exists():
            return False
        st = torch.load(self.ckpt, map_location=self.device, weights_only=False)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.gen.set_state(st["gen"].to(self.gen.get_state().device) if hasattr(st["gen"], "to") else st["gen"])
        torch.set_rng_state(st["torch_rng"])
        self.step, self.epoch, self.cum_time = st["step"], st["epoch"], st["cum_time"]
        self.psi, self.psi_x, self.diverged = st["psi"], st["psi_x"], st["diverged"]
        self.ws = WarmStartResult(**st["ws"]) if st["ws"] is not None else None
        self.plain_step_seconds = st.get("plain_step_seconds", float("nan"))
        return True

    def _save(self) -> None:
        if self.ckpt is None:
            return
        state = {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "step": self.step, "epoch": self.epoch,
            "cum_time": self.cum_time, "psi": self.psi, "psi_x": self.psi_x, "diverged": self.diverged,
            "ws": self.ws.to_dict() if self.ws is not None else None,
            "plain_step_seconds": self.plain_step_seconds,
        }
        with atomic_path(self.ckpt) as tmp:
            torch.save(state, tmp)

    # ------------------------------------------------------------ training
    def _train_step(self, idx: torch.Tensor, nat: dict):
        """One SGD step; returns (loss, number correct) as device tensors (no host sync here)."""
        d = self.data
        xb = augment.augment_batch(d.train_x[idx], space.ops_magnitude(self.psi["ra_magnitude"]), self.task.num_ops,
                                   self.task.cutout, self.gen, d.mean, d.std)
        if self.device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = d.train_y[idx]
        _set_hparams(self.opt, nat, cosine_lr(nat["lr"], self.step, self.total_steps))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(xb)
        loss = F.cross_entropy(out.float(), yb, label_smoothing=nat["label_smoothing"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return loss.detach(), (out.argmax(1) == yb).sum()

    def _warm_start(self, first_idx: torch.Tensor) -> tuple[float, int]:
        """First ordinary SGD step (gives μ a gradient), then the warm start. Returns the step's loss/correct."""
        nat = space.psi_to_natural(self.psi)
        t0 = time.perf_counter()
        loss, correct = self._train_step(first_idx, nat)
        loss, correct = float(loss), int(correct)
        self.plain_step_seconds = time.perf_counter() - t0
        d = self.data
        src = BatchSource(d.train_x, d.train_y, d.mean, d.std, batch_size=self.task.hg_batch,
                          num_ops=self.task.num_ops, cutout=self.task.cutout)
        # the oracle draws its batches from its own stream, so that a warm-started trial sees the same
        # data order and augmentations afterwards as its paired baseline trial (common random numbers)
        hg_gen = torch.Generator(device=self.device)
        hg_gen.manual_seed(derive_seed(self.seed, "hypergrad"))
        oracle = RealOracle(self.model, self.opt, src, hg_gen, count_flops=self.count_flops)
        rng = rng_for(self.seed, "warmstart")
        self.ws = self.warm_start.apply(self.psi, oracle, rng, task=self.task.name)
        self.psi = dict(self.ws.psi_after)
        return loss, correct

    def run(self, until_epoch: int, report=None, should_stop=None, commit_lock=None) -> list[dict]:
        """Train up to ``until_epoch`` (≤ the task's maximum budget); ``report(dict)`` after every epoch.

        ``should_stop()`` (optional) is asked before every step and before an epoch is committed; True
        raises ``Interrupted``. The commit (checkpoint write, then report) runs under ``commit_lock``
        (optional), so a caller that sets the stop flag while holding that lock knows that nothing more
        is written: no checkpoint that could re-create a deleted folder, no report after a pause."""
        if not 1 <= until_epoch <= self.task.max_epochs:
            raise ValueError(f"epochs must lie in [1, {self.task.max_epochs}] for task {self.task.name!r}, "
                             f"but got epochs={until_epoch}")
        rows = []
        milestones = set(self.task.milestones())
        d = self.data
        start_ts = None
        while self.epoch < until_epoch and not self.diverged:
            if should_stop is not None and should_stop():
                raise Interrupted(f"stopped before epoch {self.epoch + 1}")
            if start_ts is None:
                start_ts = time.time()  # wall clock of this segment's first step (start-latency measurements)
            sync(self.device)
            t0 = time.perf_counter()
            perm = torch.randperm(len(d.train_y), generator=self.gen, device=self.gen.device).to(self.device)
            loss_sum, correct, seen = 0.0, 0, 0
            bs = self.task.batch_size
            first = 0
            if self.epoch == 0 and self.step == 0:
                l, c = self._warm_start(perm[:bs])
                loss_sum, correct, seen, first = l * bs, c, bs, 1
                self.diverged = not math.isfinite(l)
            nat = space.psi_to_natural(self.psi)
            # on a GPU, losses are summed on the device and checked once per epoch (a per-step
            # float() is a host sync); on the CPU syncs are free, so a NaN stops the epoch at once
            per_step = self.device.type != "cuda"
            for s in range(first, 0 if self.diverged else self.steps_per_epoch):
                if should_stop is not None and should_stop():
                    raise Interrupted(f"stopped in epoch {self.epoch + 1}")
                l, c = self._train_step(perm[s * bs:(s + 1) * bs], nat)
                if per_step:
                    l, c = float(l), int(c)
                    if not math.isfinite(l):
                        self.diverged = True
                        break
                loss_sum, correct, seen = loss_sum + l * bs, correct + c, seen + bs
            loss_sum, correct = float(loss_sum), int(correct)
            if not math.isfinite(loss_sum):
                self.diverged = True
            sync(self.device)
            train_time = time.perf_counter() - t0
            self.epoch += 1
            if self.diverged:
                vl, va = float("nan"), CHANCE
            else:
                vl, va = evaluate(self.model, d.val_x, d.val_y, d.mean, d.std, self.device, self.amp)
            row = {"epoch": self.epoch, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                   "val_loss": vl, "val_acc": va, "diverged": int(self.diverged)}
            if (self.epoch in milestones or self.diverged) and not self.diverged:
                row["test_loss"], row["test_acc"] = evaluate(self.model, d.test_x, d.test_y, d.mean, d.std,
                                                             self.device, self.amp)
            sync(self.device)
            epoch_time = time.perf_counter() - t0
            self.cum_time += epoch_time
            row.update(epoch_time=epoch_time, train_time=train_time, cum_time=self.cum_time, train_start_ts=start_ts)
            row.update(self.record())
            with commit_lock if commit_lock is not None else contextlib.nullcontext():
                if should_stop is not None and should_stop():
                    raise Interrupted(f"stopped before reporting epoch {self.epoch}")
                rows.append(row)
                self._save()
                if report is not None:
                    report(row)
        return rows

    def record(self) -> dict:
        """x, x′, raw hyper-gradients and warm-start cost, flat (constant over the trial)."""
        if self.ws is not None:
            rec = self.ws.flat()
        else:
            rec = {f"x_{k}": self.psi_x[k] for k in PSI_KEYS}
            rec.update({f"xp_{k}": self.psi[k] for k in PSI_KEYS})
            rec.update({f"hg_{k}": float("nan") for k in PSI_KEYS})
            rec.update(ws_cost_s=0.0, ws_flops=float("nan"), ws_batches=0)
        rec["plain_step_s"] = self.plain_step_seconds
        rec["warm_start"] = self.warm_start.spec()
        return rec


# ---------------------------------------------------------------- Syne Tune entry point
def _finite(row: dict) -> dict:
    """Syne Tune's JSON reports cannot carry NaN safely: drop non-finite floats."""
    return {k: v for k, v in row.items() if not (isinstance(v, float) and not math.isfinite(v))}


def entry_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ohgw_bench.trial.trainer",
                                description="One real trial (Syne Tune LocalBackend entry point).")
    p.add_argument("--task", required=True)
    for k in PSI_KEYS:
        p.add_argument(f"--{k}", type=float, required=True)
    p.add_argument("--epochs", type=int, required=True, help="train up to this epoch (Syne Tune max_resource_attr)")
    p.add_argument("--warm_start", default="none")
    p.add_argument("--replicate_seed", type=int, default=0)
    p.add_argument("--data_root", default=None)
    p.add_argument("--st_checkpoint_dir", default=None)
    p.add_argument("--trial_seed", type=int, default=None, help="default: derived from replicate seed and trial id")
    p.add_argument("--torch_threads", type=int, default=0)
    return p


def _trial_id_from_checkpoint_dir(path: str | None) -> int:
    # LocalBackend's layout is <experiment>/<trial_id>/checkpoints
    if path:
        try:
            return int(Path(path).parent.name)
        except ValueError:
            pass
    return 0


def main(argv: list[str] | None = None, *, data_for=None, should_stop=None, commit_lock=None,
         after_report=None) -> int:
    """The entry point. A persistent worker (worker.py) passes ``data_for(task, data_root)`` (its
    resident data), the ``Trial.run`` hooks ``should_stop``/``commit_lock``, and ``after_report()``
    (called after each report line is flushed)."""
    args = entry_parser().parse_args(argv)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    try:
        task = get_task(args.task)
        psi = space.check_psi({k: getattr(args, k) for k in PSI_KEYS})
        ws = WarmStart.parse(args.warm_start)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    trial_id = _trial_id_from_checkpoint_dir(args.st_checkpoint_dir)
    seed = args.trial_seed if args.trial_seed is not None else derive_seed(args.replicate_seed, trial_id, "trial")
    from syne_tune import Reporter
    reporter = Reporter()
    data = data_for(task, args.data_root) if data_for is not None else task_data(task, args.data_root)
    trial = Trial(task, psi, seed, data, warm_start=ws, checkpoint_dir=args.st_checkpoint_dir)

    def report(row):
        reporter(**_finite(row))
        if after_report is not None:
            after_report()

    trial.run(min(args.epochs, task.max_epochs), report, should_stop=should_stop, commit_lock=commit_lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
