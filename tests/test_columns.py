"""The column declarations (bench.views.columns), the light leaderboard reader
(bench.results.board) against the validating one, and the import boundaries of the views
and the app."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.grid.spec import load_spec
from bench.results import board
from bench.results.store import TABLES, empty_table
from bench.views.columns import (
    column,
    is_metric,
    is_percent,
    log_scale,
    lower_is_better,
    shown_columns,
)
from bench.views.compare import per_run_metrics
from bench.views.leaderboard import load_tables
from bench.views.render import display_frame

ROOT = Path(__file__).resolve().parent.parent
BOARDS = [ROOT / "leaderboards" / "quickstart", ROOT / "leaderboards" / "fashion-mnist",
          ROOT / "tests" / "fixtures" / "tiny"]


@pytest.fixture
def labelled(tmp_path) -> Path:
    """The tiny grid with every form of a methods entry: a name, {name}, {name, label}."""
    dest = tmp_path / "labelled"
    shutil.copytree(ROOT / "tests" / "fixtures" / "tiny", dest)
    grid = yaml.safe_load((dest / "grid.yaml").read_text())
    grid["methods"] = ["erm", {"name": "fast_at", "label": "fast"},
                       {"name": "fast_at", "label": "fast_1"}, {"name": "pgd_at"},
                       {"name": "trades", "label": None}, {"name": "free_at", "label": ""}]
    (dest / "grid.yaml").write_text(yaml.safe_dump(grid))
    return dest


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.name)
def test_light_reader_agrees_with_load_spec(path):
    spec = load_spec(path)
    assert board.method_labels(path) == [m.display for m in spec.methods]
    assert board.archs(path) == list(spec.archs)
    assert board.has_transfer(path) == (spec.transfer is not None)
    assert board.results_location(path) == board.results_location(path, spec)
    reference = spec.corruptions.reference if spec.corruptions else "erm"
    assert board.mce_reference(board.results_location(path), path) == reference


def test_light_reader_labels_every_entry_form(labelled):
    spec = load_spec(labelled)
    assert board.method_labels(labelled) == [m.display for m in spec.methods]
    assert board.method_labels(labelled) == ["erm", "fast", "fast_1", "pgd_at", "trades",
                                              "free_at"]


def test_light_reader_falls_back_without_a_grid(tmp_path):
    assert board.results_location(tmp_path) == tmp_path / "results"
    assert board.mce_reference(tmp_path / "results", tmp_path) == "erm"
    assert not board.has_transfer(tmp_path)
    with pytest.raises(board.BoardError):
        board.method_labels(tmp_path)
    (tmp_path / "grid.yaml").write_text("methods: [erm, {config: {}}]\n")
    with pytest.raises(board.BoardError):
        board.method_labels(tmp_path)


def test_every_metric_column_is_declared():
    tables = load_tables(ROOT / "leaderboards" / "fashion-mnist" / "results")
    metrics = per_run_metrics(tables)
    ids = {"run_id", "method", "dataset", "arch", "seed", "params"}
    assert all(is_metric(c) for c in metrics.columns if c not in ids)
    assert not any(is_metric(c) for c in ids)


def test_directions_percent_and_log_scale():
    lower = ["train_flops", "infer_flops", "train_seconds", "nonzero_params", "mce",
             "latency_ms_cpu", "latency_ms_cuda-1t"]
    higher = ["clean_acc", "robust_acc", "robust_pgd", "robust_apgd-ce", "corruption_acc"]
    assert all(map(lower_is_better, lower)) and not any(map(lower_is_better, higher))
    assert all(column(m).better == "higher" for m in higher)
    assert all(map(is_percent, [*higher, "mce"]))
    assert not any(map(is_percent, ["train_flops", "params", "latency_ms_cpu"]))
    assert all(map(log_scale, ["train_flops", "infer_flops", "train_seconds", "latency_ms_cpu"]))
    assert not any(map(log_scale, ["clean_acc", "mce", "params"]))
    assert column("robust_pgd_std") is None and column("run_ids") is None
    assert column("robust_pgd").label == "pgd" and column("latency_ms_cpu").header() == "cpu ms"


def test_display_frame_reads_the_declarations():
    frame = pd.DataFrame({
        "rank": pd.array([1, pd.NA], dtype="Int64"), "method": ["a", "b"],
        "dataset": ["d", "d"], "arch": ["x", "y"], "status": ["ok", "partial"],
        "seeds": [2, 1], "failed": [0, 1], "clean_acc": [0.9, 0.8],
        "clean_acc_std": [0.01, np.nan], "robust_acc": [0.5, np.nan],
        "robust_acc_std": [np.nan, np.nan], "robust_pgd": [0.5, np.nan],
        "robust_pgd_std": [np.nan, np.nan], "train_flops": [3.2e12, 1e9],
        "train_seconds": [12.34, np.nan], "infer_flops": [5e6, 5e6],
        "params": pd.array([1_500_000, 1_500_000], dtype="Int64"),
        "nonzero_params": pd.array([1_500_000, 1_500_000], dtype="Int64"),
        "latency_ms_cpu": [1.234, np.nan], "latency_skipped_cpu": [None, "no cpu"],
        "source": ["built-in", "submission 72bcb293ab by A. Tester"], "flags": [None, ""],
    })
    shown = display_frame(frame)
    assert list(shown.columns) == ["#", "method", "arch", "seeds", "clean %", "pgd %",
                                   "train FLOPs", "train s", "infer FLOPs/img", "params",
                                   "cpu ms", "source", "status"]
    assert shown.iloc[0].tolist() == ["1", "a", "x", "2", "90.0 ± 1.0", "50.0", "3.2 TFLOPs",
                                      "12.3", "5.0 MFLOPs", "1.50M", "1.23", "built-in", "ok"]
    assert shown.iloc[1].tolist() == ["", "b", "y", "1", "80.0", "", "1.0 GFLOPs", "",
                                      "5.0 MFLOPs", "1.50M", "skipped",
                                      "sub 72bcb293 (A. Tester)", "1 of 2 failed"]
    names = [c.name for c in shown_columns(frame.assign(pareto=[True, False]))]
    assert names[:3] == ["rank", "method", "pareto"]


def test_empty_metrics_frame_has_only_declared_metrics():
    metrics = per_run_metrics({t: empty_table(t) for t in TABLES})
    assert all(is_metric(c) for c in metrics.columns
               if c not in ("run_id", "method", "dataset", "arch", "seed", "params"))
