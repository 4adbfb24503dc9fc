"""CIFAR-10 loading: official files (torchvision) or the offline JPEG ImageFolder copy, decoded once
into a uint8 cache, then split and (for small tasks) subset/resized as tensors.

The whole dataset is held as uint8 tensors (N, 3, H, W); batches are index slices, augmentation is
batched (see augment.py), so the same code runs with the data resident on a GPU.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..tasks import Task

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataError(ValueError):
    """A data directory that is missing or malformed."""


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """``--data-root``, else ``$OHGW_DATA``, else ``data/`` under the user's cache (``cache_dir()``)."""
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get("OHGW_DATA"):
        return Path(os.environ["OHGW_DATA"]).expanduser()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """``$OHGW_CACHE``, else ``~/.cache/ohgw-bench``: decoded arrays, task tensors, the default data root."""
    return Path(os.environ.get("OHGW_CACHE", Path.home() / ".cache" / "ohgw-bench")).expanduser()


def missing_data_message(root: Path) -> str:
    """One line naming the three ways to provide CIFAR-10."""
    return (f"no CIFAR-10 at data root {str(root)!r} (neither an ImageFolder copy train/<class>/*.jpg + "
            f"test/<class>/*.jpg nor torchvision's cifar-10-batches-py); provide it with --data-root DIR, "
            f"or OHGW_DATA=DIR, or add --download to fetch torchvision's copy into {str(root)!r}")


def _detect(root: Path) -> str:
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "imagefolder"
    if (root / "cifar-10-batches-py").is_dir():
        return "torchvision"
    return "missing"


def _decode_imagefolder(root: Path) -> dict[str, np.ndarray]:
    from PIL import Image
    out = {}
    for split in ("train", "test"):
        xs, ys = [], []
        classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        if classes != sorted(CLASSES):
            raise DataError(f"data root {str(root)!r}: {split}/ must hold the 10 CIFAR-10 class folders "
                            f"{list(CLASSES)}, but holds {classes}")
        for label, cls in enumerate(CLASSES):
            files = sorted((root / split / cls).glob("*.jpg")) + sorted((root / split / cls).glob("*.png"))
            if not files:
                raise DataError(f"data root {str(root)!r}: {split}/{cls}/ holds no .jpg/.png images")
            for f in files:
                with Image.open(f) as im:
                    a = np.asarray(im.convert("RGB"))
                if a.shape != (32, 32, 3):
                    raise DataError(f"data root {str(root)!r}: image {f} has shape {a.shape}, expected (32, 32, 3)")
                xs.append(a)
                ys.append(label)
        out[f"{split}_x"] = np.stack(xs)
        out[f"{split}_y"] = np.asarray(ys, dtype=np.int64)
    return out


def _load_torchvision(root: Path, download: bool) -> dict[str, np.ndarray]:
    import torchvision
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = torchvision.datasets.CIFAR10(str(root), train=train, download=download)
        out[f"{split}_x"] = np.asarray(ds.data, dtype=np.uint8)
        out[f"{split}_y"] = np.asarray(ds.targets, dtype=np.int64)
    return out


def load_cifar10(data_root: str | os.PathLike | None = None, download: bool = False) -> dict[str, np.ndarray]:
    """Return {train_x (N,32,32,3) uint8, train_y, test_x, test_y}; decoded once, then cached."""
    root = resolve_data_root(data_root)
    kind = _detect(root) if root.is_dir() else "missing"
    if kind == "missing":
        if not download:
            raise DataError(missing_data_message(root))
        kind = "torchvision"   # what the download below creates
    key = hashlib.sha1(f"{root.resolve()}|{kind}".encode()).hexdigest()[:12]
    cache = cache_dir() / f"cifar10-{key}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                return {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y")}
        except Exception:  # a corrupt cache is rebuilt, never trusted
            cache.unlink(missing_ok=True)
    if kind == "imagefolder":
        arrays = _decode_imagefolder(root)
    else:
        arrays = _load_torchvision(root, download=download)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:  # a killed decode never leaves a half-written cache
        np.savez(f, **arrays)
    return arrays


