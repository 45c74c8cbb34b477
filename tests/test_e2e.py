"""End to end on the tiny fixture grid: tables, resume, idempotence, faults at fixed points."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import FIXTURE

from bench.grid.spec import results_location
from bench.results import store


@pytest.fixture
def board(tmp_path) -> Path:
    dest = tmp_path / "tiny"
    shutil.copytree(FIXTURE, dest)
    return dest


def perbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def rows(board: Path, table: str):
    """One table of a leaderboard, wherever its grid keeps results (a folder or a URI)."""
    return store.read_table(results_location(board), table)


def test_tables_complete(finished):
    runs = rows(finished, "runs")
    assert sorted(runs["method"]) == ["erm", "fast_at"]
    assert (runs["status"] == "ok").all()
    assert (runs["train_flops"] > 0).all() and (runs["infer_flops"] > 0).all()
    assert (runs["params"] == runs["nonzero_params"]).all()
    for col in ["seed", "host", "device", "versions", "method_config", "threads", "load_avg",
                "allocator"]:
        assert runs[col].notna().all(), col
    fast, erm = (runs.set_index("method").loc[m] for m in ("fast_at", "erm"))
    assert fast.train_flops > erm.train_flops  # the FGSM step is charged
    hist = rows(finished, "history")
    assert len(hist) == 4 and set(hist["epoch"]) == {0, 1}
    rob = rows(finished, "robustness")
    rob = rob[rob["sweep"].isna()]  # the ε sweeps have tests of their own
    assert len(rob) == 4 and (rob["n_examples"] == 100).all()
    assert (rob["robust_acc"] <= rob["clean_acc"]).all()
    lat = rows(finished, "latency")
    assert set(lat["hardware"]) == {"cpu-1t"} and lat["latency_ms_p50"].notna().all()
    assert rob["load_avg"].notna().all() and lat["load_avg"].notna().all()
    for path in (finished / "results").rglob("*.parquet"):
        assert pq.read_metadata(path).metadata[b"schema_version"] == b"1"
    ckpts = list((finished / "results" / "checkpoints").glob("*.pt"))
    assert len(ckpts) == 2


def test_rerun_does_no_work(finished):
    before = {p: p.stat().st_mtime_ns for p in (finished / "results").rglob("*") if p.is_file()}
    proc = perbench("run", str(finished), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "trained 0, evaluated 0, timed 0, failed 0, already done 16 cells" in proc.stdout
    after = {p: p.stat().st_mtime_ns for p in (finished / "results").rglob("*") if p.is_file()}
    assert before == after


def test_adding_an_attack_does_not_retrain(board, finished):
    shutil.copytree(finished / "results", board / "results")
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec["attacks"].append({"name": "mifgsm", "norm": "Linf", "eps": 0.1})
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    proc = perbench("run", str(board), "--quiet")
    assert "trained 0, evaluated 2, timed 0" in proc.stdout, proc.stdout + proc.stderr
    rob = rows(board, "robustness")
    assert len(rob[rob["sweep"].isna()]) == 6


def _identity(frame, cols):
    return sorted(map(tuple, frame[cols].astype(str).values.tolist()))


@pytest.mark.parametrize("fault", ["cell:1", "write:4", "cell:3"])
def test_kill_at_fixed_point_then_resume(board, finished, fault):
    proc = perbench("run", str(board), "--quiet", env={"PERBENCH_FAULT": fault})
    assert proc.returncode == -signal.SIGKILL
    if fault == "cell:3":  # run by run: the first model is fully attacked before the next trains
        runs, rob = rows(board, "runs"), rows(board, "robustness")
        assert list(runs["method"]) == ["erm"]
        assert len(rob) == 2 and set(rob["run_id"]) == set(runs["run_id"])
    proc = perbench("run", str(board), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert_same_tables(board, finished)


def test_killed_mid_training_resumes_from_its_last_epoch(board, finished):
    """kill -9 after the first of two epochs: the rerun trains only the second, from the
    snapshot, and ends with the numbers of a run never stopped (assert_same_tables)."""
    proc = perbench("run", str(board), "--quiet", env={"PERBENCH_FAULT": "epoch:1"})
    assert proc.returncode == -signal.SIGKILL
    snapshots = list((board / "results" / "resume").glob("*.pt"))
    assert len(snapshots) == 1 and not rows(board, "runs").shape[0]
    proc = perbench("run", str(board), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert_same_tables(board, finished)
    runs = rows(board, "runs").set_index("run_id")
    assert runs.loc[snapshots[0].stem, "resumed_after_epochs"] == "[1]"
    assert runs["resumed_after_epochs"].isna().sum() == len(runs) - 1
    assert not list((board / "results" / "resume").glob("*"))  # gone once trained


def assert_same_tables(board: Path, reference: Path) -> None:
    """Every table of ``board`` holds the rows of ``reference``: nothing lost, nothing
    duplicated, no corrupt file, and (same spec, seed and threads) the same values,
    timings aside."""
    for table, cols in [("runs", ["run_id", "train_flops", "clean_acc"]),
                        ("robustness", ["eval_id", "robust_acc"]),
                        ("history", ["run_id", "epoch", "train_loss"]),
                        ("latency", ["eval_id", "batch_size"]),
                        ("corruption", ["eval_id", "corruption", "severity", "acc"]),
                        ("transfer", ["eval_id", "robust_acc"]),
                        ("checks", ["run_id", "check", "passed"])]:
        got, ref = rows(board, table), rows(reference, table)
        assert len(got) == len(ref), table  # nothing lost, nothing duplicated
        # Same spec, seed and threads: training is deterministic, so values match too.
        if table != "latency":
            assert _identity(got, cols) == _identity(ref, cols), table
    for table in store.TABLES:  # no corrupt file is visible
        for path in store.table_files(results_location(board), table):
            with store.open_read(path) as f:
                pq.read_table(f)


def test_failed_cell_recorded_once_and_grid_goes_on(board):
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec["methods"] = [{"name": "erm", "config": {"lr": 1e30}}, "fast_at"]  # erm diverges
    spec["hardware"] = []
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    proc = perbench("run", str(board), "--quiet")
    assert proc.returncode == 0
    assert "FAILED erm" in proc.stdout and "NonFiniteLossError" in proc.stdout
    runs = rows(board, "runs").set_index("method")
    assert runs.loc["erm", "status"] == "failed" and "loss is" in runs.loc["erm", "error"]
    assert runs.loc["fast_at", "status"] == "ok"
    proc = perbench("run", str(board), "--quiet")
    # A deterministic failure is not retried forever (fast_at: run, 2 attacks, sweep,
    # corruptions, self-transfer; erm: the failed run) ...
    assert "trained 0, evaluated 0, timed 0, failed 0, already done 7" in proc.stdout
    first = rows(board, "runs").set_index("method").loc["erm", "created_at"]
    # ... unless the user asks: the cell runs again (and fails again, with its reason).
    proc = perbench("run", str(board), "--quiet", "--retry-failed")
    assert "failed 1" in proc.stdout and "FAILED erm" in proc.stdout
    again = rows(board, "runs").set_index("method")
    assert again.loc["erm", "created_at"] != first and again.loc["fast_at", "status"] == "ok"


def test_show_formats(finished):
    for fmt in ["table", "csv", "json", "markdown"]:
        proc = perbench("show", str(finished), "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert "fast_at" in proc.stdout and "erm" in proc.stdout
