import numpy as np
import pytest

from ohgw_bench import space
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.warmstart.oracles import HGSample
from ohgw_bench.warmstart.spec import VARIANTS, WarmStart, from_variant

PSI = {"log10_lr": -1.0, "log10_wd": -3.0, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}


class FixedOracle:
    """Returns the same per-batch gradient rows; counts calls."""

    def __init__(self, rows):
        self.rows, self.calls = np.asarray(rows, float), 0

    def __call__(self, psi, n):
        self.calls += 1
        return HGSample(np.tile(self.rows[:1], (n, 1)) if len(self.rows) == 1 else self.rows[:n], seconds=0.5)


def test_none_changes_nothing():
    r = WarmStart.parse("none").apply(PSI, None, np.random.default_rng(0))
    assert r.psi_after == space.check_psi(PSI) and r.cost_seconds == 0


def test_raw_step_is_minus_eta_g_per_step():
    g = np.array([[2.0, -1.0, 0.5, 0.1, -0.2]])
    ws = WarmStart.parse("hypergradient:eta=1e-2,steps=3,rule=raw")
    o = FixedOracle(g)
    r = ws.apply(PSI, o, np.random.default_rng(0))
    expect = space.psi_array(PSI) - 3 * 1e-2 * g[0]
    assert np.allclose(space.psi_array(r.psi_after), expect)
    assert o.calls == 3 and r.cost_seconds == pytest.approx(1.5) and len(r.steps_taken) == 3
    assert r.hypergrad["log10_lr"] == 2.0


def test_clipped_to_bounds():
    g = np.array([[-1e6, 0, 0, 0, 0]])
    r = WarmStart.parse("hypergradient:eta=1").apply(PSI, FixedOracle(g), np.random.default_rng(0))
    assert r.psi_after["log10_lr"] == 0.0


def test_normalized_rule_gates_by_snr():
    # lr: consistent sign, large SNR -> moves by delta of its range; wd: mean 0 -> stays
    rows = np.array([[1.0, 1.0, 0, 0, 0], [1.1, -1.0, 0, 0, 0], [0.9, 1.0, 0, 0, 0], [1.0, -1.0, 0, 0, 0]])
    ws = WarmStart.parse("hypergradient:rule=normalized,delta=0.05,batches=4")
    r = ws.apply(PSI, FixedOracle(rows), np.random.default_rng(0))
    assert r.psi_after["log10_lr"] == pytest.approx(PSI["log10_lr"] - 0.05 * 3.0)
    assert r.psi_after["log10_wd"] == PSI["log10_wd"]


def test_random_uses_sigma_and_its_own_rng():
    ws = WarmStart(kind="random", sigma=(0.1, 0.1, 0.01, 1.0, 0.01))
    a = ws.apply(PSI, None, np.random.default_rng(7))
    b = ws.apply(PSI, None, np.random.default_rng(7))
    assert a.psi_after == b.psi_after and a.psi_after != space.check_psi(PSI)


def test_spec_roundtrip_and_errors():
    for v in VARIANTS.values():
        ws = WarmStart.parse(v)
        assert WarmStart.parse(ws.spec()) == ws
    with pytest.raises(ValueError, match="'bogus'"):
        WarmStart.parse("hypergradient:bogus=1")
    with pytest.raises(ValueError, match="not one of"):
        WarmStart.parse("magic")
    with pytest.raises(ValueError, match="batches >= 2"):
        WarmStart.parse("hypergradient:rule=normalized,batches=1")
    assert from_variant("ohgw-1step").kind == "hypergradient"


def test_flat_record_has_all_fields():
    r = WarmStart.parse("none").apply(PSI, None, np.random.default_rng(0))
    flat = r.flat()
    for k in PSI_KEYS:
        assert {f"x_{k}", f"xp_{k}", f"hg_{k}"} <= set(flat)
