"""GPU checks (marked ``gpu``, skipped without CUDA) and the benchmark's CPU path.

    python -m pytest -q -m gpu tests/test_gpu.py     # on a machine with a CUDA GPU

The augmentation draws its random numbers on the generator's device and moves them to the
data's device, so CUDA data augmented with a *CPU* generator uses exactly the ops, signs, crops
and holes of the CPU run with the same seed: the CPU/CUDA comparison below is op for op. (A
CUDA generator draws a different stream from a CPU one with the same seed; that run is checked
for shapes, dtypes and value ranges only.)
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ohgw_bench.trial import augment
from ohgw_bench.trial.hypergrad import BatchSource, hypergrad_batch, lookahead
from ohgw_bench.trial.models import build_model

CUDA = torch.cuda.is_available()
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
PSI = {"log10_lr": -1.0, "log10_wd": -3.3, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu_pipeline.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_gpu_pipeline", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def _no_tf32():
    """Plain float32 on CUDA (cuDNN convolutions default to TF32). Legacy flags only: mixing them with
    the fp32_precision API makes later reads of the legacy flags raise."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _images(n=64, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images (a random field plus a gradient) so that colour ops have something to do
    base = torch.randint(0, 256, (n, 3, size, size), generator=g).float()
    ramp = torch.linspace(0, 255, size)[None, None, None, :]
    return ((0.6 * base + 0.4 * ramp).round().clamp(0, 255)).to(torch.uint8)


# ----------------------------------------------------------------------------- augmentation, CPU vs CUDA
@pytest.mark.parametrize("op", [o for o in augment.OPS if o != "Identity"])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_apply_op_cuda_matches_cpu(op, sign):
    if sign < 0 and op not in augment.SIGNED:
        pytest.skip("unsigned op")
    x = _images()
    table = augment.magnitude_table(op, x.shape[-1])
    mag = float(table[9]) if table.ndim > 0 else 0.0
    a = augment.apply_op(x, op, sign * mag)
    with _no_tf32():  # Sharpness blurs with a cuDNN convolution, TF32 by default
        b = augment.apply_op(x.cuda(), op, sign * mag)
    assert b.device.type == "cuda" and b.dtype == torch.uint8 and b.shape == a.shape
    d = (a.int() - b.cpu().int()).abs()
    frac = float((d > 0).float().mean())
    if op in GEOMETRIC:  # nearest neighbour: the same pixels up to a rare tie in the sampling grid
        assert frac < 0.02, f"{op}: {frac:.4f} of the values differ"
    else:  # colour ops: float arithmetic, at most one grey level apart, rarely
        assert int(d.max()) <= 1, f"{op}: max difference {int(d.max())} grey levels"
        assert frac < 0.05, f"{op}: {frac:.4f} of the values differ"


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("magnitude", [0, 9, 30])
def test_augment_batch_cuda_matches_cpu_with_cpu_generator(magnitude):
    x = _images(128)
    mean = x.float().mean(dim=(0, 2, 3), keepdim=True) / 255
    std = x.float().std(dim=(0, 2, 3), keepdim=True) / 255
    out = []
    for dev in ("cpu", "cuda"):
        g = torch.Generator().manual_seed(123)  # CPU generator in both runs: the same random numbers
        with _no_tf32():
            out.append(augment.augment_batch(x.to(dev), magnitude, 2, 16, g, mean.to(dev), std.to(dev)))
    a, b = out[0], out[1]
    assert b.device.type == "cuda" and b.dtype == torch.float32 and b.shape == a.shape == (128, 3, 32, 32)
    b = b.cpu()
    d = (a - b).abs()
    level = float((1 / 255 / std).max())  # one grey level in normalised units
    assert (d > 1e-4).float().mean() < 0.05, f"{(d > 1e-4).float().mean():.4f} of the values differ"
    assert (d > 3.5 * level).float().mean() < 0.005, "large differences beyond rounding"
    # the Cutout holes are where they are on the CPU
    assert ((a == 0) == (b == 0)).float().mean() > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_augment_batch_on_cuda_with_cuda_generator_ranges():
    x = _images(256).cuda()
    mean = x.float().mean(dim=(0, 2, 3), keepdim=True) / 255
    std = x.float().std(dim=(0, 2, 3), keepdim=True) / 255
    g = torch.Generator(device="cuda").manual_seed(7)
    y = augment.augment_batch(x, 9, 2, 16, g, mean, std)
    assert y.device.type == "cuda" and y.dtype == torch.float32 and y.shape == (256, 3, 32, 32)
    assert torch.isfinite(y).all()
    lo, hi = (0 - mean) / std, (1 - mean) / std
    assert (y >= lo - 1e-4).all() and (y <= hi + 1e-4).all()
    assert ((y == 0).flatten(1).any(1)).all(), "every image has a Cutout hole"
    # the same generator state replays the same augmentation (determinism on the GPU)
    g2 = torch.Generator(device="cuda").manual_seed(7)
    assert torch.equal(augment.augment_batch(x, 9, 2, 16, g2, mean, std), y)
    # common random numbers: magnitude 0 differs from 9 only through the ops, crops/holes are shared
    g3 = torch.Generator(device="cuda").manual_seed(7)
    y0 = augment.augment_batch(x, 0, 2, 16, g3, mean, std)
    assert ((y0 == 0) == (y == 0)).float().mean() > 0.95


