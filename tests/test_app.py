"""The Streamlit leaderboard page, run headless with streamlit's AppTest."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_leaderboard import run_row, write_results
from test_leaderboard_stats import draw, write_robustness, write_run

from app._data import ENV_VAR, leaderboard_choices, requested_leaderboard, results_stamp
from bench.results import store

PAGE = Path(__file__).resolve().parent.parent / "app" / "Leaderboard.py"


def run_page(monkeypatch, board: Path) -> AppTest:
    monkeypatch.setenv(ENV_VAR, str(board))
    at = AppTest.from_file(PAGE)
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def board(tmp_path) -> Path:
    write_results(tmp_path / "fixture" / "results")
    return tmp_path / "fixture"


def test_page_shows_ranked_table_and_chart(monkeypatch, board):
    at = run_page(monkeypatch, board)
    assert len(at.dataframe) == 2  # the leaderboard, and the provenance table in its expander
    shown = at.dataframe[0].value
    assert set(shown["source"]) == {"built-in"}
    assert list(at.dataframe[1].value.columns) == ["method", "source", "code_version", "config"]
    assert list(shown["method"]) == ["trades", "pgd_at", "erm", "fast_at"]
    assert shown["robust_autoattack"].iloc[0] == pytest.approx(59.0)  # percent for display
    # beside each accuracy its 95% interval, beside the rank the range it allows
    assert shown["robust_autoattack_ci"].iloc[0] == "[53.8, 64.0]"
    assert list(shown["rank_range"])[:3] == ["1–2", "1–2", "3"]
    assert list(shown["tie_group"])[:3] == [1, 1, 2]
    assert any("Ranked by autoattack" in m.value and "no per-point worst case" in m.value
               and "Intervals are 95%" in m.value for m in at.markdown)
    assert any("fast_at" in w.value and "NonFiniteLossError" in w.value for w in at.warning)
    assert [s.label for s in at.sidebar.selectbox] == ["Leaderboard", "Dataset", "Architecture",
                                                       "Hardware"]
    assert "latency_ms_cpu-1t" in shown and "latency_ms_cuda" not in shown
    (chart,) = at.get("vega_lite_chart")
    encoding = json.loads(chart.proto.spec)["encoding"]
    assert encoding["x"]["field"] == "train_flops" and encoding["x"]["scale"]["type"] == "log"
    assert encoding["y"]["field"] == "robust_acc" and encoding["color"]["field"] == "method"
    assert {"method", "arch", "seeds", "clean_acc"} <= {t["field"] for t in encoding["tooltip"]}
    at.sidebar.selectbox(key="hardware").select("cuda").run(timeout=30)
    assert any("cuda latency skipped" in c.value for c in at.caption)


def test_page_ranks_by_the_worst_case_with_intervals(monkeypatch, tmp_path):
    """Per-point results: the worst case over attacks ranks, shown with its interval."""
    results = tmp_path / "points" / "results"
    for method, p in (("strong", 0.8), ("weak", 0.5)):
        run_id = write_run(results, method, 0)
        write_robustness(results, run_id, "pgd", draw(0, p))
        write_robustness(results, run_id, "fgsm", draw(1, p + 0.1))
    at = run_page(monkeypatch, tmp_path / "points")
    shown = at.dataframe[0].value.set_index("method")
    assert list(shown.index) == ["strong", "weak"]
    assert shown["tie_group"].to_dict() == {"strong": 1, "weak": 2}
    lo, hi = (100 * shown.loc["strong", f"robust_worst_{b}"] for b in ("lo", "hi"))
    assert shown.loc["strong", "robust_worst_ci"] == f"[{lo:.1f}, {hi:.1f}]"
    assert any("worst case over attacks (fgsm, pgd)" in m.value for m in at.markdown)


def test_page_on_empty_leaderboard(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    (empty / "results").mkdir(parents=True)
    at = run_page(monkeypatch, empty)
    assert any("No results yet" in i.value for i in at.info)
    assert not at.dataframe


def test_page_without_robustness_results(monkeypatch, tmp_path):
    results = tmp_path / "bare" / "results"
    row = run_row("erm", 0, clean_acc=0.9, train_flops=1e12)
    store.write_cell(results, "runs", row["run_id"], [row])
    at = run_page(monkeypatch, tmp_path / "bare")
    assert len(at.dataframe) == 2  # leaderboard and provenance
    assert any("No robustness results to plot" in i.value for i in at.info)
    assert not at.get("vega_lite_chart")


def test_leaderboard_from_argv_or_env(tmp_path, board):
    argv = ["-q", "--leaderboard", str(board)]
    assert requested_leaderboard(argv, {}) == board.resolve()
    assert requested_leaderboard(["-q"], {ENV_VAR: str(board)}) == board.resolve()
    assert requested_leaderboard([], {}) is None
    assert leaderboard_choices(board)[0] == board


def test_cache_key_follows_results(board):
    results = board / "results"
    before = results_stamp(results)
    row = run_row("erm", 5, clean_acc=0.5)
    store.write_cell(results, "runs", row["run_id"], [row])
    assert results_stamp(results) != before
    path = next((results / "runs").glob("*.parquet"))
    stamp = results_stamp(results)
    os.utime(path, ns=(0, 0))
    assert results_stamp(results) != stamp


def test_page_shows_each_machines_measured_speed(monkeypatch, board):
    """`perbench bench` rows appear under the leaderboard, newest per machine."""
    import pandas as pd

    def bench_row(bench_id: str, day: str, ratio: float) -> dict:
        return {"bench_id": bench_id, "figure": "pgd10_eval", "value": 400.0,
                "reference": 400.0 / ratio, "unit": "points/s", "ratio": ratio,
                "ratio_meaning": "PERBench / plain PGD loop throughput", "target": 1.5,
                "target_met": ratio >= 1.5, "detail": "{}", "hardware": "cpu-2t",
                "device_name": "AMD EPYC", "threads": 2, "host": "vm", "versions": "{}",
                "created_at": pd.Timestamp(day, tz="UTC"), "load_avg": 0.1}

    results = board / "results"
    store.write_cell(results, "speed", "old", [bench_row("old", "2026-01-01", 1.1)])
    store.write_cell(results, "speed", "new", [bench_row("new", "2026-02-01", 2.25)])
    at = run_page(monkeypatch, board)
    speed = at.dataframe[2].value  # after the leaderboard and the provenance table
    assert list(speed["figure"]) == ["pgd10_eval"] and list(speed["ratio"]) == ["2.25"]
    assert speed["machine"].iloc[0] == "vm · AMD EPYC · cpu-2t"
    assert list(speed["target met"]) == ["yes"]
