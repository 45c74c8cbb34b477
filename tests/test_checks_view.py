"""The checks summary as users read it: per check the runs judged and failed and the worst
row, the flagged runs, and `perbench checks` (with --recompute) on the tiny grid's results."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from bench.cli import main
from bench.results import store
from bench.views.checks import checks_long, checks_summary, render

RUNS = pd.DataFrame([
    {"run_id": "a", "method": "erm", "arch": "small_cnn", "seed": 0, "status": "ok"},
    {"run_id": "b", "method": "pgd_at", "arch": "small_cnn", "seed": 0, "status": "ok"},
    {"run_id": "x", "method": "pgd_at", "arch": "small_cnn", "seed": 1, "status": "failed"},
])
T0, T1 = pd.Timestamp("2026-11-25", tz="UTC"), pd.Timestamp("2026-11-26", tz="UTC")


def row(run_id, check, passed, value, detail="", kind="result", created_at=T0):
    return {"run_id": run_id, "check": check, "passed": passed, "value": value,
            "detail": detail or f"{check} saw {value}", "kind": kind, "created_at": created_at}


CHECKS = pd.DataFrame([
    row("a", "blackbox_beats_whitebox", True, -0.02),
    row("b", "blackbox_beats_whitebox", True, 0.04, "square 0.46 < pgd 0.50"),
    row("a", "softmax_outputs", True, 9.0, kind="model"),
    row("b", "softmax_outputs", True, 3.0, "3.0 from log-probabilities", kind="model"),
    row("a", "eps_monotone", True, 0.0),
    row("b", "eps_monotone", True, 0.0),
    row("x", "eps_monotone", False, 0.3),  # a failed run: not on the leaderboard
])


def test_summary_counts_runs_and_quotes_the_closest_call():
    summary = checks_summary(checks_long(CHECKS, RUNS)).set_index("check")
    assert summary["runs"].to_dict() == {"blackbox_beats_whitebox": 2, "eps_monotone": 2,
                                         "softmax_outputs": 2}
    assert summary["failed"].sum() == 0
    # Highest gap for the black-box check; the *lowest* distance for the softmax check.
    assert summary.loc["blackbox_beats_whitebox", "worst"] == \
        "pgd_at · small_cnn: square 0.46 < pgd 0.50"
    assert summary.loc["softmax_outputs", "worst"] == \
        "pgd_at · small_cnn: 3.0 from log-probabilities"
    text = render(checks_long(CHECKS, RUNS))
    assert "no run flagged: 6 checks on 2 runs passed" in text


def test_a_failing_row_is_the_worst_and_is_listed_and_reruns_keep_the_latest():
    rerun = pd.DataFrame([row("a", "blackbox_beats_whitebox", False, 0.12,
                              "square 0.38 < best white-box pgd 0.50: gradient masking",
                              created_at=T1)])
    long = checks_long(pd.concat([CHECKS, rerun], ignore_index=True), RUNS)
    assert len(long) == 6  # the rerun replaced a's earlier row
    summary = checks_summary(long).set_index("check")
    assert summary.loc["blackbox_beats_whitebox", "failed"] == 1
    assert summary.loc["blackbox_beats_whitebox", "worst"].startswith("erm · small_cnn: square 0.38")
    text = render(long, "markdown")
    assert "1 of 2 runs flagged:" in text
    assert "| erm · small_cnn | blackbox_beats_whitebox | square 0.38 < best white-box pgd 0.50: " \
           "gradient masking |" in text
    with pytest.raises(ValueError, match="table, markdown, csv"):
        render(long, "html")


def test_cli_summarises_the_tiny_grid_and_recompute_replaces_stale_rows(finished, tmp_path, capsys):
    assert main(["checks", str(finished)]) == 0
    out = capsys.readouterr().out
    assert "randomized_outputs" in out and "zero_gradients" in out
    assert "no run flagged" in out  # the tiny grid's models are plain trained CNNs

    board = tmp_path / "tiny"
    shutil.copytree(finished, board)
    results = board / "results"
    run_id = store.read_table(results, "runs")["run_id"].iloc[0]
    before = store.read_cell(results, "checks", run_id)
    stale = pd.DataFrame([row(run_id, "eps_monotone", False, 0.5, "a check from an old version")])
    store.write_cell(results, "checks", run_id,
                     pd.concat([before[before["kind"] == "model"], stale]).to_dict("records"))
    assert main(["checks", str(board), "--format", "csv"]) == 0
    assert "a check from an old version" in capsys.readouterr().out
    assert main(["checks", str(board), "--recompute", "--quiet"]) == 0
    assert "a check from an old version" not in capsys.readouterr().out
    after = store.read_cell(results, "checks", run_id)
    # Model-level rows are kept as stored; result-level rows are computed again, as before.
    keep = ["check", "passed", "detail", "value"]
    for kind in ("model", "result"):
        assert after[after["kind"] == kind][keep].sort_values("check").reset_index(drop=True) \
            .equals(before[before["kind"] == kind][keep].sort_values("check")
                    .reset_index(drop=True)), kind


def test_cli_errors_and_empty_boards(finished, tmp_path, capsys):
    assert main(["checks", str(tmp_path / "nowhere")]) == 2
    assert "no such leaderboard folder" in capsys.readouterr().err
    board = tmp_path / "no-checks"
    board.mkdir()
    spec = yaml.safe_load((finished / "grid.yaml").read_text())
    spec["checks"] = {"enabled": False}
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    assert main(["checks", str(board), "--recompute"]) == 2
    assert "checks are disabled" in capsys.readouterr().err
    assert main(["checks", str(board)]) == 0
    assert "no checks yet" in capsys.readouterr().out