# ----------------------------------------------------------------------------- a Trial on CUDA (bf16)
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_trial_one_epoch_cuda_bf16(tiny_task, tiny_data):
    from ohgw_bench.trial.trainer import Trial
    trial = Trial(tiny_task, PSI, seed=0, data=tiny_data, device=torch.device("cuda"),
                  warm_start="hypergradient:eta=1e-3,steps=1,rule=raw")
    assert trial.amp and trial.data.train_x.device.type == "cuda" and trial.data.train_x.dtype == torch.uint8
    assert next(trial.model.parameters()).dtype == torch.float32  # master weights stay fp32
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        xb = augment.normalise(trial.data.val_x[:8], trial.data.mean, trial.data.std)
        out = trial.model(xb.contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.bfloat16
    rows = trial.run(1)
    assert len(rows) == 1
    r = rows[0]
    assert r["diverged"] == 0
    assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"])
    assert 0.0 <= r["val_acc"] <= 1.0 and "test_acc" in r  # epoch 1 is a milestone
    assert r["epoch_time"] > 0 and math.isfinite(r["plain_step_s"])
    assert all(math.isfinite(r[f"hg_{k}"]) for k in ("log10_lr", "log10_wd", "momentum", "label_smoothing"))


# ----------------------------------------------------------------------------- hyper-gradients, CPU vs CUDA
def _smooth_model_and_batch(seed=0):
    torch.manual_seed(seed)
    m = build_model("resnet8", smooth=True, width=8)
    m.train()
    g = torch.Generator().manual_seed(seed + 1)
    x_tr, y_tr = torch.randn(32, 3, 16, 16, generator=g), torch.randint(10, (32,), generator=g)
    x_v, y_v = torch.randn(32, 3, 16, 16, generator=g), torch.randint(10, (32,), generator=g)
    buf = {n: 0.01 * torch.randn(p.shape, generator=g) for n, p in m.named_parameters()}
    return m, (x_tr, y_tr, x_v, y_v), buf


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_lookahead_hypergradient_cuda_matches_cpu_float32():
    # On the CPU, float32 agrees with float64 to ~2e-6 relative on this case; allow 2e-3.
    nat = {"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9, "label_smoothing": 0.1, "ra_magnitude": 9}
    m, batch, buf = _smooth_model_and_batch()
    j_cpu, h_cpu = lookahead(m, nat, *batch, buf)
    mc = copy.deepcopy(m).cuda()
    with _no_tf32():
        j_gpu, h_gpu = lookahead(mc, nat, *[t.cuda() for t in batch], {k: v.cuda() for k, v in buf.items()})
    assert math.isfinite(j_gpu) and np.all(np.isfinite(h_gpu))
    assert j_gpu == pytest.approx(j_cpu, rel=1e-4)
    np.testing.assert_allclose(h_gpu, h_cpu, rtol=2e-3, atol=1e-8)
    assert np.all(h_cpu != 0)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_hypergrad_batch_all_five_cuda_matches_cpu(tiny_task):
    """All five ∂J/∂ψ from one mini-batch (the m finite difference included), real augmentation."""
    from ohgw_bench.trial.data import synthetic_arrays, task_data
    task = tiny_task.replace(resolution=16, cutout=8)
    td = task_data(task, arrays=synthetic_arrays(40, 10))
    torch.manual_seed(0)
    m = build_model("resnet8", smooth=True, width=8)
    m.train()
    res = []
    for dev in ("cpu", "cuda"):
        d = td.to(dev)
        src = BatchSource(d.train_x, d.train_y, d.mean, d.std, batch_size=64, num_ops=2, cutout=8)
        model = copy.deepcopy(m).to(dev)
        g = torch.Generator().manual_seed(5)  # CPU generator both times: same batch, ops, crops, holes
        with _no_tf32():
            res.append(hypergrad_batch(model, PSI, src, None, g, with_m=True))
    cpu, cuda = res
    assert np.all(np.isfinite(cuda[[0, 1, 3, 4]]))
    np.testing.assert_allclose(cuda[[0, 1, 4]], cpu[[0, 1, 4]], rtol=5e-3, atol=1e-8)
    assert cuda[2] == cpu[2] == 0.0  # no momentum buffer yet: ∂J/∂μ = 0
    np.testing.assert_allclose(cuda[3], cpu[3], rtol=5e-2, atol=2e-5)  # finite difference in m


# ----------------------------------------------------------------------------- the benchmark (CPU)
def test_bench_cpu_path_tiny(tmp_path):
    """The benchmark's CPU path end to end on 256 synthetic images (original pipeline, ours, ratios, JSON)."""
    bench = _bench_module()
    out = tmp_path / "bench.json"
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        rc = bench.main(["--device", "cpu", "--size", "tiny", "--synthetic", "--warmup-epochs", "0", "--epochs", "1",
                         "--concurrent", "none", "--skip", "hgcost", "--threads", "1", "--out", str(out)])
    text = buf.getvalue()
    assert rc == 0, text
    res = json.loads(out.read_text())
    assert res["meta"]["complete"] and not res["errors"]
    assert res["meta"]["n_train"] == 256 and res["meta"]["steps_per_epoch"] == 2
    for part in ("original", "ours"):
        assert res[part]["epoch_s"]["n"] == 1 and res[part]["epoch_s"]["median"] > 0
    assert res["ratios"]["ours_over_original_epoch_time"] > 0
    assert [t["status"] for t in res["targets"]][:2] == ["n/a (CPU)", "n/a (CPU)"]
    assert "ours vs original epoch time" in text and "n/a (CPU)" in text


@pytest.mark.slow
def test_bench_cpu_concurrent_tiny(tmp_path):
    """Concurrent trials behind the barrier (subprocesses; slow: each imports torch)."""
    bench = _bench_module()
    out = tmp_path / "bench.json"
    with contextlib.redirect_stdout(io.StringIO()):
        rc = bench.main(["--device", "cpu", "--size", "tiny", "--synthetic", "--concurrent", "1", "--skip",
                         "seed,ours,hgcost", "--threads", "1", "--out", str(out)])
    res = json.loads(out.read_text())
    assert rc == 0, res["errors"]
    c = res["concurrent"]["1"]
    assert c["aggregate_epochs_per_s"] > 0 and c["per_trial_train_s"]["n"] == 1


def test_pack_unpack_imagefolder_roundtrip(tmp_path):
    """The device data pack is byte-exact (shared JPEG headers stored once, other files whole)."""
    from PIL import Image
    bench = _bench_module()
    root = tmp_path / "src"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("airplane", "cat"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i:04d}.jpg", quality=75)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "train" / "cat" / "0009.png")
    (root / "README.md").write_text("readme\n")
    info = bench.pack_imagefolder(root, tmp_path / "p.npz")
    assert info["files"] == 13 and info["distinct_headers"] == 1
    bench.unpack_imagefolder(tmp_path / "p.npz", tmp_path / "dst")
    src = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    dst = sorted(p.relative_to(tmp_path / "dst") for p in (tmp_path / "dst").rglob("*") if p.is_file())
    assert src == dst
    assert all((root / p).read_bytes() == (tmp_path / "dst" / p).read_bytes() for p in src)
