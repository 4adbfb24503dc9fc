"""Batched per-image augmentation on uint8 tensors (CPU or GPU): RandAugment, crop/flip, Cutout.

Every image draws its own RandAugment ops (torchvision's 14 ops, its 31-bin magnitude table,
random signs), but the work is batched: images that drew the same (op, sign) are transformed in
one call of torchvision's tensor functional API, so the result equals torchvision's own
(v2) ``RandAugment`` op for op (tests/test_augment.py checks this on uint8 images) while running
without per-image PIL. All randomness comes from one ``torch.Generator`` and is drawn
independently of the magnitude, so two calls with the same generator state and different
magnitudes use the same ops, signs, crops and holes (common random numbers for ∂J/∂m).
"""
from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

NUM_BINS = 31
OPS: tuple[str, ...] = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
                        "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def magnitude_table(op: str, size: int) -> torch.Tensor:
    """torchvision's RandAugment magnitude bins (num_bins=31) for a square image of side ``size``."""
    lin = lambda hi: torch.linspace(0.0, hi, NUM_BINS)  # noqa: E731
    if op in ("ShearX", "ShearY"):
        return lin(0.3)
    if op in ("TranslateX", "TranslateY"):
        return lin(150.0 / 331.0 * size)
    if op == "Rotate":
        return lin(30.0)
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return lin(0.9)
    if op == "Posterize":
        return 8 - (torch.arange(NUM_BINS) / ((NUM_BINS - 1) / 4)).round().int()
    if op == "Solarize":  # threshold as a fraction of the dtype's maximum (torchvision v2)
        return torch.linspace(1.0, 0.0, NUM_BINS)
    return torch.tensor(0.0)


def apply_op(img: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One RandAugment op on a uint8 batch (B, C, H, W), as torchvision's RandAugment applies it."""
    nearest = InterpolationMode.NEAREST
    if op == "Identity":
        return img
    if op == "ShearX":
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(magnitude)), 0.0],
                         interpolation=nearest, fill=None, center=[0, 0])
    if op == "ShearY":
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(magnitude))],
                         interpolation=nearest, fill=None, center=[0, 0])
    if op == "TranslateX":
        return TF.affine(img, angle=0.0, translate=[int(magnitude), 0], scale=1.0, interpolation=nearest,
                         shear=[0.0, 0.0], fill=None)
    if op == "TranslateY":
        return TF.affine(img, angle=0.0, translate=[0, int(magnitude)], scale=1.0, interpolation=nearest,
                         shear=[0.0, 0.0], fill=None)
    if op == "Rotate":
        return TF.rotate(img, magnitude, interpolation=nearest, fill=None)
    if op == "Brightness":
        return TF.adjust_brightness(img, 1.0 + magnitude)
    if op == "Color":
        return TF.adjust_saturation(img, 1.0 + magnitude)
    if op == "Contrast":
        return TF.adjust_contrast(img, 1.0 + magnitude)
    if op == "Sharpness":
        return TF.adjust_sharpness(img, 1.0 + magnitude)
    if op == "Posterize":
        return TF.posterize(img, int(magnitude))
    if op == "Solarize":
        return TF.solarize(img, magnitude * (255.0 if img.dtype == torch.uint8 else 1.0))
    if op == "AutoContrast":
        return TF.autocontrast(img)
    if op == "Equalize":
        return TF.equalize(img)
    raise ValueError(f"{op!r} is not a RandAugment op in {list(OPS)}")


def _op_variants(size: int, magnitude: int):
    """(op index, op, sign draw or None, signed magnitude) for every op but Identity: sign draw 1
    means the negated magnitude, as in torchvision."""
    for oi, op in enumerate(OPS):
        if op == "Identity":
            continue
        table = magnitude_table(op, size)
        mag = float(table[magnitude]) if table.ndim > 0 else 0.0
        for s in ((0, 1) if op in SIGNED else (None,)):
            yield oi, op, s, (-mag if s == 1 else mag)


