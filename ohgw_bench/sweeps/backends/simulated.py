"""Simulated sweeps on a learned surrogate: the same Syne Tune schedulers and the same warm-start
object, in simulated time (Tuner + UserBlackboxBackend + SimulatorCallback).

Semantics kept from the real trials:
- a trial's curve is a full-budget run (cosine over the maximum budget), so a paused-and-resumed
  trial continues the same curve;
- every (re)start of a trial costs the real trials' process start-up time (``startup_s``);
- the warm start runs in the scheduler's ``_on_config_suggest`` hook with a surrogate
  hyper-gradient oracle, and its real cost (seconds per hyper-gradient batch) is added to the
  trial's first epoch;
- common random numbers: the curve noise, epoch times and hyper-gradient draws of trial i in
  replicate s come from streams keyed by (s, i, purpose), identical across variants, so paired
  variants differ only through the warm start;
- the scheduler's own compute time is modelled, not measured (bit-identical reruns): where it matters
  (DyHPO; ``schedulers.decision_time_model``) each call adds its modelled seconds to the simulated
  clock before the next trial start or fetch, as a real sweep's free workers wait for the decision;
  ASHA's and PASHA's decisions take under one polling interval per replicate and add nothing;
- the Tuner's idle wait is the real runner's: with Syne Tune's LocalBackend (runner "local") the
  real Tuner sleeps its polling interval (``tuner_sleep_time``), so the simulated clock advances by it
  whenever the Tuner waits and a freed worker is only seen at the next poll; the persistent runner's
  Tuner wakes on the next report or finished segment (``persistent.waking_tuner_class``; real gaps
  from a segment's last result to the next start: 1-6 ms, p10-p90), so the simulated clock advances
  to the next simulated event instead, at most by the polling interval.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ... import space
from ...config import SweepConfig
from ...seeding import rng_for
from ...space import PSI_KEYS
from ...surrogate.model import Surrogate
from ...warmstart.oracles import HGSample
from ...warmstart.spec import WarmStart, from_variant
from ..replicate import final_status, seed_global_rngs
from ..schedulers import decision_time_model, make_scheduler, wrap_calls

OBJECTIVES = ["val_acc", "test_acc", "elapsed_time", "epoch_time", "diverged"]


class SurrogateOracle:
    """Hyper-gradient oracle that samples the surrogate's learned hyper-gradient model."""

    def __init__(self, sur: Surrogate, rng: np.random.Generator):
        self.sur, self.rng = sur, rng

    @property
    def surrogate(self) -> Surrogate:
        """The response surface, for the oracle warm starts (real trials have none)."""
        return self.sur

    def __call__(self, psi: dict, n_batches: int) -> HGSample:
        g = self.sur.hypergrad(psi, n_batches, self.rng)
        return HGSample(g, seconds=self.sur.hg_batch_seconds * n_batches)


def _blackbox_class():
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.config_space import randint

    class SurrogateBlackbox(Blackbox):
        """The surrogate as a Syne Tune blackbox; one sampled full-budget run per trial id."""

        def __init__(self, sur: Surrogate, replicate_seed: int, ws_cost: dict):
            super().__init__(configuration_space=space.syne_tune_space(),
                             fidelity_space={"epoch": randint(1, sur.epochs)}, objectives_names=OBJECTIVES)
            self.sur, self.seed, self.ws_cost = sur, replicate_seed, ws_cost
            self.current_trial_id = None
            self.runs: dict = {}

        @property
        def fidelity_values(self):
            return np.arange(1, self.sur.epochs + 1)

        def run_for(self, tid: int, psi: dict) -> dict:
            if tid not in self.runs:
                run = self.sur.sample_run(psi, rng_for(self.seed, tid, "curve"))
                run["psi"] = dict(psi)
                self.runs[tid] = run
            return self.runs[tid]

        def _objective_function(self, configuration, fidelity=None, seed=None):
            tid = self.current_trial_id
            run = self.run_for(tid, {k: float(configuration[k]) for k in PSI_KEYS})
            E = self.sur.epochs
            # cumulative time includes the warm start (before epoch 1); start-up is added per (re)start
            elapsed = np.cumsum(run["epoch_time"]) + self.ws_cost.get(tid, 0.0)
            div = np.zeros(E)
            val = run["val_acc"].copy()
            if run["diverged_at"]:
                div[run["diverged_at"] - 1:] = 1.0
                val[run["diverged_at"] - 1:] = 0.1
            et = run["epoch_time"].copy()
            et[0] += self.ws_cost.get(tid, 0.0)  # as in real trials, epoch 1's time contains the warm start
            out = np.stack([val, run["test_acc"], elapsed, et, div], axis=1)
            return out if fidelity is None else out[int(fidelity["epoch"]) - 1]

    return SurrogateBlackbox


