"""The app's data: which leaderboards exist, their tables (cached until results change),
and the leaderboard frame shaped for ``st.dataframe``."""
from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from bench.leaderboard import accuracy_columns, load_tables
from bench.show import flop_unit

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
    return any((board / "results" / "runs").glob("*.parquet"))


def leaderboard_choices(requested: Path | None) -> list[Path]:
    """Folders under ./leaderboards (and the checkout's) with results; ``requested`` first."""
    roots = {(Path.cwd() / "leaderboards").resolve(), REPO / "leaderboards"}
    found = sorted({b.resolve() for root in roots if root.is_dir() for b in root.iterdir()
                    if b.is_dir() and has_results(b)}, key=lambda b: (b.name, str(b)))
    if requested is None:
        return found
    return [requested, *(b for b in found if b != requested)]


def results_stamp(results: Path) -> tuple[tuple[str, int], ...]:
    """Every results file with its mtime: the cache key that changes when results do."""
    return tuple(sorted((str(p.relative_to(results)), p.stat().st_mtime_ns)
                        for p in results.glob("*/*.parquet")))


@st.cache_data(show_spinner=False)
def _cached_tables(results: str, stamp: tuple[tuple[str, int], ...]) -> dict[str, pd.DataFrame]:
    return load_tables(Path(results))


def tables(results: Path) -> dict[str, pd.DataFrame]:
    return _cached_tables(str(results.resolve()), results_stamp(results))


def table_view(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict, list[str]]:
    """(frame, column_config, column_order) for ``st.dataframe``.

    Values stay numeric so columns sort by value; accuracies become percent numbers and
    FLOPs are scaled to one unit per column, named in the header.
    """
    view = frame.copy()
    config: dict = {"rank": st.column_config.NumberColumn("#", format="%d"),
                    "seeds": st.column_config.NumberColumn("seeds", format="%d")}
    order = ["rank", "method"]
    order += [c for c in ("dataset", "arch") if frame[c].nunique() > 1]
    order += ["seeds"] + (["status"] if (frame["status"] != "ok").any() else [])
    for col in accuracy_columns(frame):
        if col == "robust_acc":  # repeats the ranking attack's own column
            continue
        view[col], view[f"{col}_std"] = 100 * frame[col], 100 * frame[f"{col}_std"]
        name = "clean" if col == "clean_acc" else col.removeprefix("robust_")
        config[col] = st.column_config.NumberColumn(f"{name} %", format="%.1f")
        config[f"{col}_std"] = st.column_config.NumberColumn("±", format="%.1f",
                                                             help=f"{name}: std over seeds")
        order += [col, f"{col}_std"]
    for col, label in (("train_flops", "train"), ("infer_flops", "infer/img")):
        unit, scale = flop_unit(frame[col].max() if frame[col].notna().any() else 0.0)
        view[col] = frame[col] / scale
        config[col] = st.column_config.NumberColumn(f"{label} {unit}", format="%.2f")
        order.append(col)
    config["train_seconds"] = st.column_config.NumberColumn("train s", format="%.1f")
    config["params"] = st.column_config.NumberColumn("params", format="localized")
    order += ["train_seconds", "params"]
    if (frame["nonzero_params"] < frame["params"]).any():  # only pruned models need it
        config["nonzero_params"] = st.column_config.NumberColumn("nonzero", format="localized")
        order.append("nonzero_params")
    for col in (c for c in frame.columns if c.startswith("latency_ms_")):
        config[col] = st.column_config.NumberColumn(f"{col.removeprefix('latency_ms_')} ms",
                                                    format="%.2f", help="p50 single-image latency")
        order.append(col)
    return view, config, order
