"""Seeds derived from (replicate seed, trial id, purpose, ...): the common random numbers that pair
variants. Used by real trials and by the numpy-only simulation, so it imports neither torch nor Syne Tune."""
from __future__ import annotations

import zlib

import numpy as np


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from (replicate seed, trial id, purpose, ...), stable across processes."""
    ss = np.random.SeedSequence([abs(hash_str(p)) if isinstance(p, str) else int(p) for p in parts])
    return int(ss.generate_state(2, np.uint32).astype(np.uint64).view(np.uint64)[0] >> np.uint64(1))


def hash_str(s: str) -> int:
    return zlib.crc32(s.encode())


def rng_for(*parts) -> np.random.Generator:
    """A numpy Generator on the stream ``derive_seed(*parts)``."""
    return np.random.default_rng(derive_seed(*parts))