def _backend_class():
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    class SurrogateBackend(UserBlackboxBackend):
        pending_decision_s = 0.0   # modelled scheduler compute time not yet on the clock

        def _advance_by_outside_time(self):
            # the modelled decision time, never the measured one: that would make reruns differ
            if self.pending_decision_s > 0:
                self._time_keeper.advance(self.pending_decision_s)
            self.pending_decision_s = 0.0

        def _run_job_and_collect_results(self, trial_id, config=None):
            self.blackbox.current_trial_id = trial_id
            status, results = super()._run_job_and_collect_results(trial_id, config)
            startup = self.blackbox.sur.startup_s
            for r in results:
                r["elapsed_time"] += startup
            run = self.blackbox.runs.get(trial_id)
            if run is not None and run["diverged_at"]:
                # a diverged real trial reports once and exits
                results = [r for r in results if r["epoch"] <= run["diverged_at"]]
            return status, results

    return SurrogateBackend


# The persistent runner's reaction time on the simulated clock: its real gaps from a segment's last
# result to the next start are 1-6 ms (p10-p90, 2 ms median, in the calibration store
# persistent-mini-asha-real; workers busy 98.6 % of the budget), so each of
# Syne Tune's simulated delays (start, stop, result, completion; 50 ms by default) and the Tuner's
# shortest wake step are 1 ms, the step Syne Tune's simulator itself uses to move past an event.
WAKE_S = 1e-3
SIM_DELAYS = ("delay_on_trial_result", "delay_complete_after_final_report", "delay_complete_after_stop",
              "delay_start", "delay_stop")


def _waking_callback_class():
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback

    class WakingSimulatorCallback(SimulatorCallback):
        """The persistent runner's Tuner on the simulated clock: an idle wait ends at the next event
        (a result, a finished segment) instead of after the whole polling interval."""
        def on_tuning_start(self, tuner):
            super().on_tuning_start(tuner)
            self._backend = tuner.trial_backend

        def on_tuning_sleep(self, sleep_time: float):
            heap = self._backend._simulator_state.event_heap  # (time, count, event), earliest first
            now = self._time_keeper.time()
            to_next = heap[0][0] - now if heap else self._tuner_sleep_time
            self._time_keeper.advance(min(self._tuner_sleep_time, max(to_next, WAKE_S)))

    return WakingSimulatorCallback


def effective_runner(sur: Surrogate, runner: "str | None") -> str:
    """The trial runner a simulation reproduces: the configured one, else the surrogate's default (the
    first start-up calibration it holds; LocalBackend for artifacts that hold one)."""
    return runner or next(iter(sur.meta.get("startup_s_by_runner") or {"local": None}))


