"""The transfer matrix (thesis Algorithm 3) as users read it: labels, matrix, the
transfer-beats-white-box flag, `perbench transfer` on the tiny grid's real results."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from bench.cli import main
from bench.views.transfer import (
    MARGIN,
    render,
    run_labels,
    transfer_long,
    transfer_matrix,
    transfer_summary,
)

RUNS = pd.DataFrame([
    {"run_id": "a", "method": "erm", "arch": "small_cnn", "seed": 0, "dataset": "d", "status": "ok"},
    {"run_id": "b", "method": "pgd_at", "arch": "small_cnn", "seed": 0, "dataset": "d", "status": "ok"},
    {"run_id": "c", "method": "pgd_at", "arch": "small_cnn", "seed": 1, "dataset": "d", "status": "ok"},
    {"run_id": "x", "method": "erm", "arch": "small_cnn", "seed": 0, "dataset": "e", "status": "failed"},
])


def transfer_rows(acc: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"source_run": s, "target_run": t, "attack": "pgd", "eps": 0.1,
                          "n_examples": 500, "acc": v, "robust_acc": v - 0.05,
                          "created_at": pd.Timestamp("2026-11-25", tz="UTC")}
                         for (s, t), v in acc.items()])


# b's own gradients leave it 50% accurate; c's examples leave it 40% (beyond the margin).
# c's white-box is 45%; b's examples reach 45.5% on c: within the margin, not flagged.
ACC = {("a", "a"): 0.0, ("a", "b"): 0.7, ("a", "c"): 0.72,
       ("b", "a"): 0.1, ("b", "b"): 0.5, ("b", "c"): 0.455,
       ("c", "a"): 0.2, ("c", "b"): 0.4, ("c", "c"): 0.45}


def test_labels_are_unique_and_name_the_seed_only_where_needed():
    labels = run_labels(RUNS[RUNS["status"] == "ok"])
    assert labels.to_dict() == {"a": "erm · small_cnn", "b": "pgd_at · small_cnn · seed 0",
                                "c": "pgd_at · small_cnn · seed 1"}


def test_matrix_has_sources_as_rows_and_the_white_box_on_the_diagonal():
    long = transfer_long(transfer_rows(ACC), RUNS)
    assert len(long) == 9 and long["white_box"].sum() == 3
    wide = transfer_matrix(long)
    assert list(wide.index) == list(wide.columns)
    assert wide.loc["pgd_at · small_cnn · seed 1", "pgd_at · small_cnn · seed 0"] == 0.4
    assert wide.loc["erm · small_cnn", "erm · small_cnn"] == 0.0


def test_a_transfer_attack_beating_the_white_box_flags_only_that_target():
    summary = transfer_summary(transfer_long(transfer_rows(ACC), RUNS)).set_index("target")
    b, c = summary.loc["pgd_at · small_cnn · seed 0"], summary.loc["pgd_at · small_cnn · seed 1"]
    assert b["transfer_beats_white_box"] and b["strongest_source"] == "pgd_at · small_cnn · seed 1"
    assert b["white_box"] == 0.5 and b["transfer"] == 0.4
    assert 0 < c["transfer"] - c["white_box"] + MARGIN and not c["transfer_beats_white_box"]
    assert summary["transfer_beats_white_box"].sum() == 1
    text = render(transfer_long(transfer_rows(ACC), RUNS))
    assert "TRANSFER BEATS WHITE-BOX" in text and "3 pgd_at · small_cnn · seed 1" in text


def test_reruns_keep_the_latest_row_and_other_datasets_and_failed_runs_are_left_out():
    rows = transfer_rows(ACC)
    later = transfer_rows({("b", "b"): 0.3}).assign(created_at=pd.Timestamp("2026-11-26", tz="UTC"))
    stray = transfer_rows({("x", "a"): 0.9})
    long = transfer_long(pd.concat([rows, later, stray]), RUNS)
    assert len(long) == 9
    assert long.loc[long["white_box"] & (long["target_run"] == "b"), "acc"].item() == 0.3
    assert transfer_long(rows, RUNS, dataset="e").empty
    with pytest.raises(ValueError, match="acc, robust_acc"):
        transfer_long(rows, RUNS, value="clean")


def test_cli_prints_the_tiny_grids_matrix(finished, capsys):
    assert main(["transfer", str(finished)]) == 0
    out = capsys.readouterr().out
    assert "the diagonal is the white-box attack" in out
    assert "1 erm · small_cnn" in out and "2 fast_at · small_cnn" in out
    assert main(["transfer", str(finished), "--format", "csv", "--value", "robust_acc"]) == 0
    csv = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert len(csv) == 4 and csv["white_box"].sum() == 2
    assert csv["robust_acc"].between(0, 1).all()


def test_cli_errors_name_the_problem(finished, tmp_path, capsys):
    assert main(["transfer", str(finished), "--dataset", "cifar10"]) == 2
    assert "--dataset 'cifar10'" in capsys.readouterr().err
    board = tmp_path / "no-transfer"
    shutil.copytree(finished, board)
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    del spec["transfer"]
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    assert main(["transfer", str(board)]) == 2
    assert "no transfer: section" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(finished / "grid.yaml", empty / "grid.yaml")
    assert main(["transfer", str(empty)]) == 0
    assert "no transfer results yet" in capsys.readouterr().out
