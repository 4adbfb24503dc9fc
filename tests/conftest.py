"""Shared fixtures: synthetic CIFAR-like data, a tiny real task, a synthetic collected dataset and the
surrogate fitted on it (so tests never need the real CIFAR-10 files or hours of collection)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ohgw_bench import space
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.tasks import get_task
from ohgw_bench.trial.data import synthetic_arrays, task_data

torch.set_num_threads(1)
# Tests that read CIFAR-10 (slow and GPU ones) use the offline copy beside the checkout unless the
# caller names another; the package itself has no such default (its default is the user's cache).
os.environ.setdefault("OHGW_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg75"))


@pytest.fixture(scope="session")
def tiny_task():
    # 8x8 images, 256 training images, 3 epochs: seconds per trial on one core
    return get_task("cifar10-mini").replace(name="cifar10-mini", resolution=8, n_train=256, n_val=64, n_test=64,
                                            max_epochs=3, batch_size=32, cutout=4, hg_batch=32)


@pytest.fixture(scope="session")
def tiny_data(tiny_task):
    return task_data(tiny_task, arrays=synthetic_arrays(40, 10))


def synthetic_collection(n_configs=40, n_rep=10, n_seeds=3, epochs=27, n_hg=60, seed=0):
    """Curves and hyper-gradients in the format `ohgw-bench collect` writes, from a smooth known law."""
    rng = np.random.default_rng(seed)
    rows, hrows = [], []
    U = rng.random((n_configs, 5))
    for i, u in enumerate(U):
        psi = space.from_unit(u)
        final = 0.25 + 0.35 * np.exp(-4 * (u[0] - 0.6) ** 2) - 0.08 * u[3] + 0.05 * u[2]
        for s in range(n_seeds if i < n_rep else 1):
            off = rng.normal(0, 0.15)
            for e in range(1, epochs + 1):
                z = np.log(final / (1 - final)) * (1 - np.exp(-e / 6)) - 1.5 * np.exp(-e / 6) + off \
                    + rng.normal(0, 0.05)
                acc = 1 / (1 + np.exp(-z))
                rows.append({"config_id": i, "seed": s, **{f"psi_{k}": psi[k] for k in PSI_KEYS}, "epoch": e,
                             "val_acc": acc, "val_loss": 1.0, "train_loss": 1.0, "train_acc": acc,
                             "test_acc": acc + rng.normal(0, 0.01) if e in (1, 3, 9, epochs) else np.nan,
                             "test_loss": np.nan, "epoch_time": 2.0 * np.exp(rng.normal(0, 0.05)) * (1 + 0.1 * u[0]),
                             "train_time": 1.8, "cum_time": 2.0 * e, "diverged": 0})
    for j, u in enumerate(rng.random((n_hg, 5))):
        psi = space.from_unit(u)
        mean = np.array([-0.1 * (1 + u[0]), -1e-5, -0.02 * u[2], 1e-4, -0.01])
        for b in range(4):
            g = mean + rng.normal(0, 1, 5) * np.abs(mean) * 0.5
            hrows.append({"hg_config_id": j, "batch": b, **{f"psi_{k}": psi[k] for k in PSI_KEYS},
                          **{f"hg_{k}": g[t] for t, k in enumerate(PSI_KEYS)}, "seconds": 0.3})
    return pd.DataFrame(rows), pd.DataFrame(hrows)


@pytest.fixture(scope="session")
def synthetic_surrogate_dir(tmp_path_factory):
    from ohgw_bench.surrogate.fit import fit_surrogate
    d = tmp_path_factory.mktemp("sur")
    curves, hgs = synthetic_collection()
    curves.to_parquet(d / "curves.parquet")
    hgs.to_parquet(d / "hypergrads.parquet")
    fit_surrogate(curves, hgs, "cifar10-mini", 27, startup_s=1.0).save(d)
    return d


@pytest.fixture(scope="session")
def tiny_imagefolder(tmp_path_factory):
    """A CIFAR-10-shaped ImageFolder (30 train / 10 test JPEGs per class) for CLI and sweep tests."""
    from PIL import Image

    from ohgw_bench.trial.data import CLASSES
    root = tmp_path_factory.mktemp("cifar-tiny")
    arr = synthetic_arrays(30, 10, seed=3)
    for split in ("train", "test"):
        for i, (x, y) in enumerate(zip(arr[f"{split}_x"], arr[f"{split}_y"])):
            d = root / split / CLASSES[y]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(d / f"{i:04d}.jpg", quality=95)
    return root


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
