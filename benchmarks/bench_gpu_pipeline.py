#!/usr/bin/env python
"""Training-pipeline benchmark: the original per-image PIL pipeline vs ohgw_bench's device-resident Trial.

Measured side by side in one run, printed one line per measurement and written to JSON:

  a. original  DataLoader over PIL images, torchvision ``RandAugment(2, 9)`` + RandomCrop(32, 4) +
            RandomHorizontalFlip + ToTensor + Normalize + Cutout, ResNet-20, SGD, batch 128,
            fp32, NCHW (what a typical reference script does; ``--original-workers`` loader processes).
  b. ours   ``ohgw_bench.trial.trainer.Trial`` on cifar10-resnet20 (uint8 data resident on the device,
            batched augmentation, bf16 autocast + channels_last on CUDA).
  c. N concurrent Trials, one process each, started together behind a barrier: aggregate
            epochs/s vs one trial.
  d. hyper-gradient cost vs a plain training step (``ohgw_bench.trial.hgcost.measure``).

Both pipelines train on the same images (the task's stratified training split). The epoch time
compared is the training pass (all ``n_train // 128`` steps, no evaluation); Trial's own
``train_time`` is that. On CUDA each timed epoch is also timed with CUDA events (the original pipeline's
training pass; the whole ``Trial.run`` epoch for ours, validation included), on CPU with
perf_counter. Warm-up epochs are excluded.

Usage:
    python benchmarks/bench_gpu_pipeline.py --device cpu --size small --out results.json
    python benchmarks/bench_gpu_pipeline.py --device cuda --size full --concurrent 1,4,8 --out bench.json

Also packs/unpacks the offline JPEG copy of CIFAR-10 for the device machine (see README.md):
    python benchmarks/bench_gpu_pipeline.py --pack-data .cache/device/cifar10-jpeg75.pack.npz
    python benchmarks/bench_gpu_pipeline.py --unpack-data PACK --to DIR
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .` (the device machine)
    sys.path.insert(0, str(REPO))

SIZES = {  # n_train / n_val / n_test overrides of cifar10-resnet20 (full: the task's own 45k/5k/10k)
    "tiny": dict(n_train=256, n_val=64, n_test=64),
    "small": dict(n_train=512, n_val=128, n_test=128),
    "full": {},
}
# The Trial's hyperparameters: the CLI's defaults (lr 0.1, wd 5e-4, momentum 0.9, RandAugment magnitude 9),
# label smoothing 0 to match the original pipeline's plain cross-entropy.
PSI = {"log10_lr": -1.0, "log10_wd": -3.3, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.0}
TARGET_EPOCH_S = 0.5     # per epoch per trial, H200, full size
TARGET_SPEEDUP = 10.0    # ours vs the original pipeline


# ----------------------------------------------------------------------------- helpers
def spread(values) -> dict:
    v = [float(x) for x in values]
    if not v:
        return {"n": 0, "min": None, "median": None, "max": None, "values": []}
    return {"n": len(v), "min": min(v), "median": statistics.median(v), "max": max(v), "values": v}


def fmt_spread(s: dict, unit: str = "s") -> str:
    if not s["n"]:
        return "no samples"
    return (f"median {s['median']:.3f} {unit} (min {s['min']:.3f}, max {s['max']:.3f}; n={s['n']})")


def _clean(obj):
    """JSON without NaN/inf (-> null) and with numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(obj, path: str | os.PathLike | None) -> None:
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(_clean(obj), indent=2))
    os.replace(tmp, path)


def _sigterm(signum, frame):  # `timeout` sends SIGTERM: unwind so partial results and children are handled
    raise SystemExit(128 + signum)


class Timer:
    """Wall time of a block: CUDA events on a CUDA device (plus perf_counter with syncs), else perf_counter."""

    def __init__(self, device):
        import torch
        self.torch, self.cuda = torch, device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.e0 = self.torch.cuda.Event(enable_timing=True)
            self.e1 = self.torch.cuda.Event(enable_timing=True)
            self.e0.record()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.e1.record()
            self.torch.cuda.synchronize()
            self.event_s = self.e0.elapsed_time(self.e1) / 1000.0
        self.perf_s = time.perf_counter() - self.t0
        self.seconds = self.event_s if self.cuda else self.perf_s
        return False


