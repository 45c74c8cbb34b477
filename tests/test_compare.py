"""``perbench compare``: two methods side by side, each with its interval, and the difference
with its interval, p-value and test (the statistics themselves: tests/test_verdicts.py)."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bench.views.compare import compare, format_diff, format_estimate, paper_table
from bench.views.evidence import Evidence


def metrics(**values) -> pd.DataFrame:
    """Per-run metric rows for methods a and b on one (dataset, arch)."""
    rows = []
    for method, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{method}{seed}", "method": method, "dataset": "d",
                         "arch": "n", "seed": seed, "clean_acc": acc,
                         "train_flops": 100.0 if method == "a" else 80.0})
    return pd.DataFrame(rows)


def test_difference_beyond_noise_is_marked_and_within_is_not():
    frame = metrics(a=[0.70, 0.71, 0.72], b=[0.80, 0.81, 0.82])
    sizes = Evidence(sizes={"clean_acc": dict.fromkeys(frame["run_id"], 1000)})
    far = compare(frame, "a", "b", sizes).set_index("metric")
    row = far.loc["clean_acc"]
    assert row["diff"] == pytest.approx(0.10) and row["lo"] > 0.05 and row["p"] < 0.001
    assert row["test"] == "unpaired (no per-point results)" and row["n_points"] == 1000
    assert row["beyond_noise"] and row["b_better"]
    assert far.loc["train_flops", "test"] == "deterministic"
    assert far.loc["train_flops", "b_better"]  # fewer FLOPs is better
    near = metrics(a=[0.70, 0.75, 0.80], b=[0.72, 0.77, 0.82])
    near = compare(near, "a", "b", sizes).set_index("metric")
    assert near.loc["clean_acc", "lo"] < 0 < near.loc["clean_acc", "hi"]
    assert not near.loc["clean_acc", "beyond_noise"]
    text = format_diff(row, percent=True)
    assert text.startswith("+10.0 [+") and text.endswith("(p=0.0002)")
    assert format_estimate(row["b"], row["b_lo"], row["b_hi"], "clean_acc").startswith("81.0 [")
    table = paper_table(far.reset_index())
    assert table.set_index("metric").loc["train_flops", "difference"] == "-20.0% (exact)"
    assert table.set_index("metric").loc["clean_acc", "n"] == "3×1000"


def test_single_seed_has_no_spread_and_unknown_methods_are_named():
    one = compare(metrics(a=[0.7], b=[0.8]), "a", "b").set_index("metric")
    assert one.loc["clean_acc", "diff"] == pytest.approx(0.1)
    assert pd.isna(one.loc["clean_acc", "p"]) and not one.loc["clean_acc", "beyond_noise"]
    with pytest.raises(ValueError, match="no finished runs of 'c'.*a, b"):
        compare(metrics(a=[0.7], b=[0.8]), "a", "c")


def test_cli_on_the_fixture_grid(finished):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(finished), "erm",
                           "fast_at"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for needle in ("clean_acc", "robust_pgd", "train_flops", "corruption_acc", "mce"):
        assert needle in proc.stdout
    pgd = next(line for line in proc.stdout.splitlines() if " robust_pgd " in line)
    # per-point results: paired on seed 0's 100 points, each side as mean [lo, hi]
    assert pgd.split()[-2:] == ["1×100", "paired"] and pgd.count("[") == 3
    csv = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(finished), "erm",
                          "fast_at", "--format", "csv"], capture_output=True, text=True)
    frame = pd.read_csv(pd.io.common.StringIO(csv.stdout)).set_index("metric")
    assert frame.loc["robust_pgd", "test"] == "paired bootstrap"
    # the leaderboard's ranking column, the worst case over fgsm and pgd, is compared too
    worst = frame.loc["robust_worst"]
    assert worst["test"] == "paired bootstrap"
    assert worst["a"] <= min(frame.loc["robust_pgd", "a"], frame.loc["robust_fgsm", "a"])
    assert frame.loc["clean_acc", "test"] == "paired bootstrap"  # the clean bits
    assert frame.loc["corruption_acc", "test"] == "unpaired (no per-point results)"
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(finished), "erm",
                           "trades"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no finished runs of 'trades'" in proc.stderr
