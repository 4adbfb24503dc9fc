"""CLI: --help on each verb, one-line errors with a non-zero exit, a real trial from an ImageFolder."""
import json
import subprocess
import sys

import pytest

from ohgw_bench.cli.main import main

VERBS = ["train", "hypergrad", "collect", "fit", "sweep", "report", "verify", "calibrate"]


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ohgw_bench.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.parametrize("verb", VERBS)
def test_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_unknown_flag_one_line_nonzero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "cifar10-smoke", "--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bogus" in err[0]


@pytest.mark.parametrize("args,needle", [
    (["train", "--task", "nope"], "'nope' is not a task"),
    (["train", "--task", "cifar10-smoke", "--set", "momentum=2"], "momentum=2.0"),
    (["train", "--task", "cifar10-smoke", "--set", "lr=0.1"], "'lr' is not a hyperparameter"),
    (["train", "--task", "cifar10-smoke", "--warm-start", "hypergradient:eta=x"], "eta='x'"),
    (["train", "--task", "cifar10-smoke", "--data-root", "/nonexistent/dir"], "/nonexistent/dir"),
    (["sweep", "/nonexistent.yaml"], "does not exist"),
    (["fit", "/nonexistent"], "lacks curves.parquet"),
])
def test_bad_input_one_line_error(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OHGW_CACHE", str(tmp_path))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_train_prints_json_per_epoch_and_writes_run_dir(tiny_imagefolder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OHGW_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(["train", "--task", "cifar10-smoke", "--seed", "1", "--data-root", str(tiny_imagefolder),
               "--warm-start", "hypergradient:eta=1e-3", "--out", str(out)])
    assert rc == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    assert lines[0]["hg_log10_lr"] is not None
    meta = json.loads((out / "run.json").read_text())
    assert meta["psi_effective"] != meta["psi"] and "versions" in meta and (out / "curves.parquet").exists()


def test_malformed_data_root_names_what_was_expected(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OHGW_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bad" / "train" / "cats").mkdir(parents=True)
    (tmp_path / "bad" / "test").mkdir(parents=True)
    assert main(["train", "--task", "cifar10-smoke", "--data-root", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "class folders" in err and len(err.strip().splitlines()) == 1


def test_missing_dataset_names_the_three_ways_and_the_default_is_the_user_cache(tmp_path, capsys, monkeypatch):
    """No --data-root and no $OHGW_DATA: the default is data/ under the cache, and nothing is downloaded."""
    monkeypatch.setenv("OHGW_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OHGW_DATA", raising=False)
    assert main(["train", "--task", "cifar10-smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(tmp_path / "cache" / "data") in err[0]
    assert "--data-root" in err[0] and "OHGW_DATA" in err[0] and "--download" in err[0]
    assert not (tmp_path / "cache" / "data").exists()   # never a silent download


def test_ohgw_data_is_used_when_no_flag_is_given(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OHGW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OHGW_DATA", str(tmp_path / "from-env"))
    assert main(["hypergrad", "--task", "cifar10-smoke"]) == 2
    assert str(tmp_path / "from-env") in capsys.readouterr().err
