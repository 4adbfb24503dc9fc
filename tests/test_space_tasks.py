import math

import pytest

from ohgw_bench import space
from ohgw_bench.tasks import TASKS, get_task


def test_psi_natural_roundtrip():
    psi = {"log10_lr": -1.3, "log10_wd": -4.2, "momentum": 0.87, "ra_magnitude": 12.5, "label_smoothing": 0.05}
    nat = space.psi_to_natural(psi)
    assert math.isclose(nat["lr"], 10 ** -1.3) and math.isclose(nat["weight_decay"], 10 ** -4.2)
    back = space.natural_to_psi(nat)
    assert all(math.isclose(back[k], psi[k]) for k in psi)


def test_out_of_range_names_key_bound_and_value():
    psi = space.center() | {"momentum": 1.2}
    with pytest.raises(ValueError, match=r"'momentum' must lie in \[0.5, 0.99\].*momentum=1.2"):
        space.check_psi(psi)


def test_missing_key_is_named():
    with pytest.raises(ValueError, match="label_smoothing"):
        space.check_psi({k: v for k, v in space.center().items() if k != "label_smoothing"})


def test_unit_cube_roundtrip_and_clip():
    c = space.center()
    u = space.to_unit(c)
    assert all(abs(x - 0.5) < 1e-12 for x in u)
    assert space.clip_psi(c | {"log10_lr": 3.0})["log10_lr"] == 0.0


def test_syne_tune_space_has_five_dims_and_constants():
    st = space.syne_tune_space(task="cifar10-mini", epochs=27)
    assert set(space.PSI_KEYS) <= set(st) and st["epochs"] == 27


def test_unknown_task_lists_valid():
    with pytest.raises(ValueError, match="cifar10-mini"):
        get_task("imagenet")


def test_task_milestones_mini_has_four_rungs():
    # CPU task: at least 4 rungs at reduction factor 3
    assert get_task("cifar10-mini").milestones() == [1, 3, 9, 27]


def test_registry_has_seed_tasks():
    assert {"cifar10-resnet20", "cifar10-resnet50", "cifar10-mini"} <= set(TASKS)


def test_resnet20_parameter_count():
    from ohgw_bench.trial.models import build_model, count_params
    n = count_params(build_model("resnet20"))
    assert 0.26e6 < n < 0.29e6  # ≈0.27M (He et al.), option-B shortcuts add ~3k
