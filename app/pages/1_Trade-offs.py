"""Trade-offs: any two metrics against each other with their Pareto front, and clean
accuracy, training FLOPs and robust accuracy at once as parallel coordinates."""
from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; this lets a plain checkout run without install.
if (_REPO := str(Path(__file__).resolve().parents[2])) not in sys.path:
    sys.path.insert(0, _REPO)

import streamlit as st  # noqa: E402

from app._charts import parallel_chart, plottable, tradeoff_scatter  # noqa: E402
from app._data import finished_metrics, select  # noqa: E402
from bench.views.pareto import (  # noqa: E402
    method_means,
    metric_columns,
    parallel_coordinates,
    robust_metric,
)

PER_METHOD, PER_RUN = "one point per method (mean over seeds)", "one point per run"


def default_pair(metrics: list[str]) -> tuple[int, int]:
    """Training FLOPs across, the standard robust accuracy up, where present."""
    x = metrics.index("train_flops") if "train_flops" in metrics else 0
    robust = robust_metric(metrics)
    y = metrics.index(robust) if robust else min(1, len(metrics) - 1)
    return x, y


def main() -> None:
    st.set_page_config(page_title="PERBench trade-offs", layout="wide")
    st.title("Trade-offs")
    sel = select(by_arch=False)  # shape encodes the arch, so every arch is shown
    if sel is None:
        return
    runs = finished_metrics(sel)
    if runs.empty:
        return
    grain = st.radio("Points", [PER_METHOD, PER_RUN], horizontal=True)
    points = method_means(runs) if grain == PER_METHOD else runs.assign(seeds=1)
    metrics = metric_columns(points)
    x_default, y_default = default_pair(metrics)
    left, right = st.columns(2)
    x = left.selectbox("x axis", metrics, index=x_default)
    y = right.selectbox("y axis", metrics, index=y_default)
    shown = plottable(points, [x, y])
    if shown.empty:
        st.info(f"No finished run has both {x} and {y} yet.")
    else:
        if len(shown) < len(points):
            st.info(f"{len(points) - len(shown)} of {len(points)} points lack {x} or {y} "
                    "(not evaluated yet) and are left out.")
        st.altair_chart(tradeoff_scatter(shown, x, y), width="stretch")
        st.caption("Dashed line: the Pareto front of the pair (↑/↓ mark the better direction).")
    st.subheader("Performance, efficiency, robustness")
    robust = robust_metric(metrics)
    if robust is None:
        st.info("No robustness results yet: the three-axis view needs robust accuracy.")
        return
    long = parallel_coordinates(method_means(runs), ["clean_acc", "train_flops", robust])
    if long.empty:
        st.info("No method has clean accuracy, training FLOPs and robust accuracy yet.")
        return
    st.altair_chart(parallel_chart(long), width="stretch")
    st.caption(f"One line per method and arch; each axis scaled to the methods shown, "
               f"training FLOPs flipped so that up is better on all three ({robust}).")


main()
