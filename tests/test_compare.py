"""``perbench compare``: two methods side by side, deltas against the seed-to-seed spread."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bench.views.compare import compare, format_delta


def metrics(**values) -> pd.DataFrame:
    """Per-run metric rows for methods a and b on one (dataset, arch)."""
    rows = []
    for method, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{method}{seed}", "method": method, "dataset": "d",
                         "arch": "n", "seed": seed, "clean_acc": acc,
                         "train_flops": 100.0 if method == "a" else 80.0})
    return pd.DataFrame(rows)


def test_delta_beyond_spread_is_marked_and_within_is_not():
    far = compare(metrics(a=[0.70, 0.71, 0.72], b=[0.80, 0.81, 0.82]), "a", "b").set_index("metric")
    assert far.loc["clean_acc", "delta"] == pytest.approx(0.10)
    assert far.loc["clean_acc", "exceeds_spread"] and far.loc["clean_acc", "b_better"]
    assert far.loc["train_flops", "b_better"]  # fewer FLOPs is better
    near = compare(metrics(a=[0.70, 0.75, 0.80], b=[0.72, 0.77, 0.82]), "a", "b").set_index("metric")
    assert near.loc["clean_acc", "exceeds_spread"] == False  # noqa: E712
    assert format_delta(far.loc["clean_acc"], percent=True) == "81.0 ± 1.0 (+10.0)*"


def test_single_seed_has_no_spread_and_unknown_methods_are_named():
    one = compare(metrics(a=[0.7], b=[0.8]), "a", "b").set_index("metric")
    assert one.loc["clean_acc", "exceeds_spread"] is None
    with pytest.raises(ValueError, match="no finished runs of 'c'.*a, b"):
        compare(metrics(a=[0.7], b=[0.8]), "a", "c")


def test_cli_on_the_fixture_grid(finished):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(finished), "erm",
                           "fast_at"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for needle in ("clean_acc", "robust_pgd", "train_flops", "corruption_acc", "mce"):
        assert needle in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(finished), "erm",
                           "trades"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no finished runs of 'trades'" in proc.stderr
