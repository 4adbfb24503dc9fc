"""Each batched RandAugment op equals torchvision's own RandAugment op on uint8 images."""
import pytest
import torch
from torchvision.transforms import InterpolationMode, v2

from ohgw_bench.trial import augment


@pytest.fixture(scope="module")
def imgs():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("op", augment.OPS)
@pytest.mark.parametrize("magnitude", [0, 9, 30])
def test_op_matches_torchvision(imgs, op, magnitude):
    ra = v2.RandAugment(num_ops=2, magnitude=magnitude)
    size = imgs.shape[-1]
    # torchvision's magnitude table for this op
    mags_fn, signed = ra._AUGMENTATION_SPACE[op]
    tv_mags = mags_fn(ra.num_magnitude_bins, size, size)
    ours = augment.magnitude_table(op, size)
    if tv_mags is not None and tv_mags.ndim > 0:
        assert torch.allclose(ours.float(), tv_mags.float())
        mag = float(tv_mags[magnitude])
    else:
        mag = 0.0
    for sign in ((1, -1) if signed else (1,)):
        m = sign * mag
        batched = augment.apply_op(imgs, op, m)
        ref = torch.stack([ra._apply_image_or_video_transform(im, op, m, InterpolationMode.NEAREST, ra._fill)
                           for im in imgs])
        assert batched.dtype == torch.uint8
        assert torch.equal(batched, ref), f"{op} at magnitude bin {magnitude}, sign {sign}"


def test_same_generator_same_ops_for_any_magnitude(imgs):
    # common random numbers: the draw sequence does not depend on the magnitude
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    augment.augment_batch(imgs, 3, 2, 8, g1, mean, std)
    augment.augment_batch(imgs, 27, 2, 8, g2, mean, std)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_cutout_mask_hole_size():
    g = torch.Generator().manual_seed(1)
    m = augment.cutout_mask(64, 32, 16, g, "cpu")
    zeros = (m == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16 * 16 and zeros.min() > 0  # clipped at the borders, never empty


def test_magnitude_out_of_range_is_an_error(imgs):
    with pytest.raises(ValueError, match="magnitude=31"):
        augment.rand_augment(imgs, 31, 2, torch.Generator())


def test_select_mode_equals_group_mode(imgs):
    # the sync-free GPU path gives the same images as the grouped CPU path
    a = augment.rand_augment(imgs, 14, 2, torch.Generator().manual_seed(9), mode="group")
    b = augment.rand_augment(imgs, 14, 2, torch.Generator().manual_seed(9), mode="select")
    assert torch.equal(a, b)