def make_task(size: str):
    from ohgw_bench.tasks import get_task
    return get_task("cifar10-resnet20").replace(**SIZES[size])


def load_task_data(task, synthetic: bool):
    from ohgw_bench.trial.data import synthetic_arrays, task_data
    if synthetic:
        per_class = -(-(task.n_train + task.n_val) // 10) + 2  # + slack: the split rounds per class
        return task_data(task, arrays=synthetic_arrays(per_class, max(1, -(-task.n_test // 10)), seed=0))
    return task_data(task)


def device_info(device) -> dict:
    import torch
    import torchvision
    info = {"device": str(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    multiprocessors=p.multi_processor_count, cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        info["device_name"] = f"cpu ({platform.processor() or platform.machine()})"
    return info


# ----------------------------------------------------------------------------- a. the original pipeline
class _Cutout:
    """DeVries & Taylor's Cutout on a normalised CHW tensor: one size x size square of zeros (clipped)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, t):
        import torch
        if self.size <= 0:
            return t
        h, w = t.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.size // 2
        t = t.clone()
        t[:, max(cy - half, 0):min(cy - half + self.size, h), max(cx - half, 0):min(cx - half + self.size, w)] = 0.0
        return t


class _SeedDataset:
    """Numpy uint8 HWC images handed out as PIL images through torchvision transforms, one at a time."""

    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.transform = x_hwc, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def bench_original(task, td, device, warmup: int, epochs: int, workers: int, max_steps: int | None = None) -> dict:
    import torch
    import torch.nn.functional as F
    import torchvision.transforms as T

    from ohgw_bench.trial.models import build_model

    x_hwc = td.train_x.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # the same images ours trains on
    y = td.train_y.cpu().numpy()
    mean = td.mean.flatten().tolist()
    std = td.std.flatten().tolist()
    tf = T.Compose([T.RandomCrop(task.resolution, padding=4), T.RandomHorizontalFlip(),
                    T.RandAugment(num_ops=2, magnitude=9), T.ToTensor(), T.Normalize(mean, std),
                    _Cutout(task.cutout)])
    loader = torch.utils.data.DataLoader(_SeedDataset(x_hwc, y, tf), batch_size=task.batch_size, shuffle=True,
                                         drop_last=True, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = build_model("resnet20").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    times, perf, losses = [], [], []
    for e in range(warmup + epochs):
        with Timer(device) as tm:
            loss_sum = 0.0
            for s, (xb, yb) in enumerate(loader):
                if s >= steps:
                    break
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item()  # the usual per-step logging sync
        if e >= warmup:
            times.append(tm.seconds)
            perf.append(tm.perf_s)
        losses.append(loss_sum / steps)
    scale = len(loader) / steps  # max_steps: extrapolate to a whole epoch
    return {"pipeline": "PIL RandAugment(2,9)+crop+flip+ToTensor+Normalize+Cutout, DataLoader, fp32, NCHW",
            "workers": workers, "warmup_epochs": warmup, "timed_epochs": epochs, "steps_per_epoch": len(loader),
            "steps_timed_per_epoch": steps, "extrapolated": steps < len(loader),
            "timer": "cuda events" if device.type == "cuda" else "perf_counter",
            "epoch_s": spread([t * scale for t in times]), "epoch_perf_counter_s": spread([t * scale for t in perf]),
            "train_loss_per_epoch": losses}


# ----------------------------------------------------------------------------- b. ours
def bench_ours(task, td, device, warmup: int, epochs: int) -> dict:
    from ohgw_bench.trial.trainer import Trial
    trial = Trial(task, PSI, seed=0, data=td, device=device)
    train_s, event_s, rows = [], [], []
    for e in range(warmup + epochs):
        with Timer(device) as tm:
            row = trial.run(trial.epoch + 1)[-1]
        rows.append({k: row[k] for k in ("epoch", "train_loss", "train_acc", "val_acc", "train_time", "epoch_time")})
        if e >= warmup:
            train_s.append(row["train_time"])
            event_s.append(tm.seconds)
    return {"pipeline": "ohgw_bench.trial.trainer.Trial (device-resident uint8, batched augmentation"
                        + (", bf16 autocast, channels_last)" if device.type == "cuda" else ", fp32)"),
            "warmup_epochs": warmup, "timed_epochs": epochs, "steps_per_epoch": trial.steps_per_epoch,
            "epoch_s": spread(train_s),
            "epoch_with_eval_s": spread(event_s),
            "timer": ("Trial.train_time (perf_counter between CUDA syncs); epoch_with_eval_s: CUDA events"
                      if device.type == "cuda" else "perf_counter"),
            "rows": rows}


# ----------------------------------------------------------------------------- c. concurrent trials
def child_main(spec_path: str) -> int:
    """One concurrent trial: set up, warm up, signal ready, wait for go, run the timed epochs, report."""
    spec = json.loads(Path(spec_path).read_text())
    import torch
    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    from ohgw_bench.trial.trainer import Trial
    device = torch.device(spec["device"])
    task = make_task(spec["size"])
    td = load_task_data(task, spec["synthetic"])
    trial = Trial(task, PSI, seed=1000 + spec["index"], data=td, device=device)
    if spec["warmup"] > 0:
        trial.run(spec["warmup"])
    Path(spec["ready"]).write_text(str(os.getpid()))
    deadline = time.time() + spec["wait_s"]
    while not Path(spec["go"]).exists():
        if time.time() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.005)
    t_start = time.time()
    rows = trial.run(spec["warmup"] + spec["epochs"])
    t_end = time.time()
    write_json({"index": spec["index"], "t_start": t_start, "t_end": t_end,
                "train_s": [r["train_time"] for r in rows], "epoch_s": [r["epoch_time"] for r in rows]},
               spec["result"])
    return 0


def bench_concurrent(n: int, args, tmp: Path) -> dict:
    procs, specs = [], []
    d = tmp / f"n{n}"
    d.mkdir(parents=True, exist_ok=True)
    go = d / "go"
    for i in range(n):
        spec = {"index": i, "size": args.size, "device": args.device, "synthetic": args.synthetic,
                "threads": args.threads, "warmup": args.concurrent_warmup, "epochs": args.concurrent_epochs,
                "ready": str(d / f"ready{i}"), "go": str(go), "result": str(d / f"result{i}.json"),
                "wait_s": 900}
        sp = d / f"spec{i}.json"
        sp.write_text(json.dumps(spec))
        specs.append(spec)
        log = open(d / f"log{i}.txt", "w")
        procs.append((subprocess.Popen([sys.executable, __file__, "--_child", str(sp)], stdout=log,
                                       stderr=subprocess.STDOUT, cwd=str(REPO)), log))
    try:
        while not all(Path(s["ready"]).exists() for s in specs):
            dead = [i for i, (p, _) in enumerate(procs) if p.poll() is not None]
            if dead:
                raise RuntimeError(f"concurrent child {dead[0]} exited with {procs[dead[0]][0].returncode} before "
                                   f"the barrier: {(d / f'log{dead[0]}.txt').read_text()[-1500:]}")
            time.sleep(0.05)
        go.write_text(str(time.time()))
        for i, (p, _) in enumerate(procs):
            if p.wait() != 0:
                raise RuntimeError(f"concurrent child {i} exited with {p.returncode}: "
                                   f"{(d / f'log{i}.txt').read_text()[-1500:]}")
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    res = [json.loads(Path(s["result"]).read_text()) for s in specs]
    t0 = min(r["t_start"] for r in res)
    t1 = max(r["t_end"] for r in res)
    total_epochs = n * args.concurrent_epochs
    per_trial = [t for r in res for t in r["train_s"]]
    return {"n": n, "timed_epochs_per_trial": args.concurrent_epochs, "warmup_epochs": args.concurrent_warmup,
            "wall_s": t1 - t0, "aggregate_epochs_per_s": total_epochs / (t1 - t0),
            "per_trial_train_s": spread(per_trial),
            "per_trial_epoch_with_eval_s": spread([t for r in res for t in r["epoch_s"]]),
            "start_skew_s": max(r["t_start"] for r in res) - t0}


# ----------------------------------------------------------------------------- d. hyper-gradient cost
def bench_hgcost(task, td, device, repeats: int, n_batches: int) -> dict:
    from ohgw_bench.trial.hgcost import measure
    psi = dict(PSI, label_smoothing=0.1)  # ε > 0 so ∂J/∂ε is not at its boundary
    out = measure(task, psi, 0, td, device, n_batches=n_batches, repeats=repeats)
    out["repeats"] = repeats
    return out


# ----------------------------------------------------------------------------- data pack for the device
def _jpeg_header_len(b: bytes) -> int:
    """Length of a baseline JPEG's header (SOI .. end of the SOS segment), or 0 if it is not one."""
    if b[:2] != b"\xff\xd8":
        return 0
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return 0
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        seg = int.from_bytes(b[i + 2:i + 4], "big")
        if marker == 0xDA:
            return i + 2 + seg
        i += 2 + seg
    return 0


def pack_imagefolder(root: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Pack an ImageFolder copy ({train,test}/<class>/*) into one .npz, byte-exact.

    The JPEG headers (quantisation and Huffman tables) of the offline copy are all the same, so
    each distinct header is stored once and every file as (header id, entropy-coded body): the
    57 MB of files become ~20 MB, small enough to travel to the device machine."""
    root = Path(root)
    files = sorted(p for split in ("train", "test") for p in (root / split).rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"{root}: no train/ or test/ images to pack")
    headers: dict[bytes, int] = {}
    hid, bodies, offsets = [], [], [0]
    sha = hashlib.sha1()
    for f in files:
        b = f.read_bytes()
        sha.update(b)
        n = _jpeg_header_len(b)
        if n:
            hid.append(headers.setdefault(b[:n], len(headers)))
            bodies.append(b[n:])
        else:
            hid.append(-1)
            bodies.append(b)
        offsets.append(offsets[-1] + len(bodies[-1]))
    hdr_list = sorted(headers, key=headers.get)
    hdr_off = np.cumsum([0] + [len(h) for h in hdr_list])
    names = "\n".join(str(f.relative_to(root)) for f in files).encode()
    extra = {}
    if (root / "README.md").is_file():
        extra["readme"] = np.frombuffer((root / "README.md").read_bytes(), np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, bodies=np.frombuffer(b"".join(bodies), np.uint8), offsets=np.asarray(offsets, np.int64),
             header_id=np.asarray(hid, np.int32), headers=np.frombuffer(b"".join(hdr_list) or b"\0", np.uint8),
             header_offsets=hdr_off.astype(np.int64), names=np.frombuffer(names, np.uint8),
             sha1=np.frombuffer(sha.hexdigest().encode(), np.uint8), **extra)
    os.replace(tmp, out)
    return {"files": len(files), "distinct_headers": len(hdr_list), "bytes": out.stat().st_size,
            "sha1": sha.hexdigest()}


def unpack_imagefolder(pack: str | os.PathLike, dest: str | os.PathLike) -> dict:
    """Inverse of pack_imagefolder; checks the SHA-1 of all files' bytes."""
    dest = Path(dest)
    with np.load(pack) as z:
        bodies, offsets, hid = z["bodies"].tobytes(), z["offsets"], z["header_id"]
        hb, hoff = z["headers"].tobytes(), z["header_offsets"]
        names = z["names"].tobytes().decode().split("\n")
        want = z["sha1"].tobytes().decode()
        readme = z["readme"].tobytes() if "readme" in z.files else None
    headers = [hb[hoff[i]:hoff[i + 1]] for i in range(len(hoff) - 1)]
    sha = hashlib.sha1()
    made = set()
    for i, name in enumerate(names):
        body = bodies[offsets[i]:offsets[i + 1]]
        b = body if hid[i] < 0 else headers[hid[i]] + body
        sha.update(b)
        p = dest / name
        if p.parent not in made:
            p.parent.mkdir(parents=True, exist_ok=True)
            made.add(p.parent)
        p.write_bytes(b)
    if sha.hexdigest() != want:
        raise SystemExit(f"unpacked files do not match the pack's SHA-1 ({sha.hexdigest()} != {want})")
    if readme is not None:
        (dest / "README.md").write_bytes(readme)
    return {"files": len(names), "sha1": want, "dest": str(dest)}


# ----------------------------------------------------------------------------- main
def parse_ns(s: str) -> list[int]:
    if s.strip().lower() in ("", "0", "none", "off"):
        return []
    ns = sorted({int(x) for x in s.split(",") if x.strip()})
    if any(n < 1 for n in ns):
        raise argparse.ArgumentTypeError(f"--concurrent takes positive integers, got {s!r}")
    return ns


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--size", choices=tuple(SIZES), default="small",
                   help="small: 512/128/128 images (CPU, ~1-2 min); full: 45k/5k/10k; tiny: tests")
    p.add_argument("--concurrent", default=None,
                   help="comma list of concurrent trial counts, e.g. 1,4,8; 'none' skips (default: 1,2 on CPU, "
                        "1,2,4,8 on CUDA). N=1 is always measured as the reference.")
    p.add_argument("--out", default=None, help="JSON results (rewritten after every measurement)")
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs for the original pipeline and ours")
    p.add_argument("--original-workers", type=int, default=None, help="DataLoader workers (default 0 on CPU, 4 on CUDA)")
    p.add_argument("--original-max-steps", type=int, default=None,
                   help="time only this many steps of each original-pipeline epoch and extrapolate (default: whole epochs)")
    p.add_argument("--concurrent-epochs", type=int, default=None, help="timed epochs per concurrent trial "
                   "(default 1 on CPU, 2 on CUDA)")
    p.add_argument("--concurrent-warmup", type=int, default=None,
                   help="untimed epochs per concurrent trial before the barrier (default 0 on CPU, 1 on CUDA)")
    p.add_argument("--hg-repeats", type=int, default=None, help="hgcost timing repeats (default 2 CPU, 5 CUDA)")
    p.add_argument("--hg-batches", type=int, default=None, help="hgcost batches (default 2 CPU, 4 CUDA)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: original,ours,concurrent,hgcost")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 1 on CPU; unset on CUDA)")
    p.add_argument("--synthetic", action="store_true", help="synthetic images instead of CIFAR-10 (tests)")
    p.add_argument("--pack-data", metavar="PACK", help="pack the offline CIFAR-10 JPEG copy into PACK and exit")
    p.add_argument("--data-root", default=None, help="with --pack-data: the ImageFolder copy (default: as data.py)")
    p.add_argument("--unpack-data", metavar="PACK", help="unpack PACK into --to DIR and exit")
    p.add_argument("--to", default=None)
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    return p


def target_lines(res: dict, device, size: str) -> list[tuple[str, str, str]]:
    """(target, measured, status) for the two targets."""
    name = res["meta"].get("device_name", "")
    on_h200 = device.type == "cuda" and "H200" in name
    ours = (res.get("ours") or {}).get("epoch_s", {}).get("median")
    ratio = res.get("ratios", {}).get("original_over_ours_epoch_time")
    out = []
    meas = f"{ours:.3f} s/epoch" if ours is not None else "not measured"
    if device.type != "cuda":
        st = "n/a (CPU)"
    elif not on_h200 or size != "full":
        st = f"n/a (needs an H200 at --size full; this is {name or 'cuda'}, --size {size})"
    else:
        st = "n/a (not measured)" if ours is None else ("met" if ours <= TARGET_EPOCH_S else "not met")
    out.append((f"<= {TARGET_EPOCH_S} s per epoch per trial (H200, full size)", meas, st))
    meas = f"{ratio:.2f}x" if ratio is not None else "not measured"
    if device.type != "cuda":
        st = "n/a (CPU)"
    else:
        st = "n/a (not measured)" if ratio is None else ("met" if ratio >= TARGET_SPEEDUP else "not met")
    out.append((f">= {TARGET_SPEEDUP:g}x the original pipeline (epoch time, one trial)", meas, st))
    agg = res.get("ratios", {}).get("best_aggregate_over_original")
    if agg is not None:
        st = "n/a (CPU)" if device.type != "cuda" else ("met" if agg["ratio"] >= TARGET_SPEEDUP else "not met")
        out.append((f">= {TARGET_SPEEDUP:g}x the original pipeline (aggregate throughput, N={agg['n']} concurrent)",
                    f"{agg['ratio']:.2f}x", st))
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args._child:
        return child_main(args._child)
    if args.pack_data:
        from ohgw_bench.trial.data import resolve_data_root
        print(json.dumps(pack_imagefolder(resolve_data_root(args.data_root), args.pack_data)))
        return 0
    if args.unpack_data:
        if not args.to:
            raise SystemExit("--unpack-data needs --to DIR")
        print(json.dumps(unpack_imagefolder(args.unpack_data, args.to)))
        return 0

    signal.signal(signal.SIGTERM, _sigterm)
    import torch
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch.cuda.is_available() is False")
    if args.threads is None:
        args.threads = 0 if cuda else 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    workers = args.original_workers if args.original_workers is not None else (4 if cuda else 0)
    ns = parse_ns(args.concurrent if args.concurrent is not None else ("1,2,4,8" if cuda else "1,2"))
    if ns and 1 not in ns:
        ns = [1] + ns
    if args.concurrent_warmup is None:
        args.concurrent_warmup = 1 if cuda else 0
    if args.concurrent_epochs is None:
        args.concurrent_epochs = 2 if cuda else 1
    reps = args.hg_repeats or (5 if cuda else 2)
    hgb = args.hg_batches or (4 if cuda else 2)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    task = make_task(args.size)
    res: dict = {"meta": {**device_info(device), "size": args.size, "task": task.name, "n_train": task.n_train,
                          "n_val": task.n_val, "n_test": task.n_test, "batch_size": task.batch_size,
                          "steps_per_epoch": task.n_train // task.batch_size, "synthetic_data": args.synthetic,
                          "argv": sys.argv[1:] if argv is None else list(argv),
                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                 "errors": {}, "notes": []}
    print(f"device {res['meta']['device_name']} | torch {torch.__version__} | size {args.size}: "
          f"{task.n_train} train images, batch {task.batch_size}, {task.n_train // task.batch_size} steps/epoch",
          flush=True)
    t_load = time.perf_counter()
    td = load_task_data(task, args.synthetic)
    res["meta"]["data_load_s"] = time.perf_counter() - t_load

    def part(name, fn):
        if name in skip:
            res["notes"].append(f"{name}: skipped (--skip)")
            return None
        try:
            out = fn()
            res[name] = out
            return out
        except Exception as e:  # noqa: BLE001 - one broken part must not lose the others
            traceback.print_exc()
            res["errors"][name] = f"{type(e).__name__}: {e}"
            print(f"[{name}] FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
            return None
        finally:
            write_json(res, args.out)

    ok = False
    tmp = Path(tempfile.mkdtemp(prefix="bench-concurrent-"))
    try:
        orig = part("original", lambda: bench_original(task, td, device, args.warmup_epochs, args.epochs, workers,
                                              args.original_max_steps))
        if orig:
            print(f"[original] epoch (training pass, {orig['steps_per_epoch']} steps, {workers} workers"
                  f"{', extrapolated' if orig['extrapolated'] else ''}): {fmt_spread(orig['epoch_s'])}", flush=True)
        ours = part("ours", lambda: bench_ours(task, td, device, args.warmup_epochs, args.epochs))
        if ours:
            print(f"[ours] epoch (training pass, {ours['steps_per_epoch']} steps): {fmt_spread(ours['epoch_s'])}; "
                  f"with validation: {fmt_spread(ours['epoch_with_eval_s'])}", flush=True)
        # hgcost before the concurrent trials: quick, and kept if a time limit cuts the run short
        hg = part("hgcost", lambda: bench_hgcost(task, td, device, reps, hgb))
        if hg:
            for k, v in hg["ratios_vs_plain_step"].items():
                print(f"[hgcost] {k} vs one plain step: time {v['time']:.2f}x, FLOPs {v['flops']:.2f}x, "
                      f"peak memory {v['peak_memory']:.2f}x (plain step median "
                      f"{hg['cost']['plain_step']['seconds_median'] * 1e3:.1f} ms, repeats={reps}); "
                      f"share of an epoch {hg['epoch_share'][k]:.3f}", flush=True)
        conc = {}
        if "concurrent" in skip or not ns:
            res["notes"].append("concurrent: skipped")
        else:
            if not cuda:
                res["notes"].append(f"concurrent on CPU: {os.cpu_count()} cores (possibly shared) for up to "
                                    f"{max(ns)} trials of {max(args.threads, 1)} thread(s); the aggregate measures "
                                    "core sharing, nothing about a GPU")
            for n in ns:
                r = part(f"concurrent_{n}", lambda n=n: bench_concurrent(n, args, tmp))
                if r:
                    conc[n] = r
                    res.pop(f"concurrent_{n}", None)
                    res.setdefault("concurrent", {})[str(n)] = r
                    rel = (f"; {r['aggregate_epochs_per_s'] / conc[1]['aggregate_epochs_per_s']:.2f}x one trial"
                           if 1 in conc else "")
                    print(f"[concurrent N={n}] aggregate {r['aggregate_epochs_per_s']:.3f} epochs/s over "
                          f"{r['wall_s']:.1f} s ({n}x{r['timed_epochs_per_trial']} epochs){rel}; per-trial training "
                          f"pass {fmt_spread(r['per_trial_train_s'])}", flush=True)
        ok = True
    finally:
        ratios = {}
        s_med = (res.get("original") or {}).get("epoch_s", {}).get("median")
        o_med = (res.get("ours") or {}).get("epoch_s", {}).get("median")
        if s_med and o_med:
            ratios["ours_over_original_epoch_time"] = o_med / s_med
            ratios["original_over_ours_epoch_time"] = s_med / o_med
        conc = res.get("concurrent", {})
        if "1" in conc:
            base = conc["1"]["aggregate_epochs_per_s"]
            ratios["concurrent_aggregate_over_one"] = {n: c["aggregate_epochs_per_s"] / base for n, c in conc.items()}
        if conc and s_med:
            best = max(conc.values(), key=lambda c: c["aggregate_epochs_per_s"])
            ratios["best_aggregate_over_original"] = {"n": best["n"], "ratio": best["aggregate_epochs_per_s"] * s_med}
        res["ratios"] = ratios
        res["targets"] = [{"target": t, "measured": m, "status": s} for t, m, s in target_lines(res, device, args.size)]
        res["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res["meta"]["complete"] = ok
        write_json(res, args.out)
        print("---- ratios")
        if "ours_over_original_epoch_time" in ratios:
            print(f"ours vs original epoch time: {ratios['ours_over_original_epoch_time']:.3f} "
                  f"(speed-up {ratios['original_over_ours_epoch_time']:.2f}x)")
        for n, r in ratios.get("concurrent_aggregate_over_one", {}).items():
            print(f"concurrent aggregate throughput N={n} vs one trial: {r:.2f}x")
        if "best_aggregate_over_original" in ratios:
            b = ratios["best_aggregate_over_original"]
            print(f"best concurrent aggregate (N={b['n']}) vs original single-trial throughput: {b['ratio']:.2f}x")
        print("---- targets")
        for t in res["targets"]:
            print(f"{t['target']}: {t['measured']} -> {t['status']}")
        for k, v in res["errors"].items():
            print(f"ERROR {k}: {v}")
        for n in res["notes"]:
            print(f"note: {n}")
        if args.out:
            print(f"wrote {args.out}")
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok and not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
