"""Grid specs: each kind of bad input fails before any work, naming file, key, allowed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.grid.spec import SpecError, load_spec, parse_eps

GOOD = {
    "name": "t", "datasets": ["digits"], "archs": ["small_cnn"],
    "methods": ["erm", {"name": "pgd_at", "config": {"steps": 3}}],
    "attacks": [{"name": "pgd", "norm": "Linf", "eps": "8/255", "steps": 5}],
    "hardware": ["cpu-1t"], "seeds": [0], "budget": {"epochs": 1, "batch_size": 32},
}


def write(tmp_path: Path, spec: dict) -> Path:
    board = tmp_path / "board"
    board.mkdir(exist_ok=True)
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    return board


def with_(**changes) -> dict:
    spec = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in GOOD.items()}
    spec.update(changes)
    return spec


def test_good_spec_parses_fraction_eps(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.attacks[0].eps == pytest.approx(8 / 255)
    assert spec.methods[0].name == "erm" and spec.methods[1].config == {"steps": 3}


@pytest.mark.parametrize("value,expected", [(0.1, 0.1), ("8/255", 8 / 255), ("0.031", 0.031), (0, 0.0)])
def test_parse_eps(value, expected):
    assert parse_eps(value) == pytest.approx(expected)


@pytest.mark.parametrize("change,needles", [
    ({"datasets": ["cifar11"]}, ["datasets[0]", "cifar11", "digits"]),
    ({"archs": ["resnet999"]}, ["archs[0]", "resnet999", "small_cnn"]),
    ({"methods": ["sgd_magic"]}, ["methods[0]", "sgd_magic", "pgd_at"]),
    ({"hardware": ["tpu"]}, ["hardware[0]", "tpu", "cpu-1t"]),
    ({"attacks": [{"name": "pgdd", "eps": 0.1}]}, ["attacks[0]", "pgdd", "autoattack"]),
    ({"attacks": [{"name": "pgd", "eps": 1.5}]}, ["attacks[0].eps", "[0, 1]"]),
    ({"attacks": [{"name": "pgd", "eps": "-8/255"}]}, ["attacks[0].eps"]),
    ({"attacks": [{"name": "pgd", "eps": 0.1, "norm": "L1"}]}, ["attacks[0].norm", "Linf"]),
    ({"budget": {"epochs": "ten"}}, ["budget.epochs", "integer"]),
    ({"budget": {"batch_size": 8}}, ["budget.epochs", "missing"]),
    ({"seeds": "zero"}, ["seeds"]),
    ({"epochz": 3}, ["epochz", "unknown key", "datasets"]),
    ({"methods": [{"name": "erm", "config": {"lrr": 0.1}}]}, ["methods[0]", "lrr", "allowed options", "lr"]),
    ({"methods": ["caper_unknown+erm"]}, ["methods[0]", "caper_unknown"]),
    ({"methods": [{"name": "erm", "archs": ["resnet18"]}]}, ["methods[0].archs[0]", "resnet18",
                                                              "small_cnn"]),
    ({"training": {"precision": "fp16"}}, ["training.precision", "fp32", "bf16"]),
    ({"training": {"compiled": True}}, ["training.compiled", "unknown key", "compile"]),
    ({"archs": ["small_cnn", "preact_resnet18_w16"], "methods": ["pgd_at+ews"]},
     ["methods[0]", "'small_cnn'", "residual"]),
])
def test_bad_specs_name_file_key_and_allowed(tmp_path, change, needles):
    board = write(tmp_path, with_(**change))
    with pytest.raises(SpecError) as info:
        load_spec(board)
    msg = str(info.value)
    assert str(board / "grid.yaml") in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_missing_top_level_key(tmp_path):
    spec = with_()
    del spec["datasets"]
    with pytest.raises(SpecError, match=r"datasets: missing required key"):
        load_spec(write(tmp_path, spec))


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such grid file"):
        load_spec(tmp_path / "nope")
    (tmp_path / "grid.yaml").write_text("a: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path)


def test_cli_exits_2_with_message(tmp_path):
    board = write(tmp_path, with_(archs=["resnet999"]))
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(board)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "resnet999" in proc.stderr and "small_cnn" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (board / "results").exists(), "a bad spec must fail before any work"
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "show", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such leaderboard" in proc.stderr


def test_attack_seeds_select_runs_and_train_size_keys(tmp_path):
    from bench.work.kinds import expand

    spec = with_(seeds=[0, 1], attacks=[
        {"name": "pgd", "eps": 0.1, "steps": 5},
        {"name": "autoattack", "eps": 0.1, "n_eval": 100, "seeds": [0]}])
    grid = expand(load_spec(write(tmp_path, spec)))
    assert len(grid.train) == 4
    assert sorted((c.attack.name, c.train.seed) for c in grid.attacks if c.attack.name == "autoattack") \
        == [("autoattack", 0), ("autoattack", 0)]
    assert len(grid.attacks) == 4 + 2
    subset = expand(load_spec(write(tmp_path, with_(budget={"epochs": 1, "train_size": 100}))))
    assert subset.train[0].train_size == 100
    assert subset.train[0].key != expand(load_spec(write(tmp_path, GOOD))).train[0].key


def test_training_split_subset_is_stratified_and_disjoint_from_validation():
    import torch

    from bench.work.train import training_split

    y = torch.arange(10).repeat(100)
    train_ids, val_ids = training_split(y, 100.0, seed=0, train_size=300)
    assert len(train_ids) == 300 and len(val_ids) == 100
    assert not set(train_ids.tolist()) & set(val_ids.tolist())
    assert torch.bincount(y[train_ids]).tolist() == [30] * 10
    again, _ = training_split(y, 100.0, seed=0, train_size=300)
    assert torch.equal(train_ids, again)


def test_method_archs_restrict_its_cells_and_keep_keys(tmp_path):
    """A method limited to some archs trains only there; its keys equal the unrestricted ones."""
    from bench.work.kinds import expand

    archs = ["small_cnn", "preact_resnet18_w16"]
    spec = with_(archs=archs, methods=[
        {"name": "erm", "archs": ["small_cnn"]},
        {"name": "pgd_at+ews", "archs": ["preact_resnet18_w16"]}])
    grid = expand(load_spec(write(tmp_path, spec)))
    assert [(c.method.name, c.arch) for c in grid.train] == [
        ("erm", "small_cnn"), ("pgd_at+ews", "preact_resnet18_w16")]
    plain = expand(load_spec(write(tmp_path, with_(methods=["erm"]))))
    assert grid.train[0].key == plain.train[0].key


def test_training_options_key_only_when_not_default(tmp_path):
    from bench.work.kinds import expand

    def first(**training):
        spec = with_(training=training) if training else GOOD
        return expand(load_spec(write(tmp_path, spec))).train[0]

    default = first()
    assert first(precision="fp32", channels_last=False, compile=False).key == default.key
    keys = {default.key, first(precision="bf16").key, first(channels_last=True).key,
            first(compile=True).key}
    assert len(keys) == 4
    fast = first(precision="bf16", channels_last=True)
    assert (fast.execution.precision, fast.execution.channels_last) == ("bf16", True)
