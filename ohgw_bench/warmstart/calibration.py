"""Per-task calibration of the random warm start: the mean magnitude of measured hyper-gradients
(written by ``ohgw-bench calibrate`` into ``ohgw_bench/calibration/<task>.json``)."""
from __future__ import annotations

import json
from pathlib import Path

CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "calibration"


def load_calibration(task: str) -> dict:
    p = CALIBRATION_DIR / f"{task}.json"
    if not p.exists():
        raise ValueError(f"task {task!r} has no hyper-gradient calibration at {p}; "
                         f"run `ohgw-bench calibrate --task {task}` first")
    return json.loads(p.read_text())
