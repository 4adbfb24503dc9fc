"""Oracle warm starts (surrogate only), random directions and the placebo: what they move, what they
cost, that real trials refuse the oracles, and that new variants leave the paired baseline as it was."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from ohgw_bench import space
from ohgw_bench.cli.main import main
from ohgw_bench.config import SweepConfig
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.surrogate.model import Surrogate
from ohgw_bench.sweeps.backends.simulated import SurrogateOracle
from ohgw_bench.sweeps.sweep import run_sweep
from ohgw_bench.warmstart.spec import WarmStart


@pytest.fixture(scope="module")
def sur(synthetic_surrogate_dir):
    return Surrogate.load(synthetic_surrogate_dir)


def starts(n, seed=0, lo=0.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, (n, len(PSI_KEYS)))


def apply(sur, spec, u, i):
    r = WarmStart.parse(spec).apply(space.from_unit(u), SurrogateOracle(sur, np.random.default_rng(100 + i)),
                                    np.random.default_rng(i))
    return r, space.to_unit(r.psi_after)


def test_mean_logit_gradient_matches_finite_differences(sur):
    u = starts(1, 3)[0]
    for epoch in (1, sur.epochs):
        _, g = sur.mean_logit_grad(u, epoch)
        h = 1e-6
        fd = [(sur.mean_logit_at((u + h * e)[None], epoch)[0] - sur.mean_logit_at((u - h * e)[None], epoch)[0]) / (2 * h)
              for e in np.eye(len(u))]
        assert np.allclose(g, fd, rtol=1e-4, atol=1e-7)
        # and the fast mean equals the GPs' own predictions
        ref = sur.mean_logit_curve(u[None])[0, epoch - 1]
        assert sur.mean_logit_at(u[None], epoch)[0] == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("radius", [0.05, 0.2])
def test_oracle_improves_final_prediction_within_ball_and_cube(sur, radius):
    gains = []
    for i, u in enumerate(starts(15, 1)):
        r, up = apply(sur, f"oracle:radius={radius}", u, i)
        assert np.linalg.norm(up - u) <= radius + 1e-9
        assert (up >= 0).all() and (up <= 1).all()
        assert r.cost_seconds == 0 and r.n_batches == 0
        f0, f1 = sur.mean_logit_at(np.stack([u, up]), sur.epochs)
        gains.append(f1 - f0)
        # no point of a dense random sample of the ball (clipped to the cube) beats it
        d = np.random.default_rng(1000 + i).standard_normal((2000, len(u)))
        d *= (radius * np.random.default_rng(2000 + i).random(2000) ** (1 / len(u)) / np.linalg.norm(d, axis=1))[:, None]
        assert f1 >= sur.mean_logit_at(np.clip(u + d, 0, 1), sur.epochs).max() - 1e-6
    assert min(gains) >= 0 and np.median(gains) > 0


def test_oracle_greedy_optimises_its_epoch(sur):
    for i, u in enumerate(starts(8, 2)):
        _, final = apply(sur, "oracle:radius=0.2", u, i)
        _, greedy = apply(sur, "oracle-greedy:radius=0.2,epoch=1", u, i)
        e1 = sur.mean_logit_at(np.stack([final, greedy]), 1)
        eE = sur.mean_logit_at(np.stack([final, greedy]), sur.epochs)
        assert e1[1] >= e1[0] - 1e-6 and eE[0] >= eE[1] - 1e-6


def test_oracle_greedy_epoch_beyond_the_surrogate_is_an_error(sur):
    with pytest.raises(ValueError, match=f"epoch must lie in \\[1, {sur.epochs}\\]"):
        apply(sur, f"oracle-greedy:radius=0.1,epoch={sur.epochs + 1}", starts(1)[0], 0)


def test_random_dir_has_exactly_the_radius_before_clipping(sur):
    dirs = []
    for i, u in enumerate(starts(10, 4, lo=0.35, hi=0.65)):  # 0.3 from every face: no clipping
        r1, a = apply(sur, "random-dir:radius=0.1", u, i)
        _, b = apply(sur, "random-dir:radius=0.3", u, i)
        assert np.linalg.norm(a - u) == pytest.approx(0.1, abs=1e-12)
        assert np.linalg.norm(b - u) == pytest.approx(0.3, abs=1e-12)
        assert np.allclose((b - u) / 0.3, (a - u) / 0.1)  # common random numbers across radii
        assert r1.cost_seconds == 0
        dirs.append((a - u) / 0.1)
    assert len({tuple(np.round(d, 9)) for d in dirs}) == len(dirs)
    _, c = apply(sur, "random-dir:radius=0.5", np.zeros(len(PSI_KEYS)), 0)  # at a corner: clipped
    assert (c >= 0).all() and np.linalg.norm(c) <= 0.5


def test_placebo_keeps_psi_and_pays_the_hypergradient_cost(sur):
    for i, u in enumerate(starts(5, 5)):
        for batches in (1, 4):
            p, up = apply(sur, f"placebo:batches={batches}", u, i)
            h, uh = apply(sur, f"hypergradient:eta=1,batches={batches}", u, i)
            assert p.psi_after == p.psi_before and not np.allclose(uh, u)
            assert p.cost_seconds == h.cost_seconds > 0 and p.n_batches == h.n_batches == batches
            assert p.hypergrad == h.hypergrad  # the same oracle calls, on the same stream


def test_oracle_needs_the_surrogate():
    class NoSurrogate:
        def __call__(self, psi, n):
            raise AssertionError("not called")
    psi = space.center()
    with pytest.raises(ValueError, match="'oracle:radius=0.1' needs the surrogate's response surface"):
        WarmStart.parse("oracle:radius=0.1").apply(psi, NoSurrogate(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="cannot run in a real trial"):
        WarmStart.parse("oracle-greedy:radius=0.1").check_backend("real")
    WarmStart.parse("random-dir:radius=0.1").check_backend("real")  # needs no surrogate


def test_real_trial_and_real_sweep_refuse_oracle_specs(capsys, tmp_path):
    rc = main(["train", "--task", "cifar10-smoke", "--warm-start", "oracle:radius=0.1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "oracle:radius=0.1" in err
    cfg = SweepConfig(name="r", task="cifar10-smoke", backend="real", variants={"o": "oracle:radius=0.1"},
                      seeds="0:1", budget_s=10, out=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="cannot run in a real trial"):
        run_sweep(cfg, progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("spec", ["oracle:radius=0", "random-dir:radius=-1", "oracle-greedy:epoch=0",
                                  "oracle:epoch=1", "placebo:eta=1", "random-dir:radius=x"])
def test_bad_builtin_specs(spec):
    with pytest.raises(ValueError) as e:
        WarmStart.parse(spec)
    assert "\n" not in str(e.value)


def test_new_variants_stay_paired_and_reproducible(synthetic_surrogate_dir, tmp_path, monkeypatch):
    def cfg(out, variants):
        return SweepConfig(name="o", task="cifar10-mini", backend="surrogate", surrogate=str(synthetic_surrogate_dir),
                           schedulers=["asha"], variants=variants, seeds="0:1", n_workers=2, budget_s=60, out=str(out))
    new = {"baseline": "none", "oracle": "oracle:radius=0.1", "greedy": "oracle-greedy:radius=0.1,epoch=1",
           "rdir": "random-dir:radius=0.1", "placebo": "placebo:batches=4"}
    monkeypatch.setenv("OHGW_WORKERS", "1")
    a = pd.read_parquet(run_sweep(cfg(tmp_path / "a", new), progress=False) / "results.parquet")
    only = pd.read_parquet(run_sweep(cfg(tmp_path / "b", {"baseline": "none"}), progress=False) / "results.parquet")
    # the baseline's draws do not depend on which other variants run beside it
    pd.testing.assert_frame_equal(a[a.variant == "baseline"].reset_index(drop=True), only.reset_index(drop=True))
    first = a.sort_values("epoch").groupby(["variant", "seed", "trial_id"]).head(1).set_index(["variant", "seed", "trial_id"])
    xs = [f"x_{k}" for k in PSI_KEYS]
    for v in new:
        common = first.loc["baseline"].index.intersection(first.loc[v].index)
        assert len(common) > 5
        pd.testing.assert_frame_equal(first.loc["baseline"].loc[common, xs], first.loc[v].loc[common, xs])
    step = np.linalg.norm((first[[f"xp_{k}" for k in PSI_KEYS]].to_numpy() - first[xs].to_numpy()) / space.widths(), axis=1)
    fam = first.index.get_level_values("variant")
    assert (step[fam == "oracle"] <= 0.1 + 1e-9).all() and (step[fam == "placebo"] == 0).all()
    monkeypatch.setenv("OHGW_WORKERS", "2")
    monkeypatch.setenv("OHGW_CHUNK", "2")  # other chunks, in two processes
    run_sweep(cfg(tmp_path / "c", new), progress=False)
    sha = [hashlib.sha256((tmp_path / d / "results.parquet").read_bytes()).hexdigest() for d in ("a", "c")]
    assert sha[0] == sha[1]
