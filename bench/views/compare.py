"""Two methods side by side, written like the papers' tables: value and (±delta).

``per_run_metrics`` gives one row per finished run with every metric the leaderboard
shows; ``compare`` sets two methods (or a base and the base plus a modifier) against each
other on each (dataset, arch) they share, and says which deltas exceed the seed-to-seed
spread: |Δ| larger than the sum of the two standard deviations, so the ±1 std intervals
of the two methods do not overlap. With one seed there is no spread to compare against.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bench.formats import format_value
from bench.views.columns import is_percent, lower_is_better
from bench.views.leaderboard import (
    KEYS,
    best_row_per_attack,
    corruption_errors,
    run_robustness,
    table_or_empty,
)


def per_run_metrics(tables: Mapping[str, pd.DataFrame], *, norm: str | None = None,
                    eps: float | None = None, mce_reference: str = "erm") -> pd.DataFrame:
    """One row per finished run: clean_acc, robust_<attack> (at one threat model), costs,
    corruption_acc and mce, and single-image latency per hardware profile."""
    runs = table_or_empty(tables, "runs")
    runs = runs[runs["status"] == "ok"].assign(_failed=False)
    cols = ["run_id", *KEYS, "seed", "clean_acc", "train_flops", "train_seconds",
            "infer_flops", "params", "nonzero_params"]
    out = runs[cols].set_index("run_id")
    rob = run_robustness(tables, runs)
    if norm is not None:
        rob = rob[rob["norm"] == norm]
    if eps is not None:
        rob = rob[np.isclose(rob["eps"], eps)]
    best = best_row_per_attack(rob)
    for attack, group in best.groupby("attack"):
        out[f"robust_{attack}"] = group.set_index("run_id")["robust_acc"]
    cor = corruption_errors(table_or_empty(tables, "corruption"), runs, mce_reference)
    if not cor.empty:
        out = out.join(cor.set_index("run_id")[["corruption_acc", "mce"]])
    lat = table_or_empty(tables, "latency")
    lat = lat[lat["latency_ms_p50"].notna()].sort_values("batch_size", kind="stable")
    if "execution" in lat:
        lat = lat[lat["execution"].fillna("dense") == "dense"]
    for hw, group in lat.drop_duplicates(["run_id", "hardware"]).groupby("hardware"):
        out[f"latency_ms_{hw}"] = group.set_index("run_id")["latency_ms_p50"]
    return out.reset_index()


def compare(metrics: pd.DataFrame, method_a: str, method_b: str) -> pd.DataFrame:
    """Rows per (dataset, arch, metric): mean and std of each method, the delta b − a,
    whether b is better, and whether |delta| exceeds the seed-to-seed spread."""
    missing = [m for m in (method_a, method_b) if m not in set(metrics["method"])]
    if missing:
        raise ValueError(f"no finished runs of {', '.join(map(repr, missing))}; methods with "
                         f"results: {', '.join(sorted(metrics['method'].unique()))}")
    value_cols = [c for c in metrics.columns
                  if c not in ("run_id", *KEYS, "seed", "params") and metrics[c].notna().any()]
    rows = []
    a_all, b_all = (metrics[metrics["method"] == m] for m in (method_a, method_b))
    for (dataset, arch), a in a_all.groupby(["dataset", "arch"]):
        b = b_all[(b_all["dataset"] == dataset) & (b_all["arch"] == arch)]
        if b.empty:
            continue
        for col in value_cols:
            va, vb = a[col].dropna().astype(float), b[col].dropna().astype(float)
            if va.empty or vb.empty:
                continue
            delta = vb.mean() - va.mean()
            spread = va.std() + vb.std()  # NaN with a single seed on either side
            rows.append({
                "dataset": dataset, "arch": arch, "metric": col,
                "a": va.mean(), "a_std": va.std(), "a_seeds": len(va),
                "b": vb.mean(), "b_std": vb.std(), "b_seeds": len(vb), "delta": delta,
                "b_better": bool(delta < 0 if lower_is_better(col) else delta > 0)
                if delta != 0 else False,
                "exceeds_spread": bool(abs(delta) > spread) if not np.isnan(spread) else None,
            })
    if not rows:
        raise ValueError(f"{method_a!r} and {method_b!r} share no (dataset, arch) with results")
    return pd.DataFrame(rows)


def format_delta(row: pd.Series, percent: bool) -> str:
    """``72.4 ± 0.8 (+1.3)`` in the papers' style; ``*`` marks a delta beyond the spread."""
    delta = f"{100 * row['delta']:+.1f}" if percent else f"{row['delta']:+.3g}"
    star = "*" if row["exceeds_spread"] else ""
    return f"{format_value(row['b'], row['b_std'], percent)} ({delta}){star}"


def default_pair(methods: list[str]) -> tuple[str, str]:
    """A base and the same base plus a modifier (``pgd_at`` vs ``pgd_at+caper``) where the
    names allow, else the first two methods; a single method is paired with itself."""
    present = set(methods)
    for method in methods:
        parts = method.split("+")
        for cut in range(len(parts) - 1, 0, -1):  # the longest base present first
            base = "+".join(parts[:cut])
            if base in present:
                return base, method
    return methods[0], methods[1 if len(methods) > 1 else 0]


def paper_table(result: pd.DataFrame) -> pd.DataFrame:
    """One (dataset, arch)'s ``compare`` rows as strings: metric, a ``mean ± std``,
    b ``mean ± std (delta)``, with ``delta``, ``b_better`` and ``exceeds_spread`` kept for
    colouring."""
    percent = result["metric"].map(is_percent)
    return pd.DataFrame({
        "metric": result["metric"],
        "a": [format_value(m, s, p) for m, s, p in zip(result["a"], result["a_std"], percent)],
        "b": [format_delta(row, p) for (_, row), p in zip(result.iterrows(), percent)],
        "delta": result["delta"], "b_better": result["b_better"],
        "exceeds_spread": result["exceeds_spread"],
    }).reset_index(drop=True)
