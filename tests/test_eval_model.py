"""`perbench eval-model`: models trained elsewhere get the grid's evaluations, and a
checkpoint that cannot be trusted or does not fit is refused with a clear message."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.cli import main
from bench.results.store import read_table

FACTORY = Path(__file__).parent / "fixtures" / "plugins" / "external_model.py"

# The tiny fixture grid's attacks, budget and threads, without its slower axes: the same
# evaluation cells as the tiny grid's, so numbers can be compared exactly.
ATTACKS_ONLY = """\
name: external
datasets: [digits]
archs: [small_cnn]
methods: [erm]
train_threat: {norm: Linf, eps: 0.1}
attacks:
  - {name: fgsm, norm: Linf, eps: 0.1}
  - {name: pgd, norm: Linf, eps: 0.1, steps: 5}
hardware: []
seeds: [0]
budget: {epochs: 2, batch_size: 64, n_eval: 100, val_size: 0.1}
threads: 1
checks: {enabled: false}
"""


def _board(tmp_path: Path) -> Path:
    board = tmp_path / "external"
    board.mkdir()
    (board / "grid.yaml").write_text(ATTACKS_ONLY)
    return board


def test_a_grid_checkpoint_evaluated_as_external_reproduces_its_numbers(finished, tmp_path,
                                                                         capsys):
    runs = read_table(finished / "results", "runs")
    erm = runs[runs["method"] == "erm"].iloc[0]
    board = _board(tmp_path)
    assert main(["eval-model", str(board), "--checkpoint", str(finished / "results" / erm["checkpoint"]),
                 "--arch", "small_cnn", "--name", "erm elsewhere", "--authors", "B. User",
                 "--quiet"]) == 0
    assert "erm elsewhere ranks #1 of 1" in capsys.readouterr().out
    new = read_table(board / "results", "runs").iloc[0]
    assert new["clean_acc"] == erm["clean_acc"] and new["params"] == erm["params"]
    assert pd_isna(new["train_flops"])  # PERBench did not see its training
    theirs = read_table(finished / "results", "robustness")
    theirs = theirs[(theirs["run_id"] == erm["run_id"]) & theirs["sweep"].isna()]
    ours = read_table(board / "results", "robustness")
    assert dict(zip(ours["attack"], ours["robust_acc"])) == dict(zip(theirs["attack"],
                                                                      theirs["robust_acc"]))
    sub = read_table(board / "results", "submissions").iloc[0]
    assert (sub["kind"], sub["authors"], sub["submission_id"]) == (
        "external model", "B. User", new["submission_id"])
    assert json.loads(new["method_config"])["name"] == "external"


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_a_user_factory_with_a_plain_pytorch_model(trained_digits_model, tmp_path):
    from bench.work.loop import accuracy
    from bench.work.model import load_dataset

    ckpt = tmp_path / "model.pt"
    torch.save({"state_dict": trained_digits_model.state_dict()}, ckpt)  # a usual wrapper
    board = _board(tmp_path)
    assert main(["eval-model", str(board), "--checkpoint", str(ckpt), "--factory",
                 f"{FACTORY}:build", "--name", "plain torch", "--quiet"]) == 0
    row = read_table(board / "results", "runs").iloc[0]
    data = load_dataset("digits", None)
    assert row["clean_acc"] == accuracy(trained_digits_model, data.test_x, data.test_y) > 0.9
    assert row["arch"] == f"py:{FACTORY}:build"
    rob = read_table(board / "results", "robustness")
    assert set(rob["attack"]) == {"fgsm", "pgd"} and (rob["status"] == "ok").all()
    assert (rob["robust_acc"] <= row["clean_acc"]).all()


def test_untrusted_or_unfitting_checkpoints_are_refused(trained_digits_model, tmp_path, capsys):
    board = _board(tmp_path)
    pickled = tmp_path / "whole_model.pt"
    torch.save(trained_digits_model, pickled)  # a pickled module: code, not weights
    assert main(["eval-model", str(board), "--checkpoint", str(pickled), "--factory",
                 f"{FACTORY}:build", "--name", "x"]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    state = tmp_path / "state.pt"
    torch.save(trained_digits_model.state_dict(), state)
    assert main(["eval-model", str(board), "--checkpoint", str(state), "--arch", "small_cnn",
                 "--name", "x"]) == 2
    assert "does not fit the architecture" in capsys.readouterr().err
    assert main(["eval-model", str(board), "--checkpoint", str(state), "--name", "x"]) == 2
    assert "exactly one of --arch" in capsys.readouterr().err
    assert main(["eval-model", str(board), "--checkpoint", str(tmp_path / "nope.pt"),
                 "--arch", "small_cnn", "--name", "x"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["eval-model", str(board), "--checkpoint", str(state), "--factory",
                 f"{FACTORY}:missing", "--name", "x"]) == 2
    assert "has no function 'missing'" in capsys.readouterr().err
    assert main(["eval-model", str(board), "--checkpoint", str(state), "--factory",
                 f"{FACTORY}:build", "--name", "erm"]) == 2
    assert "already a method" in capsys.readouterr().err
    assert not (board / "results").exists()
