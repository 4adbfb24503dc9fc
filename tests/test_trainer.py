import math

import pytest
import torch

from ohgw_bench.trial.trainer import Trial

PSI = {"log10_lr": -1.0, "log10_wd": -3.3, "momentum": 0.9, "ra_magnitude": 9.0, "label_smoothing": 0.1}


def test_reports_every_epoch_with_test_at_milestones(tiny_task, tiny_data):
    rows = Trial(tiny_task, PSI, 0, tiny_data, device=torch.device("cpu")).run(3)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"train_loss", "train_acc", "val_loss", "val_acc", "epoch_time", "cum_time"} <= set(r)
    assert "test_acc" in rows[0] and "test_acc" in rows[2] and "test_acc" not in rows[1]  # rungs 1 and 3
    assert rows[2]["cum_time"] >= rows[1]["cum_time"] >= rows[0]["cum_time"] > 0


def test_learns_on_learnable_data(tiny_task, tiny_data):
    # class-coloured blobs are easy: validation accuracy must rise well above chance within 3 epochs
    rows = Trial(tiny_task, PSI, 0, tiny_data, device=torch.device("cpu")).run(3)
    assert rows[-1]["val_acc"] > 0.3


def test_resume_continues_exactly(tiny_task, tiny_data, tmp_path):
    ws = "hypergradient:eta=1e-3,steps=1,rule=raw"
    straight = Trial(tiny_task, PSI, 4, tiny_data, device=torch.device("cpu"), warm_start=ws).run(3)
    a = Trial(tiny_task, PSI, 4, tiny_data, device=torch.device("cpu"), warm_start=ws, checkpoint_dir=str(tmp_path))
    first = a.run(1)
    # a new process would rebuild from the command line: ψ = x, but the checkpoint restores ψ′
    b = Trial(tiny_task, PSI, 4, tiny_data, device=torch.device("cpu"), warm_start=ws, checkpoint_dir=str(tmp_path))
    assert b.resumed and b.epoch == 1 and b.psi == a.psi != PSI
    rest = b.run(3)
    assert [r["epoch"] for r in rest] == [2, 3]  # no epoch repeated
    for got, want in zip(first + rest, straight):
        assert got["val_acc"] == want["val_acc"] and got["train_loss"] == want["train_loss"]
        assert got["xp_log10_lr"] == want["xp_log10_lr"]


def test_warm_start_not_applied_on_resume(tiny_task, tiny_data, tmp_path):
    a = Trial(tiny_task, PSI, 1, tiny_data, device=torch.device("cpu"), warm_start="hypergradient:eta=1",
              checkpoint_dir=str(tmp_path))
    a.run(1)
    b = Trial(tiny_task, PSI, 1, tiny_data, device=torch.device("cpu"), warm_start="hypergradient:eta=1",
              checkpoint_dir=str(tmp_path))
    b.run(2)
    assert b.psi == a.psi and b.ws.cost_seconds == a.ws.cost_seconds


def test_divergence_is_reported_and_ends_cleanly(tiny_task, tiny_data):
    psi = PSI | {"log10_lr": 0.0, "momentum": 0.99, "log10_wd": -2.0}
    big = tiny_task.replace(max_epochs=3)
    t = Trial(big, psi, 0, tiny_data, device=torch.device("cpu"))
    # force a non-finite loss: a weight set to inf diverges at the next step
    with torch.no_grad():
        next(t.model.parameters()).fill_(float("inf"))
    rows = t.run(3)
    assert rows[-1]["diverged"] == 1 and len(rows) == 1 and rows[-1]["val_acc"] == 0.1
    assert math.isnan(rows[-1]["val_loss"])


def test_epochs_out_of_range(tiny_task, tiny_data):
    with pytest.raises(ValueError, match="epochs=5"):
        Trial(tiny_task, PSI, 0, tiny_data, device=torch.device("cpu")).run(5)


def test_warm_start_keeps_the_paired_data_order(tiny_task, tiny_data):
    # a hyper-gradient warm start with a zero step trains exactly like the baseline: the oracle's
    # batches come from their own stream, so data order and augmentation stay paired
    base = Trial(tiny_task, PSI, 2, tiny_data, device=torch.device("cpu")).run(2)
    ws = Trial(tiny_task, PSI, 2, tiny_data, device=torch.device("cpu"),
               warm_start="hypergradient:eta=1e-300").run(2)
    assert [r["train_loss"] for r in base] == [r["train_loss"] for r in ws]
