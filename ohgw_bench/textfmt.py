"""Number formatting for the generated markdown (report, frontier, README and statistics blocks), and the
replacement of a generated block between two markers in a hand-written file."""
from __future__ import annotations

import math

MISSING = "–"


def _finite(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fixed(x, digits: int = 4, missing: str = MISSING) -> str:
    """``x`` with ``digits`` decimals; ``missing`` for None, NaN or ±∞."""
    v = _finite(x)
    return missing if v is None else f"{v:.{digits}f}"


def fixed_or_na(x, digits: int = 3) -> str:
    """``fixed`` as the fidelity and verification tables write it: 3 decimals, ``n/a`` when missing."""
    return fixed(x, digits, missing="n/a")


def num(x, fmt: str = "{:.3g}") -> str:
    """``x`` through ``fmt``; ``–`` for None, NaN or ±∞."""
    v = _finite(x)
    return MISSING if v is None else fmt.format(v)


def pct(x, digits: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage (``0.123`` → ``12.3 %``); ``signed`` adds ``+`` and writes ±∞ (a reduction
    whose confidence bound is unbounded) as ``+∞``/``−∞``; otherwise ``–`` for None, NaN or ±∞."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return MISSING
    if signed and math.isinf(v):
        return "+∞" if v > 0 else "−∞"
    if not math.isfinite(v):
        return MISSING
    return f"{100 * v:{'+' if signed else ''}.{digits}f} %"


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with everything between the lines ``begin`` and ``end`` replaced by ``body``.

    Raises:
        ValueError: a marker is missing (the message names it).
    """
    for m in (begin, end):
        if m not in text:
            raise ValueError(f"the marker {m!r} is missing")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"
