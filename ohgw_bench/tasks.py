"""Task registry: one entry per real training problem (data, model, budget, rung layout)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    model: str                 # key of models.build_model
    width: int = 16
    resolution: int = 32       # images are resized to resolution x resolution
    n_train: int = 45_000      # stratified split of CIFAR-10's 50k training images
    n_val: int = 5_000
    n_test: int = 10_000       # stratified subset of the 10k test images
    max_epochs: int = 200      # cosine schedule runs over this (the trial's maximum budget)
    batch_size: int = 128
    grace_period: int = 1      # rung layout used for test-accuracy milestones
    reduction_factor: int = 3
    cutout: int = 16
    num_ops: int = 2           # RandAugment ops per image
    label_noise: float = 0.0   # fraction of training labels flipped (symmetric), fixed by split_seed
    split_seed: int = 0
    hg_batch: int = 128        # one mini-batch for the hyper-gradient, split train/held-out
    hg_k: int = 4              # batches averaged for m and for the normalised rule's SNR gate
    description: str = ""

    def milestones(self) -> list[int]:
        """Rung levels grace * rf^k up to max_epochs, plus max_epochs."""
        out, r = [], self.grace_period
        while r < self.max_epochs:
            out.append(r)
            r *= self.reduction_factor
        out.append(self.max_epochs)
        return out

    def replace(self, **kw) -> "Task":
        valid = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(kw) - valid)
        if bad:
            raise ValueError(f"task fields {bad} are not known; valid fields are {sorted(valid)}")
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_R20 = Task(
    name="cifar10-resnet20", model="resnet20",
    description="Seed exp-1: ResNet-20 (0.27M params), CIFAR-10 45k/5k/10k, 200-epoch cosine, batch 128.",
)
_MINI = Task(
    name="cifar10-mini", model="resnet8", width=8, resolution=16,
    n_train=4_000, n_val=1_000, n_test=2_000, max_epochs=27, batch_size=128, cutout=8,
    description="CPU-scale real task: ResNet-8 (width 8) on a stratified 4k/1k/2k CIFAR-10 subset at 16x16, "
                "27-epoch cosine (rungs 1/3/9/27 at rf 3).",
)

TASKS: dict[str, Task] = {
    "cifar10-resnet20": _R20,
    "cifar10-resnet50": _R20.replace(name="cifar10-resnet50", model="resnet50",
                                     description="Seed sanity check: torchvision ResNet-50 with a CIFAR stem."),
    "cifar10-resnet20-noise10": _R20.replace(name="cifar10-resnet20-noise10", label_noise=0.1,
                                             description="exp-1 with 10% symmetric label noise."),
    "cifar10-mini": _MINI,
    "cifar10-smoke": _MINI.replace(name="cifar10-smoke", resolution=8, n_train=200, n_val=50, n_test=50,
                                   max_epochs=3, batch_size=25, cutout=4, hg_batch=32,
                                   description="Smoke test: seconds per trial; any tiny CIFAR-10 layout will do."),
    "cifar10-mini-noise10": _MINI.replace(name="cifar10-mini-noise10", label_noise=0.1,
                                          description="cifar10-mini with 10% symmetric label noise."),
}


def get_task(name: str, **overrides) -> Task:
    if name not in TASKS:
        raise ValueError(f"{name!r} is not a task in {list(TASKS)}")
    task = TASKS[name]
    return task.replace(**overrides) if overrides else task
