"""PERBench leaderboard page: ranked table and the robustness / training-cost trade-off.

    streamlit run app/Leaderboard.py -- --leaderboard leaderboards/quickstart

or set ``PERBENCH_LEADERBOARD``; without either, the first leaderboard with results.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; this lets a plain checkout run without install.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:  # the script reruns on every interaction
    sys.path.insert(0, _REPO)

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app._data import leaderboard_choices, requested_leaderboard, table_view, tables  # noqa: E402
from bench.leaderboard import format_eps, leaderboard_frame, threat_models  # noqa: E402
from bench.show import failures, skipped_profiles  # noqa: E402


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


def main() -> None:
    st.set_page_config(page_title="PERBench leaderboard", layout="wide")
    st.title("PERBench leaderboard")
    boards = leaderboard_choices(requested_leaderboard(sys.argv[1:], os.environ))
    if not boards:
        st.info("No leaderboard has results yet. Fill one in with "
                "`perbench run leaderboards/quickstart`, then reload.")
        return
    board = st.sidebar.selectbox("Leaderboard", boards, format_func=lambda b: b.name)
    data = tables(board / "results")
    runs = data["runs"]
    if runs.empty:
        st.info(f"No results yet for **{board.name}**. Fill them in with "
                f"`perbench run {board}`, then reload.")
        return
    dataset = st.sidebar.selectbox("Dataset", sorted(runs["dataset"].unique()))
    arch = st.sidebar.selectbox("Architecture",
                                sorted(runs.loc[runs["dataset"] == dataset, "arch"].unique()))
    norm = eps = None
    found = threat_models(data, dataset=dataset, arch=arch)
    if len(found) > 1:  # most common first, so the default matches `perbench show`
        norm, eps = st.sidebar.selectbox("Threat model", found,
                                         format_func=lambda t: f"{t[0]}, eps {format_eps(t[1])}")
    frame, note = leaderboard_frame(data, dataset=dataset, arch=arch, norm=norm, eps=eps)
    st.subheader(f"{board.name}: {dataset}, {arch}")
    st.markdown(note)
    if lines := failures(frame):
        st.warning("Failed runs or evaluations (shown with status, not ranked):\n\n"
                   + "\n".join(f"- {line}" for line in lines))
    view, config, order = table_view(frame)
    st.dataframe(view, column_config=config, column_order=order, hide_index=True)
    for line in skipped_profiles(frame):
        st.caption(line)
    attack = frame["rank_attack"].iloc[0]
    if pd.isna(attack) or frame["robust_acc"].isna().all():
        st.info("No robustness results to plot against training cost yet.")
        return
    st.altair_chart(tradeoff_chart(frame, attack), width="stretch")


main()
