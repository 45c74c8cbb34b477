"""Transfer attacks (thesis Algorithm 3): each target's accuracy on examples crafted on
each source, the white-box attack on the diagonal, and the targets that another model's
examples fool more than their own gradients do (see ``bench.views.transfer``)."""
from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; this lets a plain checkout run without install.
if (_REPO := str(Path(__file__).resolve().parents[2])) not in sys.path:
    sys.path.insert(0, _REPO)

import altair as alt  # noqa: E402
import streamlit as st  # noqa: E402

from app._charts import heatmap  # noqa: E402
from app._data import select  # noqa: E402
from bench.views.transfer import MARGIN, transfer_long, transfer_summary  # noqa: E402

VALUES = {"acc": "accuracy on the adversarial examples",
          "robust_acc": "correct on the clean point and its adversarial example"}


def main() -> None:
    st.set_page_config(page_title="PERBench transfer", layout="wide")
    st.title("Transfer attacks")
    sel = select(by_arch=False)  # sources and targets span the dataset's architectures
    if sel is None:
        return
    value = st.radio("Show the target's", list(VALUES), format_func=VALUES.get, horizontal=True,
                     key="transfer_value")
    long = transfer_long(sel.data["transfer"], sel.data["runs"], value, sel.dataset)
    if long.empty:
        runs = sel.data["runs"]
        failed = int(((runs["dataset"] == sel.dataset) & (runs["status"] == "failed")).sum())
        if failed:
            st.warning(f"{failed} run(s) on {sel.dataset} failed and have no transfer results "
                       "(see the Leaderboard page for their errors).")
        st.info(f"No transfer results for {sel.dataset} yet. A grid with a `transfer:` section "
                f"crafts them once its runs are trained: `perbench run {sel.board}`.")
        return
    first = long.iloc[0]
    st.caption(f"Rows: the source model the {first['attack']} examples (ε = {first['eps']:g}, "
               f"{int(long['n_examples'].max())} test points) were crafted on; columns: the "
               "target scored on them. The diagonal is each model's white-box attack.")
    order = sorted(set(long["source"]) | set(long["target"]))
    size = max(320, 26 * len(order))
    st.altair_chart(heatmap(long, "target", "source", value, order=order).properties(
        width=size, height=size), width="content")
    summary = transfer_summary(long, value)
    beaten = summary.loc[summary["transfer_beats_white_box"], "target"].tolist()
    if beaten:
        st.warning("Another model's examples fool these targets more than their own gradients "
                   f"do (by more than {100 * MARGIN:.0f} point), a sign of gradient masking: "
                   + ", ".join(beaten))
    else:
        st.success("No target is fooled more by another model's examples than by its own "
                   "white-box attack.")
    view = summary.copy()
    view[["white_box", "transfer"]] = 100 * view[["white_box", "transfer"]]
    st.dataframe(view, hide_index=True, column_config={
        "white_box": st.column_config.NumberColumn("white-box %", format="%.1f"),
        "strongest_source": "strongest other source",
        "transfer": st.column_config.NumberColumn("its transfer %", format="%.1f"),
        "transfer_beats_white_box": "transfer beats white-box"})


alt.data_transformers.disable_max_rows()
main()
