"""Pareto fronts, per-method means and the three-axis view (bench.views.pareto), and the
compare page's pairing and table (bench.views.compare)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.views.columns import lower_is_better
from bench.views.compare import default_pair, paper_table
from bench.views.pareto import frontier, method_means, parallel_coordinates, pareto_mask

UP_UP_DOWN = {"clean_acc": True, "robust_acc": True, "train_flops": False}


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["clean_acc", "robust_acc", "train_flops"])


def test_dominated_point_is_not_marked():
    df = frame([(0.9, 0.5, 1e12), (0.8, 0.4, 2e12), (0.95, 0.1, 1e11)])
    assert pareto_mask(df, UP_UP_DOWN).tolist() == [True, False, True]


def test_direction_matters():
    df = frame([(0.9, 0.5, 1e12), (0.9, 0.5, 2e12)])
    assert pareto_mask(df, UP_UP_DOWN).tolist() == [True, False]
    assert pareto_mask(df, {**UP_UP_DOWN, "train_flops": True}).tolist() == [False, True]


def test_ties_are_both_on_the_front():
    df = frame([(0.9, 0.5, 1e12), (0.9, 0.5, 1e12), (0.8, 0.5, 1e12)])
    assert pareto_mask(df, UP_UP_DOWN).tolist() == [True, True, False]


def test_rows_with_nan_are_not_marked_and_dominate_nothing():
    df = frame([(0.99, np.nan, 1e10), (0.9, 0.5, 1e12), (0.8, 0.4, 2e12)])
    assert pareto_mask(df, UP_UP_DOWN).tolist() == [False, True, False]
    assert not pareto_mask(df.iloc[:0], UP_UP_DOWN).any()


def test_frontier_sorted_along_x():
    df = frame([(0.95, 0.1, 1e11), (0.8, 0.4, 2e12), (0.9, 0.5, 1e12)])
    front = frontier(df, "train_flops", "robust_acc")
    assert front["train_flops"].tolist() == [1e11, 1e12]


def test_lower_is_better_covers_costs():
    assert all(map(lower_is_better, ["train_flops", "infer_flops", "train_seconds",
                                     "latency_ms_cpu-1t", "nonzero_params", "mce"]))
    assert not any(map(lower_is_better, ["clean_acc", "robust_pgd", "corruption_acc"]))


def test_method_means_and_parallel_axes():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "method": ["erm", "erm", "pgd_at"],
                         "dataset": "digits", "arch": "cnn", "seed": [0, 1, 0],
                         "clean_acc": [0.9, 0.8, 0.7], "train_flops": [1.0, 3.0, 10.0],
                         "robust_pgd": [0.0, 0.1, np.nan]})
    means = method_means(runs).set_index("method")
    assert means.loc["erm", "seeds"] == 2 and means.loc["erm", "clean_acc"] == pytest.approx(0.85)
    long = parallel_coordinates(method_means(runs), ["clean_acc", "train_flops"])
    scaled = long.set_index(["method", "axis"])["scaled"]
    assert scaled[("erm", "clean_acc")] == 1 and scaled[("pgd_at", "clean_acc")] == 0
    assert scaled[("erm", "train_flops")] == 1  # cheaper is better: flipped
    assert parallel_coordinates(method_means(runs), ["robust_pgd"])["scaled"].tolist() == [0.5]


def test_default_pair_prefers_base_and_modifier():
    assert default_pair(["erm", "pgd_at", "pgd_at+caper"]) == ("pgd_at", "pgd_at+caper")
    assert default_pair(["pgd_at+caper", "pgd_at+caper+accelat"]) == (
        "pgd_at+caper", "pgd_at+caper+accelat")
    assert default_pair(["erm", "trades"]) == ("erm", "trades")
    assert default_pair(["erm"]) == ("erm", "erm")


def test_paper_table_formats_percent_and_costs():
    rows = pd.DataFrame({
        "metric": ["clean_acc", "train_flops"], "a": [0.9, 1e12], "a_lo": [0.88, 1e12],
        "a_hi": [0.92, 1e12], "a_seeds": [3, 3], "b": [0.92, 2e12], "b_lo": [0.9, 2e12],
        "b_hi": [0.94, 2e12], "b_seeds": [3, 3], "diff": [0.02, 1e12], "lo": [0.01, 1e12],
        "hi": [0.03, 1e12], "p": [0.004, np.nan], "n_seeds": [3, 3], "n_points": [1000, None],
        "test": ["paired bootstrap", "deterministic"], "b_better": [True, False],
        "beyond_noise": [True, True]})
    table = paper_table(rows)
    assert table["a"].tolist() == ["90.0 [88.0, 92.0]", "1.0 TFLOPs"]
    assert table["b"].tolist() == ["92.0 [90.0, 94.0]", "2.0 TFLOPs"]
    assert table["difference"].tolist() == ["+2.0 [+1.0, +3.0] (p=0.004)", "+100.0% (exact)"]
    assert table["n"].tolist() == ["3×1000", "3"]
    assert table["test"].tolist() == ["paired", "exact"]
