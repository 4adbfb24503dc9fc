"""YAML configs, validated with pydantic: unknown keys are rejected with the valid ones listed,
wrong types are named with the value; ``--set``-style overrides are checked against the same schema."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# τ = this quantile of the baseline replicates' best val acc within the budget, so that about
# three in four baseline replicates reach it: enough events for Kaplan–Meier medians and a spread.
DEFAULT_TAU_QUANTILE = 0.25


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportConfig(_Strict):
    # tau "auto": the tau_quantile-quantile of the baseline replicates' best val acc within the
    # budget, so that about (1 - tau_quantile) of them reach it (the default: three in four)
    tau: Union[float, Literal["auto"]] = "auto"
    tau_quantile: float = Field(DEFAULT_TAU_QUANTILE, gt=0, lt=1)
    baseline: str = "baseline"


class TargetedConfig(_Strict):
    """Repeated seeds where the schedulers look (``surrogate.targets``)."""
    sweeps: list[str] = []            # real sweeps' results directories whose promoted configurations are repeated
    promoted_9: int = Field(0, ge=0)  # configurations they took to epoch >= 9
    promoted_3: int = Field(0, ge=0)  # configurations they took to epoch 3 but not 9
    top_quartile: int = Field(0, ge=0)  # single-seed design configurations in the top quartile
    edge: int = Field(0, ge=0)        # single-seed design configurations with the largest lr/(1-momentum)
    seeds: int = Field(3, ge=2)       # full-budget runs per targeted configuration
    seed: int = 0                     # of the random picks

    @model_validator(mode="after")
    def _sweeps(self):
        if (self.promoted_9 or self.promoted_3) and not self.sweeps:
            raise ValueError(f"targeted.sweeps must name real sweeps when promoted_9={self.promoted_9} or "
                             f"promoted_3={self.promoted_3}")
        return self


class CollectConfig(_Strict):
    task: str
    out: str = ""                     # default surrogates/<task>
    n_configs: int = Field(80, ge=2)  # Sobol design points trained to the full budget
    n_repeat_configs: int = Field(30, ge=0)   # the first ones of those get repeated seeds
    n_repeat_seeds: int = Field(3, ge=1)
    design_seed: int = 0
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    hypergrad_configs: int = Field(256, ge=0)  # measured at initialisation only (no training)
    hypergrad_batches: int = Field(4, ge=1)
    data_root: Optional[str] = None
    targeted: Optional[TargetedConfig] = None   # collected after the design is complete

    @model_validator(mode="after")
    def _repeats(self):
        if self.n_repeat_configs > self.n_configs:
            raise ValueError(f"n_repeat_configs <= n_configs must hold, but got "
                             f"n_repeat_configs={self.n_repeat_configs}, n_configs={self.n_configs}")
        return self


class SweepConfig(_Strict):
    name: str
    task: str
    backend: Literal["real", "surrogate"] = "real"
    surrogate: Optional[str] = None   # artifact directory, for backend surrogate
    schedulers: list[str] = ["asha"]
    variants: dict[str, str] = {"baseline": "none"}   # name -> warm-start spec (or a registered variant name)
    seeds: Union[str, list[int]] = "0:2"               # "A:B" (B exclusive) or a list
    n_workers: int = Field(2, ge=1)
    budget_s: Optional[float] = Field(None, gt=0)      # replicate budget on its own clock
    budget_gpu_hours: Optional[float] = Field(None, gt=0)  # alternative: worker-hours; budget_s = h*3600/n_workers
    max_epochs: Optional[int] = Field(None, ge=1)      # default: the task's
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    max_trials: Optional[int] = Field(None, ge=1)
    threads_per_trial: int = Field(1, ge=1)
    tuner_sleep_time: float = Field(0.5, ge=0)
    # how real trial segments run: "persistent" (long-lived worker processes, sweeps/backends/persistent.py) or "local"
    # (Syne Tune's LocalBackend, one process per segment). Unset: persistent for real sweeps; for
    # surrogate sweeps the runner whose start-up calibration the surrogate holds by default.
    runner: Optional[Literal["persistent", "local"]] = None
    data_root: Optional[str] = None
    out: Optional[str] = None                          # default results/<name>
    report: ReportConfig = ReportConfig()

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        seed_list(v)
        return v

    @model_validator(mode="after")
    def _budget(self):
        if (self.budget_s is None) == (self.budget_gpu_hours is None):
            raise ValueError("exactly one of budget_s and budget_gpu_hours must be given, but got "
                             f"budget_s={self.budget_s}, budget_gpu_hours={self.budget_gpu_hours}")
        if self.backend == "surrogate" and not self.surrogate:
            raise ValueError("backend 'surrogate' needs the key 'surrogate' (an artifact directory)")
        return self

    @property
    def replicate_budget_s(self) -> float:
        return self.budget_s if self.budget_s is not None else self.budget_gpu_hours * 3600.0 / self.n_workers

    @property
    def real_runner(self) -> str:
        """The runner real trials use."""
        return self.runner or "persistent"

    @property
    def seed_list(self) -> list[int]:
        return seed_list(self.seeds)

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"results/{self.name}")


def seed_list(v) -> list[int]:
    if isinstance(v, list):
        return [int(s) for s in v]
    a, sep, b = str(v).partition(":")
    try:
        lo, hi = int(a), int(b)
    except ValueError:
        raise ValueError(f"seeds must be 'A:B' (B exclusive) or a list of integers, but got seeds={v!r}") from None
    if not sep or hi <= lo:
        raise ValueError(f"seeds 'A:B' needs A < B, but got seeds={v!r}")
    return list(range(lo, hi))


def _one_line(e: ValidationError, what: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        model = SweepConfig if what == "sweep" else CollectConfig
        valid = sorted(model.model_fields)
        return f"{what} config key {loc!r} is not known; valid keys are {valid}"
    if err["type"] == "missing":
        return f"{what} config key {loc!r} is required"
    msg = err["msg"].removeprefix("Value error, ")
    if err["loc"]:
        return f"{what} config key {loc!r}: {msg}, but got {err.get('input')!r}"
    return f"{what} config: {msg}"


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"config file {str(p)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping of keys, but holds {type(raw).__name__}")
    return raw


def parse(model: type[_Strict], raw: dict, what: str):
    try:
        return model(**raw)
    except ValidationError as e:
        raise ValueError(_one_line(e, what)) from None


def load_sweep(path, overrides: dict | None = None) -> SweepConfig:
    raw = load_yaml(path)
    raw.update(overrides or {})
    return parse(SweepConfig, raw, "sweep")


def load_collect(path, overrides: dict | None = None) -> CollectConfig:
    raw = load_yaml(path)
    raw.update(overrides or {})
    return parse(CollectConfig, raw, "collect")


def dump(cfg: _Strict) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