def run_one(sur: Surrogate, cfg, scheduler: str, variant: str, seed: int, workdir: str | None = None):
    """One simulated replicate. Returns (rows DataFrame, meta dict)."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.tuner_callback import TunerCallback

    max_epochs = min(cfg.max_epochs or sur.epochs, sur.epochs)
    ws: WarmStart = from_variant(cfg.variants[variant])
    records: dict[int, dict] = {}
    ws_cost: dict[int, float] = {}

    def hook(config: dict, trial_id: int) -> dict:
        psi = {k: float(config[k]) for k in PSI_KEYS}
        oracle = SurrogateOracle(sur, rng_for(seed, trial_id, "hypergrad"))
        res = ws.apply(psi, oracle, rng_for(seed, trial_id, "warmstart"), task=cfg.task)
        records[trial_id] = res.flat()
        ws_cost[trial_id] = res.cost_seconds
        return dict(config, **res.psi_after)

    seed_global_rngs(seed)
    sched = make_scheduler(scheduler, space.syne_tune_space(epochs=max_epochs), seed, cfg.grace_period,
                           cfg.reduction_factor, max_epochs, hook=hook)
    bb = _blackbox_class()(sur, seed, ws_cost)
    # The simulator advances its clock by ``tuner_sleep_time`` whenever the Tuner waits, so a freed
    # worker is only seen at the next tick; it must be the real sweeps' polling interval (Syne Tune's
    # default, 5 s, delayed every simulated (re)start by ~2.5 s against the 0.5 s real sweeps).
    waking = effective_runner(sur, cfg.runner) == "persistent"
    delays = ({"simulator_config": SimulatorConfig(**{k: WAKE_S for k in SIM_DELAYS})} if waking else {})
    backend = _backend_class()(blackbox=bb, elapsed_time_attr="elapsed_time", max_resource_attr="epochs",
                               tuner_sleep_time=max(cfg.tuner_sleep_time, 0.05), **delays)  # 0 would never advance
    _charge_decisions(sched, backend, decision_time_model(scheduler))
    rows = []

    class Record(TunerCallback):
        def on_trial_result(self, trial, status, result, decision):
            rows.append({"trial_id": trial.trial_id, "epoch": int(result["epoch"]), "val_acc": result["val_acc"],
                         "test_acc": result["test_acc"], "elapsed_s": result["st_tuner_time"],
                         "epoch_time": result["epoch_time"], "diverged": int(result["diverged"]),
                         "decision": str(decision).split(".")[-1].upper()})

    # the real Tuner's idle wait: LocalBackend sweeps poll, the persistent runner's Tuner wakes on news
    clock_callback = _waking_callback_class() if waking else SimulatorCallback
    own_tmp = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="ohgw-sim-")
    os.environ["SYNETUNE_FOLDER"] = workdir
    t0 = time.perf_counter()
    tuner = Tuner(trial_backend=backend, scheduler=sched,
                  stop_criterion=StoppingCriterion(max_wallclock_time=cfg.replicate_budget_s,
                                                   max_num_trials_started=cfg.max_trials),
                  n_workers=cfg.n_workers, sleep_time=0, callbacks=[clock_callback(), Record()],
                  results_update_interval=1e9, print_update_interval=1e9, save_tuner=False,
                  tuner_name=f"sim-{scheduler}-{variant}-{seed}", suffix_tuner_name=False)
    with contextlib.redirect_stdout(io.StringIO()):  # the Tuner prints a status table per replicate
        tuner.run()
    wall = time.perf_counter() - t0
    if own_tmp:
        shutil.rmtree(workdir, ignore_errors=True)
    df = pd.DataFrame(rows)
    if len(df) == 0:
        return df, {"wall_s": wall, "n_trials": 0}
    # results at or after the budget never happened in a real replicate of that budget
    df = df[df["elapsed_s"] <= cfg.replicate_budget_s].copy()
    decisions = df.groupby("trial_id")["decision"].last().to_dict()
    df["status"] = df["trial_id"].map(final_status(df, decisions, {}, max_epochs))
    keep = [c for c in next(iter(records.values())) if c.startswith(("x_", "xp_", "hg_")) or c in ("ws_cost_s", "ws_flops")]
    rec = pd.DataFrame([{"trial_id": tid, **{k: r[k] for k in keep}} for tid, r in records.items()])
    df = df.merge(rec, on="trial_id", how="left", sort=False)
    df["plain_step_s"] = np.nan
    return df.drop(columns=["decision"]), {"wall_s": wall, "n_trials": int(df["trial_id"].nunique())}


def _charge_decisions(sched, backend, model: dict[str, tuple[float, float]]) -> None:
    """Each call in ``model`` adds ``a + b × results seen so far`` seconds to
    ``backend.pending_decision_s`` (put on the simulated clock at the backend's next step)."""
    if not model:
        return

    @contextlib.contextmanager
    def charge(call: str, seen: int):
        a, b = model.get(call, (0.0, 0.0))
        backend.pending_decision_s += a + b * seen
        yield

    wrap_calls(sched, sorted(set(model) | {"on_trial_result"}), charge)


# ----------------------------------------------------------------------------- many replicates
_SUR_CACHE: dict = {}


def _load(path: str) -> Surrogate:
    # keyed on surrogate.json's text too (it names the npz's checksum): a refit in place is a new artifact
    key = (path, (Path(path) / "surrogate.json").read_bytes() if (Path(path) / "surrogate.json").exists() else b"")
    if key not in _SUR_CACHE:
        _SUR_CACHE.clear()
        _SUR_CACHE[key] = Surrogate.load(path)
    return _SUR_CACHE[key]


def run_chunk(cfg_json: dict, chunk: list[tuple[str, str, int]]):
    """Worker entry (local processes or Ray tasks): a list of replicates -> list of (key, rows, meta)."""
    logging.disable(logging.WARNING)  # Syne Tune warns on every legacy scheduler it builds
    cfg = SweepConfig(**cfg_json)
    sur = _load(cfg.surrogate).for_runner(cfg.runner)  # start-up overhead of the configured trial runner
    out = []
    # one BLAS/OpenMP thread: DyHPO's GP searcher in several worker processes would otherwise
    # oversubscribe the cores (several times slower), and the results must not depend on how many
    # threads a machine gives the linear algebra
    with threadpool_limits(limits=1):
        for scheduler, variant, seed in chunk:
            df, meta = run_one(sur, cfg, scheduler, variant, seed)
            out.append(((scheduler, variant, seed), df, meta))
    return out
