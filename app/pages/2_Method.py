"""One method in depth: robust accuracy per attack, robustness against ε, training curves,
latency per hardware profile, corruptions, what the method changed, and its checks."""
from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; this lets a plain checkout run without install.
if (_REPO := str(Path(__file__).resolve().parents[2])) not in sys.path:
    sys.path.insert(0, _REPO)

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app._charts import bar_chart, curves_chart, heatmap, radar_chart, seed_lines  # noqa: E402
from app._data import Selection, finished_metrics, select  # noqa: E402
from bench.views import method as mv  # noqa: E402


def section(title: str, frame: pd.DataFrame, chart, missing: str | None = None, *,
            width: str = "stretch") -> None:
    """A subheader and ``chart(frame)``; when ``frame`` is empty, ``missing`` as a note, or
    no section at all for results a grid may not ask for (``missing=None``)."""
    if frame.empty and missing is None:
        return
    st.subheader(title)
    if frame.empty:
        st.info(missing)
    else:
        st.altair_chart(chart(frame), width=width)


def show_method(sel: Selection, method: str, runs: pd.DataFrame, metrics: pd.DataFrame) -> None:
    """Every section of one method's finished ``runs``."""
    data = sel.data
    section("Robust accuracy per attack", mv.attack_profile(metrics), radar_chart,
            "No robustness evaluations of this method yet.", width="content")  # stays round
    section("Robust accuracy against ε", mv.sweep_rows(data["robustness"], runs),
            lambda f: seed_lines(f, "eps", "robust_acc",
                                 dash="sweep" if f["sweep"].nunique() > 1 else None),
            "No ε sweep for this method.")
    section("Training curves", mv.history_long(data["history"], runs), curves_chart,
            "No training history recorded.")
    latency, skipped = mv.latency_profile(data["latency"], runs)
    section("Latency per hardware profile", latency,
            lambda f: bar_chart(f, "hardware", "latency_ms_p50", title="p50 ms, batch 1"),
            "No latency measured.")
    for line in skipped:
        st.caption(line)
    section("Corruption accuracy", mv.corruption_grid(data["corruption"], runs),
            lambda f: heatmap(f, "severity", "corruption", "acc"))
    section("Removed training samples per class",
            mv.removed_per_class(data["removed_samples"], runs),
            lambda f: bar_chart(f, "label", "removed", title="samples removed", offset="seed"))
    section("Weights left per layer", mv.layer_density(data["layer_sparsity"], runs),
            lambda f: bar_chart(f, "layer", "density", title="nonzero / params", percent=True))
    st.subheader("Reliability checks")
    checks = mv.check_rows(data["checks"], runs)
    if checks.empty:
        st.info("No reliability checks recorded.")
        return
    failing = sorted(set(checks.loc[checks["passed"] == False, "check"]))  # noqa: E712
    if failing:
        st.warning(f"{method} failed reliability checks: {', '.join(failing)}.")
    st.dataframe(checks, hide_index=True)


def main() -> None:
    st.set_page_config(page_title="PERBench method", layout="wide")
    st.title("Method")
    sel = select()
    if sel is None:
        return
    runs = sel.data["runs"]
    runs = runs[(runs["dataset"] == sel.dataset) & (runs["arch"] == sel.arch)]
    method = st.selectbox("Method", sorted(runs["method"].unique()), key="method")
    runs = runs[runs["method"] == method]
    failed = runs[runs["status"] == "failed"]
    if len(failed):
        st.warning("\n".join(f"- seed {s} failed: {str(e).strip().splitlines()[0] if e else '?'}"
                             for s, e in zip(failed["seed"], failed["error"])))
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        st.info(f"{method} has no finished run on {sel.dataset}, {sel.arch}.")
        return
    metrics = finished_metrics(sel)
    show_method(sel, method, ok, metrics[metrics["method"] == method])


alt.data_transformers.disable_max_rows()  # history of long runs exceeds altair's 5,000 rows
main()
