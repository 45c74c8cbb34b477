"""`--executor ray` on real local Ray clusters: the same tables as the sequential executor,
a killed worker retried, and latency tasks only where a node declares the profile's
resource. Marked `ray` (`tox -e ray`): starting Ray costs seconds per cluster."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_e2e import assert_same_tables, rows
from test_parallel import small_board, uri_board

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture
def ray_local(monkeypatch, tmp_path):
    """``ray.init`` with 2 CPUs and the cpu-1t profile's resource; the fault variables are
    set before it starts, so its workers inherit them."""
    started = []

    def start(env: dict | None = None, **resources) -> None:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        ray.init(num_cpus=2, resources=resources or {"hw:cpu-1t": 1}, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
        started.append(True)

    yield start
    if started:
        ray.shutdown()


def run_ray(board: Path, **kwargs):
    from bench.execute.ray_cluster import run_ray
    from bench.grid.spec import load_spec, results_location

    spec = load_spec(board / "grid.yaml")
    return run_ray(spec, results_location(board, spec), show_progress=False, **kwargs)


def test_ray_gives_the_sequential_tables_despite_a_killed_worker(ray_local, tmp_path):
    from test_e2e import perbench

    reference = small_board(tmp_path / "seq")
    assert perbench("run", str(reference), "--quiet").returncode == 0
    # The workers write to shared storage named by a URI (fsspec), as on a cluster.
    board = uri_board(tmp_path / "ray", f"file://{tmp_path}/shared-storage")
    marker = tmp_path / "fired"
    ray_local({"PERBENCH_FAULT": "epoch:1", "PERBENCH_FAULT_ONCE": str(marker)})
    report = run_ray(board)
    assert marker.exists()  # a worker was killed mid-training, and Ray ran the task again
    assert (report.trained, report.failed) == (2, [])
    assert_same_tables(board, reference)
    assert rows(board, "latency")["latency_ms_p50"].notna().all()
    assert not (board / "results").exists() and (tmp_path / "shared-storage" / "runs").is_dir()


def test_latency_runs_only_where_the_resource_is(tmp_path):
    """Two nodes: only the second declares hw:cpu-1t; nobody declares hw:cpu."""
    import yaml
    from ray.cluster_utils import Cluster

    board = small_board(tmp_path / "two")
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec.update({"methods": ["erm"], "attacks": [], "hardware": ["cpu-1t", "cpu"]})
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={"hw:cpu-1t": 1})
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        report = run_ray(board)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert report.failed == []
    lat = rows(board, "latency").set_index("hardware")
    assert lat.loc["cpu-1t", "latency_ms_p50"].notna().all()
    assert lat.loc["cpu", "latency_ms_p50"].isna().all()
    assert (lat.loc["cpu", "skipped_reason"].str.contains("declares resource hw:cpu")).all()


@pytest.mark.slow
def test_ray_runs_the_quickstart_into_the_local_executors_tables(ray_local, tmp_path):
    """The issue's equivalence on the quickstart itself (slow: two full quickstarts, ~8 min
    on 2 cores): a local Ray with 2 CPUs and both latency profiles' resources."""
    import shutil

    from test_e2e import perbench

    source = Path(__file__).resolve().parent.parent / "leaderboards" / "quickstart"
    local, board = tmp_path / "local" / "quickstart", tmp_path / "ray" / "quickstart"
    for dest in (local, board):
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("results"))
    assert perbench("run", str(local), "--quiet").returncode == 0
    ray_local(**{"hw:cpu-1t": 1, "hw:cpu": 1})
    report = run_ray(board)
    assert report.failed == [] and report.trained == 5
    assert_same_tables(board, local)
