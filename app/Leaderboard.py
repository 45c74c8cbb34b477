"""PERBench leaderboard page: ranked table (95% intervals, rank ranges and tie groups,
Pareto marks, flags, downloads) and the robustness / training-cost trade-off.

    streamlit run app/Leaderboard.py -- --leaderboard leaderboards/quickstart

or set ``PERBENCH_LEADERBOARD``; without either, the first leaderboard with results.
"""
from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; this lets a plain checkout run without install.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:  # the script reruns on every interaction
    sys.path.insert(0, _REPO)

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app._data import select, table_view  # noqa: E402
from bench.views.columns import higher_is_better  # noqa: E402
from bench.views.leaderboard import (  # noqa: E402
    failures,
    leaderboard_frame,
    skipped_profiles,
    varying_counts,
)
from bench.views.pareto import pareto_mask  # noqa: E402
from bench.views.speed import latest_speed  # noqa: E402


def tradeoff_chart(frame: pd.DataFrame, attack: str) -> alt.Chart:
    """Robust accuracy against training FLOPs (log): up and to the left is better."""
    points = frame.dropna(subset=["robust_acc", "train_flops"])
    points = points[points["train_flops"] > 0][
        ["method", "arch", "seeds", "clean_acc", "robust_acc", "train_flops"]]
    return alt.Chart(points).mark_circle(size=120).encode(
        x=alt.X("train_flops:Q", scale=alt.Scale(type="log"), title="training FLOPs (log)",
                axis=alt.Axis(format="~s")),
        y=alt.Y("robust_acc:Q", title=f"robust accuracy ({attack})", axis=alt.Axis(format="%")),
        color=alt.Color("method:N", title="method"),
        tooltip=[alt.Tooltip("method:N"), alt.Tooltip("arch:N"), alt.Tooltip("seeds:Q"),
                 alt.Tooltip("clean_acc:Q", title="clean acc", format=".1%"),
                 alt.Tooltip("robust_acc:Q", title=f"{attack} acc", format=".1%"),
                 alt.Tooltip("train_flops:Q", title="training FLOPs", format=".3~s")],
    )


def pareto_objectives(frame: pd.DataFrame) -> dict[str, bool]:
    """Clean and robust accuracy up, training FLOPs and the chosen profile's latency down;
    an objective nobody has a value for (no latency measured yet) is left out."""
    wanted = ["clean_acc", "robust_acc", "train_flops",
              *(c for c in frame.columns if c.startswith("latency_ms_"))]
    return {c: higher_is_better(c) for c in wanted if c in frame and frame[c].notna().any()}


def downloads(frame: pd.DataFrame, name: str) -> None:
    """CSV and parquet of the rows shown, at full precision."""
    left, right = st.columns(2)
    left.download_button("Download CSV", frame.to_csv(index=False), f"{name}.csv", "text/csv")
    right.download_button("Download parquet", frame.to_parquet(index=False), f"{name}.parquet",
                          "application/vnd.apache.parquet")


def main() -> None:
    st.set_page_config(page_title="PERBench leaderboard", layout="wide")
    st.title("PERBench leaderboard")
    sel = select()
    if sel is None:
        return
    frame, note = leaderboard_frame(sel.data, dataset=sel.dataset, arch=sel.arch, norm=sel.norm,
                                    eps=sel.eps, hardware=sel.hardware,
                                    mce_reference=sel.mce_reference)
    objectives = pareto_objectives(frame)
    frame["pareto"] = pareto_mask(frame, objectives)
    st.subheader(f"{sel.board.name}: {sel.dataset}, {sel.arch}")
    st.markdown(note)
    if lines := failures(frame):
        st.warning("Failed runs or evaluations (shown with status, not ranked):\n\n"
                   + "\n".join(f"- {line}" for line in lines))
    query = st.text_input("Search methods", placeholder="e.g. caper")
    shown = frame[frame["method"].str.contains(query, case=False, regex=False)] if query else frame
    if shown.empty:
        st.info(f"No method matches {query!r}.")
        return
    view, config, order = table_view(shown)
    st.dataframe(view, column_config=config, column_order=order, hide_index=True)
    if objectives:
        st.caption("★ Pareto-optimal over " + ", ".join(objectives) + ".")
    for line in skipped_profiles(shown):
        st.caption(line)
    if varying := varying_counts(shown):
        st.caption("Exact counts that differ across seeds (the table shows their mean): "
                   + "; ".join(varying) + ".")
    with st.expander("Provenance: source, code version and config of every row"):
        st.dataframe(shown[["method", "source", "code_version", "config"]], hide_index=True,
                     column_config={"code_version": "code"})
    speed = latest_speed(sel.data.get("speed", pd.DataFrame()))
    if not speed.empty:
        with st.expander("Harness speed on each machine (perbench bench: PERBench vs plain "
                         "PyTorch in the same run)"):
            st.dataframe(speed, hide_index=True)
    downloads(shown, f"{sel.board.name}-{sel.dataset}-{sel.arch}")
    attack = frame["rank_attack"].iloc[0]
    if pd.isna(attack) or frame["robust_acc"].isna().all():
        st.info("No robustness results to plot against training cost yet.")
        return
    st.altair_chart(tradeoff_chart(frame, attack), width="stretch")


main()
