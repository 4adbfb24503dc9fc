"""make_report on a tiny synthetic results store (2 variants x 4 seeds x 3 trials x 3 epochs)."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ohgw_bench.analysis.report.context import resolve_baseline as _resolve_baseline
from ohgw_bench.analysis.report.make import make_report
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.store import REPLICATE_COLUMNS, conform, write_parquet_atomic

BUDGET = 100.0
OHGW_SPEC = "hypergradient:eta=0.001,steps=1,rule=raw,batches=1"
# Final best val acc per seed. Baseline median (0.82 + 0.84)/2 = 0.83 = auto τ; baseline seeds 0
# and 1 never reach it (2 censored), the variant misses it only on seed 0 (1 censored).
FINALS = {"baseline": [0.80, 0.82, 0.84, 0.86], "ohgw-1step": [0.815, 0.835, 0.855, 0.875]}
SPECS = {"baseline": "none", "ohgw-1step": OHGW_SPEC}


def write_store(d, variants=FINALS, specs=SPECS, config_extra=None, tasks=("cifar10-mini",)):
    """Trial k of a replicate ends at final − 0.02k; epoch e at val final_k − 0.1(3 − e)."""
    rows, reps = [], []
    for task, v in ((t, v) for t in tasks for v in variants):
        finals = variants[v]
        speed = 1.0 if specs[v] == "none" else 0.8
        for seed, final in enumerate(finals):
            for k in range(3):
                for e in (1, 2, 3):
                    val = final - 0.02 * k - 0.1 * (3 - e)
                    rows.append(dict(
                        backend="surrogate", task=task, variant=v, scheduler="asha", seed=seed,
                        trial_id=k, epoch=e, val_acc=val, test_acc=val - 0.01 if e in (1, 3) else np.nan,
                        elapsed_s=(10.0 * e + 3.0 * k) * speed, epoch_time=10.0, status="completed",
                        warm_start=specs[v], ws_cost_s=0.0 if specs[v] == "none" else 0.1,
                        **{f"x_{p}": 0.1 * k for p in PSI_KEYS},
                        **{f"xp_{p}": 0.1 * k + (0.0 if specs[v] == "none" else 0.01) for p in PSI_KEYS},
                        **{f"hg_{p}": (np.nan if specs[v] == "none" else 1.0 + seed) for p in PSI_KEYS}))
            reps.append(dict(variant=v, scheduler="asha", seed=seed, n_trials=3, n_results=9, wall_s=1.0,
                             budget_s=BUDGET, n_workers=2, flops_total=np.nan))
    d.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(conform(pd.DataFrame(rows)), d / "results.parquet")
    write_parquet_atomic(conform(pd.DataFrame(reps), REPLICATE_COLUMNS), d / "replicates.parquet")
    cfg = {"name": "tiny", "task": "cifar10-mini", "backend": "surrogate", "schedulers": ["asha"],
           "variants": dict(specs), "seeds": "0:4", "n_workers": 2, "budget_s": BUDGET,
           "report": {"tau": "auto", "tau_quantile": 0.5, "baseline": "baseline"}}
    cfg.update(config_extra or {})
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (d / "provenance.json").write_text(json.dumps({"git_revision": "deadbeef", "device_name": "cpu",
                                                   "versions": {"numpy": np.__version__}}))
    return d


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = write_store(tmp_path_factory.mktemp("store"))
    return d, make_report(d, show_progress=False, n_boot=200)


def test_report_writes_all_files_into_results_dir_report(report):
    d, out = report
    rep = d / "report"
    assert out["out_dir"] == str(rep)
    for name in ("report.md", "summary.json", "metrics.parquet"):
        assert (rep / name).stat().st_size > 0
    # a, b, c always; d because the variant recorded hyper-gradients.
    for fig in ("a_best_val_vs_time", "b_t_tau", "c_rung_survival", "d_hypergrad_vs_benefit"):
        for ext in ("png", "pdf"):
            assert (rep / f"fig_{fig}.{ext}").stat().st_size > 0


def test_report_skips_figures_without_data_with_a_note(report):
    _, out = report
    # One η_h and one task: no sensitivity fit, no label-noise comparison.
    assert "η_h" in out["figures"]["e_eta_sensitivity"]["skipped"]
    assert "one task" in out["figures"]["f_label_noise"]["skipped"]
    md = (report[0] / "report" / "report.md").read_text()
    assert "e_eta_sensitivity**: skipped" in md


def test_summary_has_tau_n_and_censoring(report):
    d, _ = report
    s = json.loads((d / "report" / "summary.json").read_text())
    assert s["tau"] == pytest.approx(0.83)          # median of 0.80, 0.82, 0.84, 0.86
    assert s["baseline"] == "baseline" and s["n_replicates"] == 8
    pv = {r["variant"]: r for r in s["per_variant"]}
    assert pv["baseline"]["n"] == 4 and pv["ohgw-1step"]["n"] == 4
    assert pv["baseline"]["n_censored"] == 2 and pv["ohgw-1step"]["n_censored"] == 1
    # Baseline T@τ = 30, 30 s and two censored at the 100 s budget: the Kaplan–Meier survival falls
    # to 2/4 = 0.5 at 30 s, so the KM median is 30 s (the old "censored at the budget" median said 65 s,
    # a time at which nothing happened); the variant's one censored replicate leaves its median defined.
    assert pv["baseline"]["t_tau_s"]["median"] == pytest.approx(30.0)
    assert pv["baseline"]["t_tau_s"]["n_censored"] == 2
    assert {r["criterion"] for r in s["verdict"]} == {"t_tau_reduction", "test_acc_drop", "overhead_share",
                                                      "t_tau_std_ratio", "overall"}
    assert s["tests"][0]["n"] == 4


def test_metrics_parquet_one_row_per_replicate(report):
    d, _ = report
    m = pd.read_parquet(d / "report" / "metrics.parquet")
    assert len(m) == 8 and set(m["variant"]) == set(FINALS)
    # Variant seed 1 reaches 0.835 >= 0.83 at epoch 3 of trial 0: 30 s * 0.8 = 24 s.
    row = m[(m["variant"] == "ohgw-1step") & (m["seed"] == 1)].iloc[0]
    assert row["t_tau_s"] == pytest.approx(24.0) and not row["censored"]


def test_report_md_states_n_and_provenance(report):
    md = (report[0] / "report" / "report.md").read_text()
    assert "n=4" in md and "deadbeef" in md and "censored" in md and "Verdict" in md


def test_eta_sensitivity_and_label_noise_figures(tmp_path):
    # Two η_h values and a clean/noisy task pair: figures e and f are drawn, and the label-noise
    # table pairs cifar10-mini-noise10 with cifar10-mini.
    specs = {"baseline": "none", "ohgw-1e-3": OHGW_SPEC,
             "ohgw-3e-3": "hypergradient:eta=0.003,steps=1,rule=raw,batches=1"}
    finals = {"baseline": FINALS["baseline"], "ohgw-1e-3": FINALS["ohgw-1step"], "ohgw-3e-3": FINALS["ohgw-1step"]}
    d = write_store(tmp_path / "s", variants=finals, specs=specs, tasks=("cifar10-mini", "cifar10-mini-noise10"))
    out = make_report(d, show_progress=False, n_boot=100)
    for fig in ("e_eta_sensitivity", "f_label_noise"):
        assert "files" in out["figures"][fig], out["figures"][fig]
    s = out["summary"]
    assert s["tau"] is None and s["tau_by_task"]["cifar10-mini-noise10"]["tau"] == pytest.approx(0.83)
    assert {(r["clean_task"], r["noisy_task"]) for r in s["label_noise"]} == {("cifar10-mini", "cifar10-mini-noise10")}
    assert "Speed-up retained under label noise" in (d / "report" / "report.md").read_text()


def test_missing_named_baseline_raises(tmp_path):
    d = write_store(tmp_path / "s", config_extra={"report": {"baseline": "plain"}})
    with pytest.raises(ValueError, match=r"'plain'.*variants present.*baseline"):
        make_report(d, show_progress=False)


def test_no_baseline_at_all_raises(tmp_path):
    finals = {"ohgw-1step": FINALS["ohgw-1step"]}
    d = write_store(tmp_path / "s", variants=finals, specs={"ohgw-1step": OHGW_SPEC})
    with pytest.raises(ValueError, match="no baseline variant.*ohgw-1step"):
        make_report(d, show_progress=False)


def test_configured_variant_without_results_raises(tmp_path):
    d = write_store(tmp_path / "s", config_extra={"variants": {**SPECS, "ohgw-3step": "hypergradient:steps=3"}})
    with pytest.raises(ValueError, match=r"\['ohgw-3step'\].*variants present"):
        make_report(d, show_progress=False)


def test_baseline_falls_back_to_first_variant_without_warm_start():
    # No variant is named "baseline": the first whose warm_start is "none" is the baseline.
    res = pd.DataFrame({"variant": ["ohgw", "plain"], "warm_start": [OHGW_SPEC, "none"]})
    assert _resolve_baseline(res, {}, ["ohgw", "plain"]) == "plain"


def test_not_a_results_dir_raises(tmp_path):
    with pytest.raises(ValueError, match="no results.parquet"):
        make_report(tmp_path, show_progress=False)


def test_summary_json_is_strict_json(report):
    # NaN is not JSON; the summary must load with a strict parser.
    def reject(c):
        raise AssertionError(f"summary.json holds {c}")

    json.loads((report[0] / "report" / "summary.json").read_text(), parse_constant=reject)


def test_frontier_section_when_a_family_has_two_step_sizes(tmp_path):
    # Two normalized-rule step sizes: the report draws figure g and writes the frontier section; a
    # sweep with one step size per family (the fixture above) skips it with a note.
    finals = {"baseline": FINALS["baseline"], "norm-0.05": FINALS["ohgw-1step"], "norm-0.1": FINALS["ohgw-1step"]}
    specs = {"baseline": "none", "norm-0.05": "hypergradient:rule=normalized,delta=0.05,batches=4",
             "norm-0.1": "hypergradient:rule=normalized,delta=0.1,batches=4"}
    d = write_store(tmp_path / "s", variants=finals, specs=specs)
    out = make_report(d, show_progress=False, n_boot=100)
    assert "files" in out["figures"]["g_frontier"], out["figures"]["g_frontier"]
    assert (d / "report" / "fig_g_frontier.png").exists()
    md = (d / "report" / "report.md").read_text()
    assert "## What a one-shot warm start can buy" in md
    fam = {r["variant"]: r["family"] for r in out["summary"]["frontier"]}
    assert fam == {"norm-0.05": "hypergradient-normalized", "norm-0.1": "hypergradient-normalized"}


def test_no_frontier_with_one_step_size(report):
    assert "skipped" in report[1]["figures"]["g_frontier"]


def test_two_stores_of_different_tasks_report_together_like_one_store(tmp_path):
    # exp-1 on clean and noisy labels comes from two sweeps; reported together, the per-task statistics
    # and the label-noise table equal those of one store holding both tasks.
    both = write_store(tmp_path / "both", tasks=("cifar10-mini", "cifar10-mini-noise10"))
    clean = write_store(tmp_path / "clean", tasks=("cifar10-mini",))
    noisy = write_store(tmp_path / "noisy", tasks=("cifar10-mini-noise10",),
                        config_extra={"name": "tiny-noisy", "task": "cifar10-mini-noise10"})
    one = make_report(both, show_progress=False, n_boot=100)["summary"]
    two = make_report([clean, noisy], out_dir=tmp_path / "out", show_progress=False, n_boot=100)["summary"]
    assert "files" in two["figures"]["f_label_noise"]
    assert two["label_noise"] == one["label_noise"] and two["tests"] == one["tests"]
    assert two["name"] == "tiny + tiny-noisy" and [s["name"] for s in two["provenance"]["stores"]] == ["tiny", "tiny-noisy"]


def test_two_stores_of_one_task_with_different_arms_report_together_like_one_store(tmp_path):
    # a variant run later, in its own sweep, is paired by seed with the baseline of an earlier one
    both = write_store(tmp_path / "both")
    base = write_store(tmp_path / "base", variants={"baseline": FINALS["baseline"]}, specs={"baseline": "none"})
    var = write_store(tmp_path / "var", variants={"ohgw-1step": FINALS["ohgw-1step"]},
                      specs={"ohgw-1step": OHGW_SPEC}, config_extra={"name": "tiny-var"})
    one = make_report(both, show_progress=False, n_boot=100)["summary"]
    two = make_report([base, var], out_dir=tmp_path / "out", show_progress=False, n_boot=100)["summary"]
    assert two["tests"] == one["tests"] and len(two["tests"]) == 1
    assert two["name"] == "tiny + tiny-var"


def test_stores_of_different_tasks_must_hold_the_same_arms(tmp_path):
    a = write_store(tmp_path / "a")
    b = write_store(tmp_path / "b", variants={"baseline": FINALS["baseline"]}, specs={"baseline": "none"},
                    tasks=("cifar10-mini-noise10",), config_extra={"task": "cifar10-mini-noise10"})
    with pytest.raises(ValueError, match="config key 'variants' differs between stores"):
        make_report([a, b], out_dir=tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_stores_that_cannot_be_reported_together_are_refused(tmp_path):
    a = write_store(tmp_path / "a")
    b = write_store(tmp_path / "b", tasks=("cifar10-mini-noise10",), config_extra={"budget_s": 2 * BUDGET})
    with pytest.raises(ValueError, match="needs an output directory"):
        make_report([a, b], show_progress=False)
    with pytest.raises(ValueError, match="config key 'budget_s' differs"):
        make_report([a, b], out_dir=tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match="replicate appears twice: task 'cifar10-mini'"):
        make_report([a, write_store(tmp_path / "c")], out_dir=tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()
