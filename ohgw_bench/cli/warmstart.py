"""The ``calibrate`` verb: the random warm start's σ from measured hyper-gradients."""
from __future__ import annotations


def register(sub) -> None:
    c = sub.add_parser("calibrate", help="calibrate the random warm start's sigma from measured hyper-gradients")
    c.add_argument("--task", required=True)
    c.add_argument("--source", default=None, help="hypergrads.parquet (default surrogates/TASK/hypergrads.parquet)")
    c.add_argument("--out", default=None)
    c.set_defaults(fn=cmd_calibrate)


def cmd_calibrate(args) -> int:
    """σ of the random warm start: the empirical mean |∂J/∂ψ| per coordinate over measured batches."""
    import json
    from pathlib import Path

    import pandas as pd

    from ..space import PSI_KEYS
    from ..store import write_json_atomic
    from ..tasks import get_task
    from ..warmstart.calibration import CALIBRATION_DIR
    get_task(args.task)
    src = Path(args.source or f"surrogates/{args.task}/hypergrads.parquet")
    if not src.exists():
        raise ValueError(f"calibration source {str(src)!r} does not exist; run `ohgw-bench collect` "
                         f"(phase hypergrads) for task {args.task!r} first")
    hg = pd.read_parquet(src)
    cal = {"task": args.task, "source": str(src), "n_batches": int(len(hg)),
           "n_configs": int(hg["hg_config_id"].nunique()),
           "abs_hypergrad_mean": {k: float(hg[f"hg_{k}"].abs().mean()) for k in PSI_KEYS},
           "note": "random warm start: sigma_i = eta * abs_hypergrad_mean_i, the mean magnitude of a raw "
                   "hyper-gradient step's component, so both variants inject the same energy per coordinate"}
    out = Path(args.out) if args.out else CALIBRATION_DIR / f"{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cal, out)
    print(json.dumps(cal, indent=2))
    return 0
