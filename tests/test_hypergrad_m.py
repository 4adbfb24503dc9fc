"""Independent check of the m component of ``hypergrad_batch`` (∂J/∂m, RandAugment magnitude).

The code defines ∂J/∂m as a common-random-numbers (CRN) central difference
(J(m+M_STEP; ξ) - J(m-M_STEP; ξ)) / (2·M_STEP), one augmentation draw ξ shared by both sides. What it
is meant to estimate is the central difference of the *expected* look-ahead loss,
(E_ξ J(m+M_STEP) - E_ξ J(m-M_STEP)) / (2·M_STEP). This test estimates that quantity by brute force,
without the code's CRN construction or its ``lookahead``: every J comes from its own independent
augmentation draw (own generator, no shared random numbers between the two sides or between draws)
and from a separate re-implementation of the one-step look-ahead (``torch.func.functional_call``,
PyTorch's own label-smoothed cross-entropy). The mean of the code's m component over many calls on the
same model and the same data batch must agree with it within 4 combined standard errors, and the
combined standard error must be small (≤ 10 %) relative to the derivative, so that a sign flip, a
factor of 2 or a one-sided difference fails.

Setup, chosen so that E[J] has a clearly non-zero slope in m: 8×8 uniform-noise images with random
labels, the held-out half is the *same* images clean (J measures how much one SGD step on the
augmented copies helps on the originals: stronger augmentation helps less, so dE[J]/dm > 0), crop and
Cutout off (magnitude-independent noise), lr = 1. Around bin 9 the slope is steep and uneven (the
Translate ops start moving pixels at bin 9: int(9/30·150/331·8) = 1), so one-sided differences are off
by about half the value.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ohgw_bench import space
from ohgw_bench.trial import augment
from ohgw_bench.trial.hypergrad import BatchSource, M_STEP, hypergrad_batch, lookahead
from ohgw_bench.trial.models import build_model

M0 = 9
PSI = {"log10_lr": 0.0, "log10_wd": -4.0, "momentum": 0.9, "ra_magnitude": float(M0), "label_smoothing": 0.1}
HALF = 32           # images per half-batch
NUM_OPS = 2
N_BRUTE = 320       # independent draws per side for E[J(m ± M_STEP)]
N_CODE = 160        # calls of hypergrad_batch (each with a fresh augmentation draw)
Z_TOL = 4.0         # |difference| ≤ Z_TOL · combined SE
MAX_REL_SE = 0.10   # combined SE ≤ MAX_REL_SE · |brute-force derivative|


class FixedBatch(BatchSource):
    """A BatchSource whose every draw is the same batch, the same images serving as training half and
    held-out half; the augmentation randomness still comes from the generator hypergrad_batch draws
    its seed from."""

    def draw(self, gen):
        return self.train_x, self.train_y, self.train_x, self.train_y


def _setup():
    torch.manual_seed(0)
    model = build_model("resnet8", smooth=True, width=4)
    x = torch.randint(0, 256, (HALF, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (HALF,))
    buf = {n: 0.01 * torch.randn_like(p) for n, p in model.named_parameters()}
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    src = FixedBatch(x, y, mean, std, batch_size=2 * HALF, num_ops=NUM_OPS, cutout=0, crop_pad=0)
    return model, src, buf


def _own_lookahead_loss(model, nat, x_tr, y_tr, x_v, y_v, buf) -> float:
    """J = CE(f(w'; x_v), y_v), w' = w - lr·(μ·b + ∇CE_ε(w; x_tr, y_tr) + wd·w); BN on buffer copies."""
    w = {n: p.detach() for n, p in model.named_parameters()}
    wg = {n: t.clone().requires_grad_(True) for n, t in w.items()}
    out = functional_call(model, (wg, {n: b.clone() for n, b in model.named_buffers()}), (x_tr,))
    loss = F.cross_entropy(out, y_tr, label_smoothing=nat["label_smoothing"])
    grads = dict(zip(wg, torch.autograd.grad(loss, list(wg.values()))))
    with torch.no_grad():
        w_new = {n: w[n] - nat["lr"] * (nat["momentum"] * buf[n] + grads[n] + nat["weight_decay"] * w[n])
                 for n in w}
        out = functional_call(model, (w_new, {n: b.clone() for n, b in model.named_buffers()}), (x_v,))
        return float(F.cross_entropy(out, y_v))


def compare(hg_fn=hypergrad_batch, seed: int = 0) -> dict:
    """Brute-force E[J] central difference vs the mean of ``hg_fn``'s m component (index 3), float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _compare(hg_fn, seed)
    finally:
        torch.set_default_dtype(old)


def _compare(hg_fn, seed: int) -> dict:
    model, src, buf = _setup()
    nat = space.psi_to_natural(PSI)
    x_v = (src.train_x.double() / 255.0 - src.mean) / src.std

    def J(m: int, draw_seed: int) -> float:  # one independent augmentation draw per call
        g = torch.Generator().manual_seed(draw_seed)
        xa = augment.augment_batch(src.train_x, m, NUM_OPS, 0, g, src.mean, src.std, 0)
        return _own_lookahead_loss(model, nat, xa, src.train_y, x_v, src.train_y, buf)

    # the re-implementation is the code's look-ahead (checked once, so a mismatch is not blamed on m)
    xa = augment.augment_batch(src.train_x, M0, NUM_OPS, 0, torch.Generator().manual_seed(1), src.mean, src.std, 0)
    ref, _ = lookahead(model, nat, xa, src.train_y, augment.normalise(src.train_x, src.mean, src.std), src.train_y,
                       buf, need_grads=False)
    own = _own_lookahead_loss(model, nat, xa, src.train_y, x_v, src.train_y, buf)
    assert abs(own - ref) <= 1e-6 * abs(ref), (own, ref)

    j_hi = np.array([J(M0 + M_STEP, 10_000_000 * seed + 1_000_000 + i) for i in range(N_BRUTE)])
    j_lo = np.array([J(M0 - M_STEP, 10_000_000 * seed + 2_000_000 + i) for i in range(N_BRUTE)])
    brute = (j_hi.mean() - j_lo.mean()) / (2 * M_STEP)
    brute_se = math.sqrt(j_hi.var(ddof=1) / N_BRUTE + j_lo.var(ddof=1) / N_BRUTE) / (2 * M_STEP)

    gen = torch.Generator().manual_seed(12345 + seed)
    code = np.array([hg_fn(model, PSI, src, buf, gen)[3] for _ in range(N_CODE)])
    code_mean, code_se = float(code.mean()), float(code.std(ddof=1) / math.sqrt(N_CODE))
    se = math.hypot(brute_se, code_se)
    return dict(brute=brute, brute_se=brute_se, code=code_mean, code_se=code_se, se=se,
                z=(code_mean - brute) / se, rel_se=se / abs(brute))


def test_m_component_estimates_the_derivative_of_the_expected_lookahead_loss():
    r = compare()
    msg = (f"brute force dE[J]/dm = {r['brute']:.5f} ± {r['brute_se']:.5f} ({N_BRUTE} draws per side), "
           f"hypergrad_batch m component = {r['code']:.5f} ± {r['code_se']:.5f} ({N_CODE} calls), z = {r['z']:.2f}")
    assert r["rel_se"] <= MAX_REL_SE, "too noisy to be a meaningful check: " + msg
    assert abs(r["code"] - r["brute"]) <= Z_TOL * r["se"], msg
