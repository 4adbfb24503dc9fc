"""Atomic file writes: a reader (another process, a resumed sweep, a crash's aftermath) sees the old
file or the whole new one, never half of it. Standard library only, so that a real trial process can
use it without paying for a heavier import."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on leaving the block it replaces ``path``
    (``os.replace``: atomic within one file system, hence the same directory). The parent directory is
    created if missing; if the block raises, the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
