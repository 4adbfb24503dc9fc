"""User warm-start rules (``python:package.module:function``): loading, the shipped example in a
short surrogate sweep, and one error line naming the spec for every kind of bad spec."""
import textwrap

import numpy as np
import pandas as pd
import pytest

from ohgw_bench import space
from ohgw_bench.cli.main import main
from ohgw_bench.config import SweepConfig
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.sweeps.sweep import run_sweep
from ohgw_bench.warmstart.oracles import HGSample
from ohgw_bench.warmstart.spec import WarmStart

PSI = {"log10_lr": -1.0, "log10_wd": -3.0, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}
EXAMPLE = "ohgw_bench.examples.warm_starts"


class FixedOracle:
    def __init__(self, g, seconds=0.5):
        self.g, self.seconds, self.calls = np.asarray(g, float), seconds, 0

    def __call__(self, psi, n):
        self.calls += 1
        return HGSample(np.tile(self.g, (n, 1)), seconds=self.seconds * n)


BAD_RULES = textwrap.dedent('''
    import math
    def only_psi(psi, oracle, rng, params):
        return dict(psi)
    def not_a_dict(psi, oracle, rng, params):
        return [1, 2, 3, 4, 5], 0.0
    def missing_key(psi, oracle, rng, params):
        out = dict(psi); del out["momentum"]; return out, 0.0
    def extra_key(psi, oracle, rng, params):
        return dict(psi, width=4), 0.0
    def nan_value(psi, oracle, rng, params):
        return dict(psi, log10_lr=math.nan), 0.0
    def text_value(psi, oracle, rng, params):
        return dict(psi, log10_lr="-1"), 0.0
    def negative_cost(psi, oracle, rng, params):
        return dict(psi), -1.0
    def free_oracle(psi, oracle, rng, params):
        oracle(psi, 2); return dict(psi), 0.0
    def raises(psi, oracle, rng, params):
        raise KeyError("lr")
    def far_out(psi, oracle, rng, params):
        return dict(psi, log10_lr=5.0, momentum=-3.0), 0.0
    def echo_params(psi, oracle, rng, params):
        assert params == {"a": 2, "b": 0.5, "c": "x"}, params
        return dict(psi), 0.0
    NOT_CALLABLE = 3
''')