def rand_augment(x: torch.Tensor, magnitude: int, num_ops: int, gen: torch.Generator,
                 mode: str | None = None) -> torch.Tensor:
    """Per-image RandAugment(num_ops, magnitude) on a uint8 batch.

    ``mode="group"`` (default on CPU) transforms only the images that drew each (op, sign): least
    compute, but the grouping needs the draws on the host (a device sync per op slot).
    ``mode="select"`` (default on CUDA) transforms the whole batch with every (op, sign) and picks
    each image's result with ``torch.where``: ~20x the (tiny) compute, no host sync. Both give the
    same images for the same generator state."""
    b, size = x.shape[0], x.shape[-1]
    if not 0 <= magnitude < NUM_BINS:
        raise ValueError(f"RandAugment magnitude must lie in [0, 30], but got {magnitude=}")
    mode = mode or ("select" if x.is_cuda else "group")
    for _ in range(num_ops):
        ops = torch.randint(len(OPS), (b,), generator=gen, device=gen.device)
        signs = torch.randint(2, (b,), generator=gen, device=gen.device)
        if mode == "select":
            ops, signs = ops.to(x.device), signs.to(x.device)
            out = x
            for oi, op, s, mag in _op_variants(size, magnitude):
                sel = (ops == oi) if s is None else ((ops == oi) & (signs == s))
                out = torch.where(sel[:, None, None, None], apply_op(x, op, mag), out)
            x = out
            continue
        ops, signs = ops.cpu(), signs.cpu()  # one small sync per op slot: grouping needs host indices
        out = x.clone()
        for oi, op, s, mag in _op_variants(size, magnitude):
            sel = (ops == oi) if s is None else ((ops == oi) & (signs == s))
            idx = torch.nonzero(sel).flatten()
            if len(idx):
                idx = idx.to(x.device)
                out[idx] = apply_op(x[idx], op, mag)
        x = out
    return x


def crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop after reflect-padding by ``pad`` and random horizontal flip, per image."""
    b, c, h, w = x.shape
    dev = x.device
    flip = torch.rand(b, generator=gen, device=gen.device).to(dev) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if pad <= 0:
        return x
    xp = torch.nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
    oy = torch.randint(2 * pad + 1, (b,), generator=gen, device=gen.device).to(dev)
    ox = torch.randint(2 * pad + 1, (b,), generator=gen, device=gen.device).to(dev)
    iy = oy[:, None] + torch.arange(h, device=dev)[None]
    ix = ox[:, None] + torch.arange(w, device=dev)[None]
    bi = torch.arange(b, device=dev)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, iy[:, :, None], ix[:, None, :]]  # (b, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def cutout_mask(b: int, size: int, hole: int, gen: torch.Generator, device) -> torch.Tensor:
    """(b, 1, size, size) float mask with one hole×hole square of zeros per image (clipped at borders)."""
    cy = torch.randint(size, (b,), generator=gen, device=gen.device).to(device)
    cx = torch.randint(size, (b,), generator=gen, device=gen.device).to(device)
    r = torch.arange(size, device=device)
    half = hole // 2
    iny = ((r[None] >= (cy[:, None] - half)) & (r[None] < (cy[:, None] - half + hole)))
    inx = ((r[None] >= (cx[:, None] - half)) & (r[None] < (cx[:, None] - half + hole)))
    hole_mask = iny[:, :, None] & inx[:, None, :]
    return (~hole_mask).float()[:, None]


def augment_batch(x_u8: torch.Tensor, magnitude: int, num_ops: int, cutout: int, gen: torch.Generator,
                  mean: torch.Tensor, std: torch.Tensor, crop_pad: int = 4) -> torch.Tensor:
    """uint8 batch -> normalised float batch: crop/flip, RandAugment, normalise, Cutout (holes = mean)."""
    x = crop_flip(x_u8, crop_pad, gen)
    x = rand_augment(x, magnitude, num_ops, gen)
    xf = (x.float() / 255.0 - mean) / std
    if cutout > 0:
        xf = xf * cutout_mask(x.shape[0], x.shape[-1], cutout, gen, x.device)
    return xf


def normalise(x_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x_u8.float() / 255.0 - mean) / std
