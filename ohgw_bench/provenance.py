"""Provenance recorded with every run and results directory."""
from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("ohgw-bench", "syne-tune", "torch", "torchvision", "numpy", "pandas", "scipy", "scikit-learn")


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """HEAD, plus a hash of the package's uncommitted changes when there are any (two different edits
    of the same commit are different code). Read once per process: the code a process runs is the code
    it imported."""
    try:
        root = Path(__file__).resolve().parents[1]
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        diff = subprocess.run(["git", "diff", "HEAD", "--", Path(__file__).resolve().parent.name], cwd=root,
                              capture_output=True, timeout=10)
        dirty = f"+dirty.{hashlib.sha256(diff.stdout).hexdigest()[:12]}" if diff.stdout.strip() else ""
        return rev.stdout.strip() + dirty
    except Exception:
        return "unknown"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the package's source files and data (relative path and bytes, sorted): the code a
    result depends on. Unlike the git revision it does not change with commits that leave the package
    alone (docs, configs, shipped data), and it exists without git. Read once per process."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(p for p in pkg.rglob("*") if p.is_file() and p.suffix in (".py", ".json")
                    and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def device_name(device=None) -> str:
    import torch
    if device is not None and str(device).startswith("cuda") or (device is None and torch.cuda.is_available()):
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def collect(device=None) -> dict:
    return {"versions": versions(), "git_revision": git_revision(), "code_sha256": code_digest(),
            "device_name": device_name(device),
            "host": platform.node()}
