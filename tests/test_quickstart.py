"""The full quickstart grid (slow): the issue's acceptance claims, checked on real runs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import store

QUICKSTART = Path(__file__).resolve().parent.parent / "leaderboards" / "quickstart"


@pytest.mark.slow
def test_quickstart_claims(tmp_path):
    board = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, board, ignore=shutil.ignore_patterns("results"))
    cmd = [sys.executable, "-m", "bench.cli", "run", str(board)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    results = board / "results"
    runs = store.read_table(results, "runs").set_index("method")
    assert (runs["status"] == "ok").all(), runs["error"]
    rob = store.read_table(results, "robustness").merge(
        runs.reset_index()[["run_id", "method"]], on="run_id")
    # the grid's PGD-10 rows; the ε sweep's rows (also attack "pgd") have tests of their own
    pgd = rob[(rob.attack == "pgd") & rob.sweep.isna()].set_index("method")["robust_acc"]
    assert pgd["pgd_at"] > pgd["erm"] + 0.3, pgd
    assert runs.loc["fast_at", "train_flops"] < 0.35 * runs.loc["pgd_at", "train_flops"]
    n_files = len(list(results.rglob("*.parquet")))
    second = subprocess.run(cmd + ["--quiet"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0
    assert "trained 0, evaluated 0, timed 0" in second.stdout
    assert len(list(results.rglob("*.parquet"))) == n_files
