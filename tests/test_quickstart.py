"""The full quickstart grid (slow): the issue's acceptance claims, checked on real runs,
and its tables against the snapshot taken before the engine was restructured."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from quickstart_snapshot import columns_of, snapshot

from bench.results import store

QUICKSTART = Path(__file__).resolve().parent.parent / "leaderboards" / "quickstart"
SNAPSHOT = Path(__file__).resolve().parent / "fixtures" / "quickstart_snapshot" / "tables.json"
CMD = [sys.executable, "-m", "bench.cli", "run"]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    board = tmp_path_factory.mktemp("qs") / "quickstart"
    shutil.copytree(QUICKSTART, board, ignore=shutil.ignore_patterns("results"))
    first = subprocess.run(CMD + [str(board)], capture_output=True, text=True, timeout=3600)
    assert first.returncode == 0, first.stderr[-3000:]
    return board


@pytest.mark.slow
def test_quickstart_claims(quickstart):
    results = quickstart / "results"
    runs = store.read_table(results, "runs").set_index("method")
    assert (runs["status"] == "ok").all(), runs["error"]
    rob = store.read_table(results, "robustness").merge(
        runs.reset_index()[["run_id", "method"]], on="run_id")
    # the grid's PGD-10 rows; the ε sweep's rows (also attack "pgd") have tests of their own
    pgd = rob[(rob.attack == "pgd") & rob.sweep.isna()].set_index("method")["robust_acc"]
    assert pgd["pgd_at"] > pgd["erm"] + 0.3, pgd
    assert runs.loc["fast_at", "train_flops"] < 0.35 * runs.loc["pgd_at", "train_flops"]
    n_files = len(list(results.rglob("*.parquet")))
    second = subprocess.run(CMD + [str(quickstart), "--quiet"], capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0
    assert "trained 0, evaluated 0, timed 0" in second.stdout
    assert len(list(results.rglob("*.parquet"))) == n_files


@pytest.mark.slow
def test_quickstart_tables_match_snapshot(quickstart):
    """Every table, column by column (timings, timestamps, host and load fields aside),
    equals the quickstart's tables as they were before the engine was restructured
    (tests/quickstart_snapshot.py says what is compared and how to write a new one)."""
    expected = json.loads(SNAPSHOT.read_text())
    results = quickstart / "results"
    got = json.loads(json.dumps(snapshot(lambda t: store.read_table(results, t),
                                         columns_of(expected)), sort_keys=True, default=str))
    # checks added since (uncounted_work, of the sandboxed runs) are new rows, not changes
    known = {r["check"] for r in expected["checks"]}
    got["checks"] = [r for r in got["checks"] if r["check"] in known]
    for table, rows in expected.items():
        assert len(got[table]) == len(rows), table
        for want, have in zip(rows, got[table]):
            assert have == want, (table, {k: (want[k], have.get(k)) for k in want
                                          if have.get(k) != want[k]})
