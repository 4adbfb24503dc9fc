"""Every hyper-gradient component against a central finite difference of J(ψ) (float64, smooth
activation); relative error must stay below 1e-3."""
import numpy as np
import pytest
import torch

from ohgw_bench.trial import augment
from ohgw_bench import space
from ohgw_bench.trial.hypergrad import BatchSource, M_STEP, hypergrad_batch, lookahead
from ohgw_bench.trial.models import build_model

PSI = {"log10_lr": -1.0, "log10_wd": -3.0, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}


@pytest.fixture()
def f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _setup():
    torch.manual_seed(0)
    model = build_model("resnet8", smooth=True, width=4)
    x, xv = torch.randn(16, 3, 8, 8), torch.randn(16, 3, 8, 8)
    y, yv = torch.randint(0, 10, (16,)), torch.randint(0, 10, (16,))
    buf = {n: torch.randn_like(p) * 0.1 for n, p in model.named_parameters()}
    return model, x, y, xv, yv, buf


@pytest.mark.parametrize("i,key", [(0, "log10_lr"), (1, "log10_wd"), (2, "momentum"), (3, "label_smoothing")])
def test_lookahead_components_match_finite_differences(f64, i, key):
    model, x, y, xv, yv, buf = _setup()
    _, g = lookahead(model, space.psi_to_natural(PSI), x, y, xv, yv, buf)
    h = 1e-5
    j = []
    for sgn in (1, -1):
        p = dict(PSI)
        p[key] += sgn * h
        j.append(lookahead(model, space.psi_to_natural(p), x, y, xv, yv, buf, need_grads=False)[0])
    fd = (j[0] - j[1]) / (2 * h)
    assert abs(g[i] - fd) <= 1e-3 * abs(fd), f"{key}: analytic {g[i]!r} vs finite difference {fd!r}"


def test_momentum_gradient_is_zero_without_buffer(f64):
    # PyTorch's first SGD step has no momentum buffer: ∂J/∂μ is exactly 0, hence the ordinary step first
    model, x, y, xv, yv, _ = _setup()
    _, g = lookahead(model, space.psi_to_natural(PSI), x, y, xv, yv, None)
    assert g[2] == 0.0


def test_lookahead_does_not_move_weights_or_bn_stats(f64):
    model, x, y, xv, yv, buf = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lookahead(model, space.psi_to_natural(PSI), x, y, xv, yv, buf)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_m_component_is_the_crn_finite_difference(f64):
    # ∂J/∂m is defined as a common-random-numbers central difference with the real ops: recompute it
    # by hand from the same generator state and compare
    torch.manual_seed(1)
    model = build_model("resnet8", smooth=True, width=4)
    tx = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    ty = torch.randint(0, 10, (64,))
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    src = BatchSource(tx, ty, mean, std, batch_size=32, cutout=4)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    g = hypergrad_batch(model, PSI, src, None, gen)
    gen.set_state(state)
    xtr, ytr, xv, yv = src.draw(gen)
    seed = int(torch.randint(2**62, (1,), generator=gen))
    nat = space.psi_to_natural(PSI)

    def J(m):
        gg = torch.Generator().manual_seed(seed)
        xa = augment.augment_batch(xtr, m, 2, 4, gg, mean, std)
        return lookahead(model, nat, xa, ytr, augment.normalise(xv, mean, std), yv, None, need_grads=False)[0]

    m0 = int(PSI["ra_magnitude"])
    fd = (J(m0 + M_STEP) - J(m0 - M_STEP)) / (2 * M_STEP)
    assert np.isfinite(g).all()
    assert abs(g[3] - fd) <= 1e-3 * max(abs(fd), 1e-12)