@pytest.fixture
def bad_module(tmp_path, monkeypatch):
    (tmp_path / "ohgw_test_rules.py").write_text(BAD_RULES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "ohgw_test_rules"


def test_example_lower_lr_moves_lr_down_by_delta_of_its_range():
    ws = WarmStart.parse(f"python:{EXAMPLE}:lower_lr,delta=0.1")
    assert WarmStart.parse(ws.spec()) == ws
    r = ws.apply(PSI, None, np.random.default_rng(0))
    assert r.psi_after["log10_lr"] == pytest.approx(-1.3)  # 0.1 of the range [-3, 0]
    assert {k: r.psi_after[k] for k in PSI_KEYS if k != "log10_lr"} == {k: PSI[k] for k in PSI_KEYS if k != "log10_lr"}
    assert r.cost_seconds == 0.0 and r.n_batches == 0


def test_example_lr_sign_pays_its_oracle_calls_and_records_the_gradient():
    o = FixedOracle([0.7, 0.1, -0.2, 0.0, 0.3], seconds=0.25)
    r = WarmStart.parse(f"python:{EXAMPLE}:lr_sign,delta=0.05,batches=4").apply(PSI, o, np.random.default_rng(0))
    assert o.calls == 1 and r.n_batches == 4 and r.cost_seconds == pytest.approx(1.0)
    assert r.hypergrad["log10_lr"] == pytest.approx(0.7)
    assert r.psi_after["log10_lr"] == pytest.approx(-1.15)  # positive ∂J/∂lr: lr goes down


def test_plugin_params_are_typed(bad_module):
    WarmStart.parse(f"python:{bad_module}:echo_params,a=2,b=0.5,c=x").apply(PSI, None, np.random.default_rng(0))


def test_finite_values_outside_the_space_are_clipped_like_builtins(bad_module):
    r = WarmStart.parse(f"python:{bad_module}:far_out").apply(PSI, None, np.random.default_rng(0))
    assert r.psi_after["log10_lr"] == space.dim("log10_lr").high
    assert r.psi_after["momentum"] == space.dim("momentum").low


@pytest.mark.parametrize("target,what", [
    ("no_such_module_ohgw:f", "cannot be imported"),
    (f"{EXAMPLE}:no_such_function", "has no function 'no_such_function'"),
    (f"{EXAMPLE}", "must name its rule as python:package.module:function"),
    ("ohgw_test_rules:NOT_CALLABLE", "is a int, not a function"),
    (f"{EXAMPLE}:lower_lr,delta", "must be key=value"),
    (f"{EXAMPLE}:lower_lr,delta=1,delta=2", "appears twice"),
])
def test_bad_spec_at_parse_time(bad_module, target, what):
    spec = f"python:{target}"
    with pytest.raises(ValueError) as e:
        WarmStart.parse(spec)
    msg = str(e.value)
    assert what in msg and spec in msg and "\n" not in msg


@pytest.mark.parametrize("fn,what", [
    ("only_psi", "must return (psi_prime: dict, cost_s: float)"),
    ("not_a_dict", "psi_prime must be a dict"),
    ("missing_key", "lacks ['momentum']"),
    ("extra_key", "unknown ['width']"),
    ("nan_value", "psi_prime['log10_lr'] must be a finite number"),
    ("text_value", "psi_prime['log10_lr'] must be a finite number"),
    ("negative_cost", "cost_s must be a finite number >= 0"),
    ("free_oracle", "is less than the 1.0 s its oracle calls took"),
    ("raises", "the rule raised KeyError"),
])
def test_bad_rule_output_is_one_line_naming_the_spec(bad_module, fn, what):
    spec = f"python:{bad_module}:{fn}"
    with pytest.raises(ValueError) as e:
        WarmStart.parse(spec).apply(PSI, FixedOracle(np.zeros(5)), np.random.default_rng(0))
    msg = str(e.value)
    assert what in msg and spec in msg and "\n" not in msg


def test_cli_bad_plugin_is_one_line_exit_2(capsys):
    rc = main(["train", "--task", "cifar10-smoke", "--warm-start", "python:no_such_module_ohgw:f"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "python:no_such_module_ohgw:f" in err


def test_example_plugin_in_a_short_surrogate_sweep(synthetic_surrogate_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_WORKERS", "1")
    variants = {"baseline": "none", "lower-lr": f"python:{EXAMPLE}:lower_lr,delta=0.1",
                "lr-sign": f"python:{EXAMPLE}:lr_sign,delta=0.05,batches=4"}
    cfg = SweepConfig(name="p", task="cifar10-mini", backend="surrogate", surrogate=str(synthetic_surrogate_dir),
                      schedulers=["asha"], variants=variants, seeds="0:1", n_workers=2, budget_s=60,
                      out=str(tmp_path / "p"))
    res = pd.read_parquet(run_sweep(cfg, progress=False) / "results.parquet")
    first = res.sort_values("epoch").groupby(["variant", "seed", "trial_id"]).head(1)
    low = first[first.variant == "lower-lr"]
    expect = np.maximum(low["x_log10_lr"] - 0.3, space.dim("log10_lr").low)
    assert len(low) > 5 and np.allclose(low["xp_log10_lr"], expect)
    assert (low["ws_cost_s"] == 0).all() and (low["warm_start"] == variants["lower-lr"]).all()
    sign = first[first.variant == "lr-sign"]
    assert (sign["ws_cost_s"] > 0).all() and sign["hg_log10_lr"].notna().all()
    moved = (sign["xp_log10_lr"] - sign["x_log10_lr"]).abs()
    d = space.dim("log10_lr")
    inside = (sign["xp_log10_lr"] > d.low) & (sign["xp_log10_lr"] < d.high)
    assert inside.sum() > 5 and np.allclose(moved[inside], 0.15)
    # paired: every variant's trial i of seed s started from the same x
    x = first.set_index(["variant", "seed", "trial_id"])["x_log10_lr"]
    common = x.loc["baseline"].index.intersection(x.loc["lower-lr"].index)
    assert len(common) > 5 and (x.loc["baseline"].loc[common] == x.loc["lower-lr"].loc[common]).all()
