"""Timings measured under load: which rows are marked, the per-run summary, and how
`perbench checks` shows them. Synthetic tables with known answers (the machine's own load
varies, so nothing here reads it)."""
from __future__ import annotations

import math

import pandas as pd

from bench.views.checks import checks_long, render
from bench.views.timing import load_note, loaded_timings, under_load

RUNS = pd.DataFrame([
    {"run_id": "a", "method": "erm", "arch": "small_cnn", "seed": 0, "status": "ok",
     "threads": 2, "load_avg": 3.1},   # trained beside other work
    {"run_id": "b", "method": "pgd_at", "arch": "small_cnn", "seed": 0, "status": "ok",
     "threads": 2, "load_avg": 2.0},   # at its own thread count: not above it
    {"run_id": "c", "method": "trades", "arch": "small_cnn", "seed": 0, "status": "ok",
     "threads": 2, "load_avg": math.nan},  # written before load_avg was recorded
    {"run_id": "x", "method": "trades", "arch": "small_cnn", "seed": 1, "status": "failed",
     "threads": 2, "load_avg": 9.0},   # failed: not on the board
])
ROBUSTNESS = pd.DataFrame([
    {"run_id": "b", "attack": "pgd", "status": "ok", "load_avg": 2.5},
    {"run_id": "b", "attack": "fgsm", "status": "ok", "load_avg": 1.0},
    {"run_id": "b", "attack": "square", "status": "failed", "load_avg": 7.0},
    {"run_id": "c", "attack": "pgd", "status": "ok", "load_avg": 1.9},
])
LATENCY = pd.DataFrame([
    {"run_id": "c", "hardware": "cpu-1t", "batch_size": 1, "threads": 1, "load_avg": 1.6},
    {"run_id": "c", "hardware": "cpu-1t", "batch_size": 128, "threads": 1, "load_avg": 1.7},
    {"run_id": "c", "hardware": "cpu", "batch_size": 1, "threads": 2, "load_avg": 1.7},
    {"run_id": "a", "hardware": "cuda", "batch_size": 1, "threads": None, "load_avg": None},
])


def test_under_load_is_a_load_above_the_threads():
    assert under_load(RUNS).tolist() == [True, False, False, True]
    assert under_load(LATENCY).tolist() == [True, True, False, False]  # skipped: unknown
    # robustness rows have no threads of their own: the run's are passed in
    threads = ROBUSTNESS["run_id"].map(RUNS.set_index("run_id")["threads"])
    assert under_load(ROBUSTNESS, threads).tolist() == [True, False, True, False]
    assert under_load(pd.DataFrame({"threads": [1]})).tolist() == [False]  # no load_avg column


def test_loaded_timings_per_run():
    marked = loaded_timings(RUNS, ROBUSTNESS, LATENCY).set_index("run_id")
    assert sorted(marked.index) == ["a", "b", "c"]
    assert marked.loc["a", "train"] == "load 3.1 > 2 threads"
    assert marked.loc["a", "attacks"] == "" and marked.loc["a", "latency"] == ""
    assert marked.loc["b", "train"] == ""
    assert marked.loc["b", "attacks"] == "1 of 2 rows"  # the failed Square row is no timing
    assert marked.loc["c", "latency"] == "cpu-1t (load 1.7 > 1 thread; batch 1, 128)"
    assert marked.loc["a", "run"] == "erm · small_cnn"
    calm = RUNS.assign(load_avg=1.0)
    assert loaded_timings(calm).empty and load_note(calm) is None


def test_load_note_counts_what_was_marked():
    assert load_note(RUNS, ROBUSTNESS, LATENCY) == (
        "timings measured under load (1-minute load average above the cell's threads, so they "
        "read high) in 3 of 3 runs: 1 training times, 1 with attack times, 1 with latencies; "
        "`perbench checks` lists them")


def test_checks_render_lists_the_loaded_runs_and_skipped_checks():
    t0 = pd.Timestamp("2026-11-25", tz="UTC")
    checks = pd.DataFrame([
        {"run_id": "a", "check": "zero_gradients", "passed": True, "value": 0.0, "detail": "ok",
         "kind": "model", "created_at": t0},
        {"run_id": "a", "check": "large_eps_zero", "passed": None, "value": None,
         "detail": "skipped: no default radius under L2", "kind": "model", "created_at": t0},
        {"run_id": "b", "check": "large_eps_zero", "passed": None, "value": None,
         "detail": "skipped: no default radius under L2", "kind": "model", "created_at": t0},
    ])
    long = checks_long(checks, RUNS)
    text = render(long, "table", loaded_timings(RUNS, ROBUSTNESS, LATENCY))
    assert "no run flagged: 1 checks on 2 runs passed (2 skipped)" in text
    assert "skipped on 2 runs, e.g. erm · small_cnn: skipped: no default radius under L2" in text
    assert "timings measured under load in 3 runs (the host's 1-minute load average" in text
    assert "load 3.1 > 2 threads" in text and "cpu-1t (load 1.7 > 1 thread; batch 1, 128)" in text
    assert "timings measured under load" not in render(long, "table")
    assert "load 3.1" not in render(long, "csv", loaded_timings(RUNS))
