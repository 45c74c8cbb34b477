"""The app's data: which leaderboards exist, their tables (cached until results change),
the sidebar selection every page shares, and the leaderboard frame shaped for
``st.dataframe``."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from bench.formats import flop_unit, format_eps, format_pct_interval, format_rank_range
from bench.results.board import mce_reference, results_location
from bench.results.store import Location, file_stamps, location, read_all, table_files
from bench.views.columns import shown_columns
from bench.views.compare import per_run_metrics
from bench.views.leaderboard import threat_models

ENV_VAR = "PERBENCH_LEADERBOARD"
REPO = Path(__file__).resolve().parent.parent


def requested_leaderboard(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """``-- --leaderboard <dir>`` after ``streamlit run``, else ``$PERBENCH_LEADERBOARD``."""
    # parse_known_args: under test runners sys.argv holds the runner's own options.
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--leaderboard")
    value = parser.parse_known_args(list(argv))[0].leaderboard or environ.get(ENV_VAR)
    return Path(value).resolve() if value else None


def has_results(board: Path) -> bool:
    return bool(table_files(results_location(board), "runs"))


def leaderboard_choices(requested: Path | None) -> list[Path]:
    """Folders under ./leaderboards (and the checkout's) with results; ``requested`` first."""
    roots = {(Path.cwd() / "leaderboards").resolve(), REPO / "leaderboards"}
    found = sorted({b.resolve() for root in roots if root.is_dir() for b in root.iterdir()
                    if b.is_dir() and has_results(b)}, key=lambda b: (b.name, str(b)))
    if requested is None:
        return found
    return [requested, *(b for b in found if b != requested)]


def results_stamp(results: Location) -> tuple[tuple[str, str], ...]:
    """The cache key of a leaderboard's tables: every results file with its mtime."""
    return file_stamps(results)


@st.cache_data(show_spinner=False)
def _cached_tables(results: str, stamp: tuple[tuple[str, str], ...]) -> dict[str, pd.DataFrame]:
    # every table: the Method page also draws history, removed samples and layer sparsity
    return read_all(location(results))


def tables(results: Location) -> dict[str, pd.DataFrame]:
    results = location(results)
    return _cached_tables(str(results), results_stamp(results))


@dataclass(frozen=True)
class Selection:
    """What the sidebar picked; ``None`` fields were not asked (or had one choice)."""

    board: Path
    data: dict[str, pd.DataFrame]
    dataset: str
    arch: str | None
    norm: str | None
    eps: float | None
    hardware: str | None

    @property
    def mce_reference(self) -> str:
        return mce_reference(results_location(self.board), self.board)


def remembered_select(label: str, options: Sequence[Any], key: str,
                      format_func: Callable[[Any], str] = str) -> Any:
    """A sidebar selectbox whose choice survives page switches.

    Streamlit scopes widget state to a page, so the choice is also kept under a plain
    session key and becomes the default of the next page's widget.
    """
    kept = st.session_state.get(f"_kept_{key}")
    index = list(options).index(kept) if kept in options else 0
    value = st.sidebar.selectbox(label, list(options), index=index, key=key,
                                 format_func=format_func)
    st.session_state[f"_kept_{key}"] = value
    return value


def select(*, by_arch: bool = True) -> Selection | None:
    """The shared sidebar: leaderboard, dataset, arch, threat model, hardware profile.

    Says why and returns None where there is nothing to show. ``by_arch=False`` leaves
    the architecture open, for pages that compare across architectures.
    """
    boards = leaderboard_choices(requested_leaderboard(sys.argv[1:], os.environ))
    if not boards:
        st.info("No leaderboard has results yet. Fill one in with "
                "`perbench run leaderboards/quickstart`, then reload.")
        return None
    board = remembered_select("Leaderboard", boards, "board", format_func=lambda b: b.name)
    data = tables(results_location(board))
    runs = data["runs"]
    if runs.empty:
        st.info(f"No results yet for **{board.name}**. Fill them in with "
                f"`perbench run {board}`, then reload.")
        return None
    dataset = remembered_select("Dataset", sorted(runs["dataset"].unique()), "dataset")
    arch = None
    if by_arch:
        arch = remembered_select("Architecture",
                                 sorted(runs.loc[runs["dataset"] == dataset, "arch"].unique()),
                                 "arch")
    norm = eps = None
    found = threat_models(data, dataset=dataset, arch=arch)
    if len(found) > 1:  # most common first, so the default matches `perbench show`
        norm, eps = remembered_select("Threat model", found, "threat",
                                      format_func=lambda t: f"{t[0]}, eps {format_eps(t[1])}")
    profiles = sorted(data["latency"].loc[data["latency"]["run_id"].isin(runs["run_id"]),
                                          "hardware"].dropna().unique())
    hardware = remembered_select("Hardware", profiles, "hardware") if profiles else None
    return Selection(board, data, dataset, arch, norm, eps, hardware)


def finished_metrics(sel: Selection) -> pd.DataFrame:
    """``per_run_metrics`` of the selection's finished runs (dataset, and arch when chosen);
    says why and returns an empty frame when none finished."""
    metrics = per_run_metrics(sel.data, norm=sel.norm, eps=sel.eps,
                              mce_reference=sel.mce_reference)
    metrics = metrics[metrics["dataset"] == sel.dataset]
    if sel.arch is not None:
        metrics = metrics[metrics["arch"] == sel.arch]
    if metrics.empty:
        runs = sel.data["runs"]
        failed = runs[(runs["dataset"] == sel.dataset) & (runs["status"] == "failed")
                      & ((runs["arch"] == sel.arch) if sel.arch else True)]
        st.warning(f"No finished runs for {sel.dataset}"
                   + (f", {sel.arch}" if sel.arch else "")
                   + (f": {len(failed)} failed (see the Leaderboard page for their errors)."
                      if len(failed) else "."))
    return metrics.reset_index(drop=True)


def table_view(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict, list[str]]:
    """(frame, column_config, column_order) for ``st.dataframe``: the columns, labels and
    formats declared in ``bench.views.columns``.

    Values stay numeric so columns sort by value; accuracies become percent numbers, each
    beside its 95% interval ``[lo, hi]`` (else its spread over seeds), the rank beside the
    range its interval allows, and FLOPs are scaled to one unit per column, named in the
    header.
    """
    view = frame.copy()
    config: dict = {}
    order: list[str] = []
    for col in shown_columns(frame):
        name, help_ = col.name, col.help or None
        if col.percent and frame.get(f"{name}_lo", pd.Series(dtype=float)).notna().any():
            ci = f"{name}_ci"
            view[name] = 100 * frame[name]
            view[ci] = [format_pct_interval(lo, hi)
                        for lo, hi in zip(frame[f"{name}_lo"], frame[f"{name}_hi"])]
            config[ci] = st.column_config.TextColumn("95% CI", help=f"{col.label}: 95% interval")
            order += [name, ci]
        elif col.percent:
            std = f"{name}_std"
            view[name], view[std] = 100 * frame[name], 100 * frame[std]
            config[std] = st.column_config.NumberColumn("±", format=col.number_format,
                                                        help=f"{col.label}: std over seeds")
            # One seed has no spread: a column of blanks would only push the others aside.
            order += [name, *([std] if frame[std].notna().any() else [])]
        elif name == "rank" and "rank_lo" in frame:
            view["rank_range"] = [format_rank_range(lo, hi)
                                  for lo, hi in zip(frame["rank_lo"], frame["rank_hi"])]
            config["rank_range"] = st.column_config.TextColumn(
                "could be", help="best–worst rank the 95% interval allows")
            order += [name, "rank_range"]
        else:
            order.append(name)
        header = col.header()
        if col.format == "flops":
            unit, scale = flop_unit(frame[name].max() if frame[name].notna().any() else 0.0)
            view[name] = frame[name] / scale
            header = col.header(col.unit.replace("FLOPs", unit))
        elif col.format == "text" and col.text is not None:
            view[name] = list(col.text(frame, name))
        config[name] = (st.column_config.TextColumn(header, help=help_)
                        if col.number_format is None else
                        st.column_config.NumberColumn(header, format=col.number_format,
                                                      help=help_))
    return view, config, order
