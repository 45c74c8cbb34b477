"""Two methods side by side: each one's mean with its 95% interval, and the difference with
its interval, p-value and test (bench.views.compare); differences beyond noise in bold,
green where the second method is better, red where worse."""
from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; this lets a plain checkout run without install.
if (_REPO := str(Path(__file__).resolve().parents[2])) not in sys.path:
    sys.path.insert(0, _REPO)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app._data import finished_metrics, select  # noqa: E402
from bench.views.compare import compare, default_pair, paper_table  # noqa: E402
from bench.views.evidence import metric_evidence  # noqa: E402

BETTER, WORSE = "color: #1a7f37", "color: #cf222e"


def styled(table: pd.DataFrame, a: str, b: str):
    """Green/red text for better/worse; bold on a tinted cell where the difference is beyond
    noise (its interval excludes 0 and p < 0.05)."""
    def colour(row: pd.Series) -> pd.Series:
        style = BETTER if row["b_better"] else WORSE if row["diff"] != 0 else ""
        if row["beyond_noise"]:
            style += "; font-weight: bold; background-color: rgba(128, 128, 128, 0.18)"
        return pd.Series({"difference": style}, index=row.index).fillna("")

    return (table.style.apply(colour, axis=1)
            .hide(["diff", "b_better", "beyond_noise"], axis="columns")
            .relabel_index(["metric", a, b, f"{b} − {a}", "n", "test"], axis="columns"))


def main() -> None:
    st.set_page_config(page_title="PERBench compare", layout="wide")
    st.title("Compare two methods")
    sel = select(by_arch=False)  # one table per (dataset, arch) the two share
    if sel is None:
        return
    metrics = finished_metrics(sel)
    if metrics.empty:
        return
    methods = sorted(metrics["method"].unique())
    if len(methods) < 2:
        st.info(f"Only {methods[0]} has finished runs: nothing to compare it with yet.")
        return
    first, second = default_pair(methods)
    left, right = st.columns(2)
    a = left.selectbox("Method A", methods, index=methods.index(first))
    b = right.selectbox("Method B", methods, index=methods.index(second))
    try:
        result = compare(metrics, a, b, metric_evidence(sel.data, norm=sel.norm, eps=sel.eps))
    except ValueError as exc:
        st.warning(str(exc))
        return
    for (dataset, arch), rows in result.groupby(["dataset", "arch"]):
        st.subheader(f"{dataset}, {arch}")
        st.dataframe(styled(paper_table(rows), a, b), hide_index=True)
    st.caption("Mean [95% interval] over seeds (and points); B − A with its 95% interval and "
               "two-sided bootstrap p, not corrected for the number of metrics (accuracies in "
               "points, costs relative to A). Bold: beyond noise (the interval excludes 0 and "
               "p < 0.05). Green: B better, red: B worse (lower is better for costs and mCE). "
               "n: seeds×points per seed. Test: paired (same seeds and points), unpaired (no "
               "per-point results: from counts), seeds (bootstrap over seeds), exact "
               "(deterministic FLOPs and parameter counts).")


main()
