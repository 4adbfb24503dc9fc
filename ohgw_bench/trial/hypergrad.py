"""One-step look-ahead hyper-gradients of all five ψ from one mini-batch (Luketina et al. 2016).

The gradient of the *training* loss is degenerate for these hyperparameters (lr and momentum do not
appear in it, ∂/∂wd = ½‖w‖² > 0 always, ε and m always push towards 0), so J is the clean
cross-entropy on a held-out half-batch after one look-ahead SGD step.

With w the weights, b the SGD momentum buffer (after one ordinary SGD step, so μ has a
gradient), a training half-batch (augmented with magnitude m, label smoothing ε) and a held-out
half-batch (clean, no smoothing):

    d  = g_tr(w; m, ε) + wd·w          g_tr = (1-ε)·∇CE + ε·∇CE_uniform   (exactly linear in ε)
    b' = μ·b + d                        (PyTorch SGD, dampening 0)
    w' = w - lr·b'
    J  = CE(f(w'; x_heldout), y_heldout),  g_v = ∇_{w'} J

    ∂J/∂log10 lr = -ln10·lr·<g_v, b'>
    ∂J/∂log10 wd = -ln10·lr·wd·<g_v, w>
    ∂J/∂μ        = -lr·<g_v, b>
    ∂J/∂ε        = -lr·(1-0)·<g_v, ∇CE_uniform - ∇CE>     (exact: two backwards of one forward)
    ∂J/∂m        : common-random-numbers central difference of J in the RandAugment bin, with the
                   real (non-differentiable) ops; noisy — average over K batches and gate by SNR.

BatchNorm runs in training mode on copies of its buffers, so measuring never moves running stats.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..space import ops_magnitude, psi_to_natural
from ..warmstart.oracles import HGSample
from . import augment

LN10 = math.log(10.0)
M_STEP = 3  # RandAugment bins on each side for the finite difference in m


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # losses in at least float32 (autocast outputs may be bf16); float64 stays float64 for FD checks
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _loss_pair(model, params, buffers, x, y):
    out = functional_call(model, (params, buffers), (x,))
    logp = F.log_softmax(_upcast(out), dim=1)
    ce = F.nll_loss(logp, y)
    uni = -logp.mean(dim=1).mean()
    return ce, uni


def lookahead(model: torch.nn.Module, nat: dict, x_tr: torch.Tensor, y_tr: torch.Tensor, x_v: torch.Tensor,
              y_v: torch.Tensor, momentum_buf: dict[str, torch.Tensor] | None, need_grads: bool = True):
    """J(ψ) at the look-ahead weights, and (optionally) ∂J/∂(log10 lr, log10 wd, μ, ε).

    Args:
        nat: natural hyperparameters {lr, weight_decay, momentum, label_smoothing, ...}.
        momentum_buf: parameter name -> SGD momentum buffer (None: PyTorch's first step, b' = d).
    Returns:
        (J as float, array of 4 partials or None)
    """
    lr, wd, mu, eps = nat["lr"], nat["weight_decay"], nat["momentum"], nat["label_smoothing"]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    w = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    wg = {n: t.clone().requires_grad_(True) for n, t in w.items()}
    ce, uni = _loss_pair(model, wg, buffers, x_tr, y_tr)
    g_ce = torch.autograd.grad(ce, [wg[n] for n in names], retain_graph=True)
    g_un = torch.autograd.grad(uni, [wg[n] for n in names])
    with torch.no_grad():
        b_old = {n: (momentum_buf[n] if momentum_buf is not None and n in momentum_buf else None) for n in names}
        b_new, w_new = {}, {}
        for i, n in enumerate(names):
            d = (1 - eps) * g_ce[i] + eps * g_un[i] + wd * w[n]
            b_new[n] = d if b_old[n] is None else mu * b_old[n] + d
            w_new[n] = w[n] - lr * b_new[n]
    wv = {n: t.clone().requires_grad_(need_grads) for n, t in w_new.items()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    with torch.set_grad_enabled(need_grads):
        out = functional_call(model, (wv, buffers), (x_v,))
        J = F.cross_entropy(_upcast(out), y_v)
    if not need_grads:
        return float(J.detach()), None
    g_v = torch.autograd.grad(J, [wv[n] for n in names])

    def dot(a: dict | list, b) -> float:
        return float(sum((gv.double() * t.double()).sum() for gv, t in zip(g_v, b)))

    with torch.no_grad():
        d_lr = -LN10 * lr * dot(g_v, [b_new[n] for n in names])
        d_wd = -LN10 * lr * wd * dot(g_v, [w[n] for n in names])
        d_mu = 0.0 if all(v is None for v in b_old.values()) else -lr * dot(
            g_v, [b_old[n] if b_old[n] is not None else torch.zeros_like(w[n]) for n in names])
        d_eps = -lr * dot(g_v, [gu - gc for gu, gc in zip(g_un, g_ce)])
    return float(J.detach()), np.array([d_lr, d_wd, d_mu, d_eps])


@dataclass
class BatchSource:
    """Where the oracle's mini-batches come from: the trial's training split and augmentation."""
    train_x: torch.Tensor      # uint8 (N, 3, H, W)
    train_y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    batch_size: int = 128      # split in halves: augmented training half, clean held-out half
    num_ops: int = 2
    cutout: int = 16
    crop_pad: int = 4

    def draw(self, gen: torch.Generator):
        idx = torch.randperm(len(self.train_y), generator=gen, device=gen.device)[: self.batch_size]
        idx = idx.to(self.train_x.device)
        h = self.batch_size // 2
        return self.train_x[idx[:h]], self.train_y[idx[:h]], self.train_x[idx[h:]], self.train_y[idx[h:]]


def hypergrad_batch(model, psi: dict, src: BatchSource, momentum_buf, gen: torch.Generator,
                    with_m: bool = True) -> np.ndarray:
    """All five ∂J/∂ψ (PSI_KEYS order) from one mini-batch drawn from ``gen``."""
    nat = psi_to_natural(psi)
    xtr_u8, ytr, xv_u8, yv = src.draw(gen)
    x_v = augment.normalise(xv_u8, src.mean, src.std)
    aug_seed = int(torch.randint(2**62, (1,), generator=gen, device=gen.device))

    def aug(mag: int):  # the same random numbers for every magnitude (CRN)
        g = torch.Generator(device=gen.device)
        g.manual_seed(aug_seed)
        return augment.augment_batch(xtr_u8, mag, src.num_ops, src.cutout, g, src.mean, src.std, src.crop_pad)

    m0 = ops_magnitude(psi["ra_magnitude"])
    _, four = lookahead(model, nat, aug(m0), ytr, x_v, yv, momentum_buf)
    d_m = float("nan")
    if with_m:
        lo, hi = max(m0 - M_STEP, 0), min(m0 + M_STEP, augment.NUM_BINS - 1)
        j_hi, _ = lookahead(model, nat, aug(hi), ytr, x_v, yv, momentum_buf, need_grads=False)
        j_lo, _ = lookahead(model, nat, aug(lo), ytr, x_v, yv, momentum_buf, need_grads=False)
        d_m = (j_hi - j_lo) / (hi - lo)
    return np.array([four[0], four[1], four[2], d_m, four[3]])


class RealOracle:
    """Hyper-gradient oracle backed by a live model, its optimizer's momentum and the trial's data."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, src: BatchSource,
                 gen: torch.Generator, with_m: bool = True, count_flops: bool = False):
        self.model, self.optimizer, self.src, self.gen = model, optimizer, src, gen
        self.with_m, self.count_flops = with_m, count_flops

    def momentum_buffers(self) -> dict | None:
        if self.optimizer is None:
            return None
        name_of = {id(p): n for n, p in self.model.named_parameters()}
        out = {}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                if st.get("momentum_buffer") is not None:
                    out[name_of[id(p)]] = st["momentum_buffer"]
        return out or None

    def __call__(self, psi: dict, n_batches: int) -> HGSample:
        t0 = time.perf_counter()
        buf = self.momentum_buffers()
        flops = float("nan")
        rows = []
        if self.count_flops:
            from torch.utils.flop_counter import FlopCounterMode
            with FlopCounterMode(display=False) as fc:
                for _ in range(n_batches):
                    rows.append(hypergrad_batch(self.model, psi, self.src, buf, self.gen, self.with_m))
            flops = float(fc.get_total_flops())
        else:
            for _ in range(n_batches):
                rows.append(hypergrad_batch(self.model, psi, self.src, buf, self.gen, self.with_m))
        if self.model.training is False:
            self.model.train()
        sync(self.src.train_x.device)
        return HGSample(np.stack(rows), seconds=time.perf_counter() - t0, flops=flops)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
