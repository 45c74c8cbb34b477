"""The source papers' claims (the leaderboard's ``claims.yaml``) against its own numbers:
one line per claim and metric, verdicts coloured (see ``bench.views.claims`` for the rules)."""
from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts only app/ on sys.path; this lets a plain checkout run without install.
if (_REPO := str(Path(__file__).resolve().parents[2])) not in sys.path:
    sys.path.insert(0, _REPO)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app._data import finished_metrics, select  # noqa: E402
from bench.results import board as board_file  # noqa: E402
from bench.views.claims import check_names, evaluate, formatted, load_claims  # noqa: E402
from bench.views.evidence import metric_evidence  # noqa: E402
from bench.views.mechanism import not_acted_by_label  # noqa: E402

COLOURS = {"supported": "#1a7f37", "contradicted": "#cf222e", "not supported": "#cf222e"}


def grid_names(board: Path, runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The grid's method labels and archs, or (no readable grid.yaml) those with results."""
    try:
        return board_file.method_labels(board), board_file.archs(board)
    except board_file.BoardError:
        return sorted(runs["method"].unique()), sorted(runs["arch"].unique())


def styled(table: pd.DataFrame):
    def colour(value: str) -> str:
        return f"color: {COLOURS[value]}; font-weight: bold" if value in COLOURS else ""

    return table.style.map(colour, subset=["verdict", "claim verdict"])


def main() -> None:
    st.set_page_config(page_title="PERBench claims", layout="wide")
    st.title("Paper claims against this leaderboard")
    sel = select(by_arch=False)
    if sel is None:
        return
    metrics = finished_metrics(sel)  # says why when nothing finished
    if metrics.empty:
        return
    path = sel.board / "claims.yaml"
    if not path.exists():
        st.info(f"**{sel.board.name}** has no claims.yaml. A claims file names a baseline, a "
                "method and the direction the paper expects per metric; see "
                "leaderboards/fashion-mnist/claims.yaml for the format.")
        return
    try:
        claims = load_claims(path)
        methods, archs = grid_names(sel.board, sel.data["runs"])
        check_names(claims, metrics, methods, path, archs)
    except board_file.BoardError as exc:
        st.error(str(exc))
        return
    result = evaluate(claims, metrics, metric_evidence(sel.data, norm=sel.norm, eps=sel.eps),
                      not_acted=not_acted_by_label(sel.data, unrecorded=False))
    overall = result.drop_duplicates("claim_id")["claim_verdict"].value_counts()
    for column, verdict in zip(st.columns(3), ("supported", "not supported", "inconclusive")):
        column.metric(f"claims {verdict}", int(overall.get(verdict, 0)))
    text = formatted(result)
    # Verdicts first: the table is wide, and they are what a reader looks for.
    table = pd.DataFrame({
        "paper": result["paper"],
        "claim": result["claim"],
        "claim verdict": result["claim_verdict"],
        "metric (expected)": result["metric"] + " (" + result["expect"] + ")",
        "verdict": result["verdict"],
        "baseline": text["baseline"],
        "method": text["method"],
        "difference": text["difference"],
        "p": text["p"],
        "p (Holm)": text["p (Holm)"],
        "n": text["n"],
        "test": text["test"],
        "method vs baseline": result["method"] + " vs " + result["baseline"],
        "arch": result["arch"].fillna(""),
    })
    st.dataframe(styled(table), hide_index=True, height=35 * (len(table) + 1) + 3,
                 column_config={"claim": st.column_config.TextColumn(width="large")})
    st.caption("Mean [95% interval] over seeds (and points); difference method − baseline with "
               "its 95% interval, in points for accuracies, relative for costs. p: two-sided "
               "bootstrap p-value ('keep': against the tolerance), and Holm-adjusted over this "
               "file's tests. supported / contradicted: the interval excludes 0 ('keep': lies "
               "within / beyond the claim's tolerance, 1 point by default) in / against the "
               "expected direction, and the Holm-adjusted p is below 0.05; within noise: not "
               "both; one seed: not judged. n: seeds×points per seed; test: paired (same seeds "
               "and points), unpaired (no per-point results), seeds, exact (deterministic). "
               "Source: " + str(path.name))


main()
