"""Parallel executors and faults: `--workers N` gives the sequential executor's tables with
a worker killed mid-training or mid-write, or the driver killed between cells; concurrent
writers into one results folder lose nothing. Faults are injected at fixed points here
(`bench.faults`); the random-point trials are in the slow suite."""
from __future__ import annotations

import multiprocessing as mp
import random
import shutil
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import FIXTURE
from test_e2e import assert_same_tables, perbench, rows

from bench.results import store

# The tiny grid without its slowest axes: the fault trials run it several times.
SMALL = {"corruptions": None, "eps_sweeps": [], "transfer": None,
         "checks": {"enabled": False}}


def small_board(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest)
    spec = yaml.safe_load((dest / "grid.yaml").read_text())
    spec.update(SMALL)
    (dest / "grid.yaml").write_text(yaml.safe_dump(spec))
    return dest


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    """The small grid run by the sequential executor: the reference tables."""
    board = small_board(tmp_path_factory.mktemp("seq") / "small")
    proc = perbench("run", str(board), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return board


@pytest.fixture
def board(tmp_path) -> Path:
    return small_board(tmp_path / "small")


@pytest.mark.parametrize("fault", ["epoch:1", "write:3"])
def test_a_killed_worker_is_retried_and_the_grid_completes(board, sequential, tmp_path, fault):
    """kill -9 of a worker mid-training (after its first epoch) or mid-write (a file fully
    written to its temp name, not yet renamed): the task runs again, the tables match."""
    marker = tmp_path / "fired"
    proc = perbench("run", str(board), "--workers", "2", "--quiet",
                    env={"PERBENCH_FAULT": fault, "PERBENCH_FAULT_ONCE": str(marker)})
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()  # the kill happened
    assert "failed 0" in proc.stdout
    assert_same_tables(board, sequential)  # every visible file reads; nothing lost or doubled
    # a kill mid-write leaves at most a hidden temp file, which no reader lists
    assert all(p.name.startswith(".") for p in (board / "results").rglob("*.tmp"))


def test_stale_partial_files_are_swept(tmp_path):
    import os
    import time

    old, fresh = tmp_path / "runs" / ".a.parquet.x.tmp", tmp_path / "runs" / ".b.parquet.y.tmp"
    old.parent.mkdir()
    old.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.sweep_partial(tmp_path) == [old]
    assert fresh.exists() and not old.exists()  # a live writer's file is left alone


def test_a_killed_driver_resumes_from_finished_cells(board, sequential):
    proc = perbench("run", str(board), "--workers", "2", "--quiet",
                    env={"PERBENCH_FAULT": "driver:3"})
    assert proc.returncode == -signal.SIGKILL
    finished_before = len(rows(board, "robustness")) + len(rows(board, "runs"))
    assert finished_before >= 3  # what the driver had collected is on disk
    proc = perbench("run", str(board), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert_same_tables(board, sequential)


def test_workers_must_be_positive(board):
    proc = perbench("run", str(board), "--workers", "0")
    assert proc.returncode == 2 and "--workers must be at least 1" in proc.stderr


# -- concurrent writers ------------------------------------------------------------------

def _writer(results: str, worker: int, shared: int, own: int) -> None:
    """Write ``shared`` cells every writer writes (same keys, as retried cells do) and
    ``own`` cells of this writer only."""
    import pandas as pd

    for i in range(shared + own):
        key = f"shared-{i}" if i < shared else f"w{worker}-{i}"
        row = {"run_id": key, "eval_id": key, "attack": "pgd", "norm": "Linf", "eps": 0.1,
               "n_examples": 10, "robust_acc": 0.5, "status": "ok",
               "created_at": pd.Timestamp.now(tz="UTC")}
        store.write_cell(Path(results), "robustness", key, [row])


def test_concurrent_writers_lose_nothing(tmp_path):
    results = tmp_path / "results"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(results), w, 40, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    table = store.read_table(results, "robustness")
    assert len(table) == 40 + 4 * 25 and table["run_id"].is_unique
    assert not list(results.rglob(".*.tmp"))
    for path in results.rglob("*.parquet"):
        pq.read_table(path)


# -- results on an fsspec filesystem -----------------------------------------------------

def uri_board(dest: Path, uri: str) -> Path:
    board = small_board(dest)
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec["results"] = uri
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    return board


def test_workers_write_results_to_a_filesystem_uri(tmp_path, sequential):
    """``results: file:///…`` goes through the fsspec path (temp object, then move), from
    two worker processes, one of them killed mid-write: the same tables as the sequential
    run in a local folder, nothing in the board's own folder, and show reads the URI."""
    shared = tmp_path / "shared-storage" / "small"
    board = uri_board(tmp_path / "small", f"file://{shared}")
    marker = tmp_path / "fired"
    proc = perbench("run", str(board), "--workers", "2", "--quiet",
                    env={"PERBENCH_FAULT": "write:3", "PERBENCH_FAULT_ONCE": str(marker)})
    assert proc.returncode == 0, proc.stderr
    assert marker.exists() and "failed 0" in proc.stdout
    assert not (board / "results").exists()
    assert len(list((shared / "checkpoints").glob("*.pt"))) == 2
    assert not list((shared / "resume").glob("*"))  # per-epoch snapshots: gone when done
    assert_same_tables(board, sequential)
    shown = perbench("show", str(board), "--format", "csv")
    assert shown.returncode == 0, shown.stderr
    import io

    import pandas as pd

    assert sorted(pd.read_csv(io.StringIO(shown.stdout))["method"]) == ["erm", "fast_at"]


def test_an_in_memory_filesystem_holds_a_whole_grid(tmp_path, sequential):
    """``memory://`` (fsspec's in-process store, standing in for an object store): every
    table and checkpoint goes through fsspec; a rerun finds every cell done."""
    import fsspec

    from bench.execute.sequential import run_local
    from bench.grid.spec import load_spec, results_location

    uri = f"memory://perbench-test/{tmp_path.name}/results"
    board = uri_board(tmp_path / "small", uri)
    spec = load_spec(board / "grid.yaml")
    assert results_location(board, spec) == uri
    try:
        report = run_local(spec, results_location(board, spec), show_progress=False)
        assert report.failed == [] and report.trained == 2
        root = uri.removeprefix("memory://")
        assert fsspec.filesystem("memory").glob(f"{root}/checkpoints/*.pt")
        assert not fsspec.filesystem("memory").glob(f"{root}/resume/*")  # removed when done
        assert_same_tables(board, sequential)
        again = run_local(spec, uri, show_progress=False)
        assert again.did_work == 0 and again.skipped == report.did_work
    finally:
        fsspec.filesystem("memory").rm(uri.removeprefix("memory://"), recursive=True)


def test_a_write_killed_on_a_uri_leaves_only_a_hidden_temp_object(monkeypatch):
    import fsspec

    uri = "memory://perbench-test/killed/results"
    row = {"run_id": "k", "eval_id": "k", "attack": "pgd", "norm": "Linf", "eps": 0.1,
           "n_examples": 10, "robust_acc": 0.5, "status": "ok"}

    def die(point: str) -> None:
        raise KeyboardInterrupt  # as far as the writer is concerned, the process ends here

    monkeypatch.setattr(store, "fault_point", die)
    fs = fsspec.filesystem("memory")
    try:
        with pytest.raises(KeyboardInterrupt):
            store.write_cell(uri, "robustness", "k", [row])
        assert not store.has_cell(uri, "robustness", "k")
        assert store.table_files(uri, "robustness") == []
        monkeypatch.undo()
        store.write_cell(uri, "robustness", "k", [row])
        assert store.read_table(uri, "robustness")["run_id"].tolist() == ["k"]
        # a foreign file beside it is reported with its path and skipped
        fs.pipe("/perbench-test/killed/results/robustness/junk.parquet", b"not parquet")
        with pytest.warns(UserWarning, match="junk.parquet"):
            assert len(store.read_table(uri, "robustness")) == 1
    finally:
        fs.rm("/perbench-test/killed", recursive=True)


def test_stale_temp_objects_on_a_uri_are_swept(tmp_path):
    import os
    import time

    runs = tmp_path / "runs"
    runs.mkdir()
    old, fresh = runs / ".a.parquet.x.tmp", runs / ".b.parquet.y.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    removed = store.sweep_partial(f"file://{tmp_path}")
    assert [str(r).removeprefix("file://") for r in removed] == [str(old)]
    assert fresh.exists() and not old.exists()


def test_a_filesystem_fsspec_cannot_open_is_a_clear_error(board):
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec["results"] = "nosuchfs://bucket/board"
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    proc = perbench("run", str(board), "--quiet")
    assert proc.returncode == 2
    assert "results" in proc.stderr and "fsspec cannot open nosuchfs://" in proc.stderr


# -- random points: slow suite ----------------------------------------------------------

@pytest.mark.slow
def test_random_kills_never_lose_or_corrupt(tmp_path, sequential):
    """20 trials: the driver (sequential or --workers 2) killed at a random cell, write or
    epoch; then resumed. Counts corrupt files, duplicate rows and lost cells."""
    rng = random.Random(0)
    corrupt = duplicates = lost = 0
    for trial in range(20):
        board = small_board(tmp_path / f"t{trial}")
        point = rng.choice(["cell", "write", "epoch", "driver"])
        workers = ["--workers", "2"] if point == "driver" or rng.random() < 0.5 else []
        fault = f"{point}:{rng.randint(1, 4)}"  # every point is reached at least 4 times
        perbench("run", str(board), "--quiet", *workers, env={"PERBENCH_FAULT": fault,
                 "PERBENCH_FAULT_ONCE": str(tmp_path / f"fired{trial}")})
        proc = perbench("run", str(board), "--quiet", *workers)
        assert proc.returncode == 0, proc.stderr
        for path in (board / "results").rglob("*.parquet"):
            try:
                pq.read_table(path)
            except Exception:  # noqa: BLE001
                corrupt += 1
        for table, key in [("runs", "run_id"), ("robustness", "eval_id"), ("latency", "eval_id")]:
            got, ref = rows(board, table), rows(sequential, table)
            duplicates += len(got) - len(got.drop_duplicates([key, *(["batch_size"]
                                                              if table == "latency" else [])]))
            lost += len(set(ref[key]) - set(got[key]))
    fired = sum((tmp_path / f"fired{t}").exists() for t in range(20))
    print(f"fault trials: 20, kills that fired: {fired}, corrupt files: {corrupt}, "
          f"duplicate rows: {duplicates}, lost cells: {lost}")
    assert fired >= 15  # the trials must actually kill something
    assert (corrupt, duplicates, lost) == (0, 0, 0)


def test_runs_say_where_the_platform_is_nondeterministic(finished):
    import torch

    from bench.work.train import nondeterminism

    assert rows(finished, "runs")["nondeterminism"].isna().all()  # CPU: repeatable
    assert nondeterminism(torch.device("cpu")) is None
    assert "atomic adds" in nondeterminism(torch.device("cuda"))
    torch.use_deterministic_algorithms(True)
    try:
        assert nondeterminism(torch.device("cuda")) is None
    finally:
        torch.use_deterministic_algorithms(False)