def _stratified_take(y: np.ndarray, n: int, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of n samples with (as nearly as possible) equal counts per class."""
    classes = np.unique(y)
    mask = np.ones(len(y), bool)
    if exclude is not None:
        mask[exclude] = False
    per = np.full(len(classes), n // len(classes))
    per[: n - per.sum()] += 1
    idx = []
    for c, k in zip(classes, per):
        pool = np.flatnonzero((y == c) & mask)
        if k > len(pool):
            raise DataError(f"class {c} has {len(pool)} images, but the split needs {k}")
        idx.append(rng.choice(pool, size=k, replace=False))
    out = np.concatenate(idx)
    return np.sort(out)


@dataclass
class TaskData:
    train_x: torch.Tensor  # uint8 (N, 3, H, W)
    train_y: torch.Tensor  # int64, possibly noisy
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor     # (1, 3, 1, 1) float, of the training split, in [0, 1] units
    std: torch.Tensor
    n_flipped: int = 0

    def to(self, device) -> "TaskData":
        kw = {k: getattr(self, k).to(device) for k in
              ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "mean", "std")}
        return TaskData(**kw, n_flipped=self.n_flipped)


def _resize_u8(x: np.ndarray, res: int) -> torch.Tensor:
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    if res == t.shape[-1]:
        return t
    f = torch.nn.functional.interpolate(t.float(), size=(res, res), mode="bilinear", antialias=True,
                                        align_corners=False)
    return f.round().clamp(0, 255).to(torch.uint8)


def task_data(task: Task, data_root=None, download: bool = False, arrays: dict | None = None) -> TaskData:
    """Stratified train/val split (fixed by task.split_seed), test subset, resize, label noise.

    Small tasks are cached as tensors too: every trial process (and every resume) loads them, and
    decoding the full arrays would dominate a 2-second epoch."""
    if arrays is None:
        import dataclasses
        root = resolve_data_root(data_root)
        key = hashlib.sha1(f"{root.resolve()}|{sorted(dataclasses.asdict(task).items())}".encode()).hexdigest()[:12]
        cache = cache_dir() / f"task-{task.name}-{key}.pt"
        if cache.exists():
            try:
                return TaskData(**torch.load(cache, weights_only=True))
            except Exception:
                cache.unlink(missing_ok=True)
        td = task_data(task, data_root, download, load_cifar10(data_root, download))
        if task.n_train <= 10_000:
            with atomic_path(cache) as tmp:
                torch.save({k: getattr(td, k) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y",
                                                        "mean", "std", "n_flipped")}, tmp)
        return td
    a = arrays
    rng = np.random.default_rng(task.split_seed)
    n_pool = len(a["train_y"])
    if task.n_train + task.n_val > n_pool:
        raise DataError(f"task {task.name!r} needs n_train + n_val = {task.n_train + task.n_val} images, "
                        f"the data holds {n_pool}")
    val_idx = _stratified_take(a["train_y"], task.n_val, rng)
    train_idx = _stratified_take(a["train_y"], task.n_train, rng, exclude=val_idx)
    test_idx = (np.arange(len(a["test_y"])) if task.n_test >= len(a["test_y"])
                else _stratified_take(a["test_y"], task.n_test, rng))
    train_y = a["train_y"][train_idx].copy()
    n_flipped = 0
    if task.label_noise > 0:
        nrng = np.random.default_rng([task.split_seed, 1_000_003])
        flip = nrng.random(len(train_y)) < task.label_noise
        # symmetric noise: a flipped label becomes one of the 9 *other* classes, uniformly
        train_y[flip] = (train_y[flip] + nrng.integers(1, 10, flip.sum())) % 10
        n_flipped = int(flip.sum())
    train_x = _resize_u8(a["train_x"][train_idx], task.resolution)
    mean = train_x.float().mean(dim=(0, 2, 3), keepdim=True) / 255.0
    std = train_x.float().std(dim=(0, 2, 3), keepdim=True) / 255.0
    return TaskData(
        train_x=train_x, train_y=torch.from_numpy(train_y),
        val_x=_resize_u8(a["train_x"][val_idx], task.resolution), val_y=torch.from_numpy(a["train_y"][val_idx]),
        test_x=_resize_u8(a["test_x"][test_idx], task.resolution), test_y=torch.from_numpy(a["test_y"][test_idx]),
        mean=mean, std=std, n_flipped=n_flipped,
    )


def synthetic_arrays(n_train_per_class: int = 40, n_test_per_class: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Small learnable stand-in for CIFAR-10 (class-dependent colour blobs) for fast tests."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train_per_class), ("test", n_test_per_class)):
        y = np.repeat(np.arange(10), n)
        base = rng.integers(0, 256, size=(10, 1, 1, 3))
        x = np.clip(base[y] + rng.normal(0, 40, size=(len(y), 32, 32, 3)), 0, 255).astype(np.uint8)
        out[f"{split}_x"], out[f"{split}_y"] = x, y.astype(np.int64)
    return out
