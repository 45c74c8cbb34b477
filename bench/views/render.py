"""``perbench show``: a leaderboard as a terminal table, markdown, CSV or JSON.

The table and markdown formats are for people (percentages with their 95% interval, the
rank with the range its interval allows, FLOPs with units); CSV and JSON carry the
full-precision frame for notebooks and scripts, and JSON adds to each row a ``ranking``
object (the ranking metric, its value, points per seed, seeds, interval, rank range and tie
group) and ``deterministic`` (per exact count, whether the seeds agree).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.formats import format_eps
from bench.results.board import mce_reference
from bench.results.store import Location, location, read_table
from bench.views.columns import shown_columns
from bench.views.leaderboard import (
    failures,
    leaderboard_frame,
    load_tables,
    skipped_profiles,
)
from bench.views.ranking import DETERMINISTIC_MEASURES
from bench.views.speed import latest_speed
from bench.views.timing import load_note

FORMATS = ("table", "csv", "json", "markdown")


def render(results_dir: Location, fmt: str = "table", provenance: bool = False,
           board: Path | None = None) -> str:
    """The leaderboard of ``leaderboards/<name>/results`` (or the fsspec URI its grid names;
    then pass ``board``, the folder holding grid.yaml) in one of ``FORMATS``; with
    ``provenance``, the table/markdown formats also list each row's source, code and config."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    results_dir = location(results_dir)
    tables = load_tables(results_dir)
    frame, note = leaderboard_frame(tables, mce_reference=mce_reference(results_dir, board))
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return json.dumps(_records(frame), indent=2)
    title = Path(board).name if board is not None else leaderboard_name(results_dir)
    reference = reference_section(results_dir, fmt) + speed_section(results_dir, fmt)
    if frame.empty:
        return "\n\n".join([f"{title}: {note}", *reference])
    scope = [frame[c].iloc[0] for c in ("dataset", "arch") if frame[c].nunique() == 1]
    if scope:
        title += f" ({', '.join(scope)})"
    shown = display_frame(frame)
    align = ["left" if col.format == "text" else "right" for col in shown_columns(frame)]
    table = tabulate(shown, headers="keys", showindex=False, colalign=align,
                     tablefmt="pipe" if fmt == "markdown" else "simple", disable_numparse=True)
    notes = [f"failed: {line}" for line in failures(frame)] + skipped_profiles(frame)
    if shown.apply(lambda col: col.astype(str).str.startswith("~")).any().any():
        notes.append("~: the seeds' counts differ (their mean is shown)")
    loaded = load_note(tables["runs"], tables["robustness"], tables["latency"])
    if loaded:
        notes.append(loaded)
    if provenance:
        reference = [provenance_table(frame, fmt), *reference]
    if fmt == "markdown":
        return "\n\n".join([f"## {title}", note, table, *(["\n".join(f"- {n}" for n in notes)]
                                                             if notes else []), *reference])
    return "\n".join([f"{title}: {note}", "", table, *notes, *("\n" + r for r in reference)])


def provenance_table(frame: pd.DataFrame, fmt: str) -> str:
    """Where each row comes from: submission (or built-in), code versions, options."""
    shown = frame[["method", "dataset", "arch", "source", "code_version", "config"]].rename(
        columns={"code_version": "code"})
    table = tabulate(shown, headers="keys", showindex=False, disable_numparse=True,
                     tablefmt="pipe" if fmt == "markdown" else "simple")
    return f"### Provenance\n\n{table}" if fmt == "markdown" else f"Provenance:\n\n{table}"


def speed_section(results_dir: Location, fmt: str) -> list[str]:
    """How fast the harness ran on each machine that ran ``perbench bench`` here."""
    shown = latest_speed(read_table(results_dir, "speed"))
    if shown.empty:
        return []
    table = tabulate(shown, headers="keys", showindex=False, disable_numparse=True,
                     tablefmt="pipe" if fmt == "markdown" else "simple")
    heading = "Harness speed on each machine (perbench bench; PERBench vs plain PyTorch)"
    return [f"### {heading}", table] if fmt == "markdown" else [f"{heading}:\n\n{table}"]


def reference_section(results_dir: Path, fmt: str) -> list[str]:
    """Imported RobustBench entries as their own table (none if there are none): under their
    own heading and unranked, since PERBench did not train or attack these models."""
    refs = read_table(results_dir, "reference")
    if refs.empty:
        return []
    refs = refs.sort_values(["dataset", "threat_model", "eps", "robust_acc"],
                            ascending=[True, True, True, False], kind="stable")
    shown = pd.DataFrame({
        "name": refs["name"], "architecture": refs["architecture"].fillna(""),
        "dataset": refs["dataset"],
        "threat model": [f"{n} {format_eps(e)}" for n, e in zip(refs["threat_model"], refs["eps"])],
        "clean %": refs["clean_acc"].map(lambda a: f"{100 * a:.2f}"),
        # a paper's own number is not AutoAttack's: say which one this is
        "robust %": [f"{100 * a:.2f}" + ("" if how == "autoattack" else f" ({how})")
                     for a, how in zip(refs["robust_acc"], refs["robust_attack"])],
    })
    table = tabulate(shown, headers="keys", showindex=False, disable_numparse=True,
                     tablefmt="pipe" if fmt == "markdown" else "simple")
    heading = "Reported elsewhere (RobustBench; not run by PERBench)"
    return [f"### {heading}", table] if fmt == "markdown" else [f"{heading}:\n\n{table}"]


def leaderboard_name(results_dir: Location) -> str:
    """``quickstart`` for ``leaderboards/quickstart/results`` (or ``s3://b/quickstart/results``)."""
    parts = str(location(results_dir)).rstrip("/").split("/")
    return parts[-2] if parts[-1] == "results" and len(parts) > 1 else parts[-1]


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Formatted strings, one column per shown metric, in leaderboard order (the
    declarations of ``bench.views.columns``)."""
    return pd.DataFrame({col.header(): col.cells(frame) for col in shown_columns(frame)},
                        index=frame.index)


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-safe records: NaN and NA become null, numpy scalars become Python numbers; each
    with its ``ranking`` and ``deterministic`` objects (see the module's docstring)."""
    def plain(value):
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return None
        return value.item() if hasattr(value, "item") else value

    records = []
    for row in frame.astype(object).to_dict(orient="records"):
        record = {k: plain(v) for k, v in row.items()}
        record["ranking"] = ranking_record(record)
        equal = (record.get("deterministic") or "").split(",")
        record["deterministic"] = {m: m in equal for m in DETERMINISTIC_MEASURES
                                   if record.get(m) is not None}
        records.append(record)
    return records


def ranking_record(record: dict) -> dict:
    """What ranked one row, with its uncertainty: ``metric`` (the column), ``value``, ``n``
    (points per seed), ``seeds``, ``lo``/``hi`` (95% interval), ``rank`` with ``rank_lo``/
    ``rank_hi``, ``tie_group``, and ``attacks`` (the worst case's ensemble, else null)."""
    metric = record.get("rank_by")
    ensemble = record.get("ensemble")
    return {"metric": metric,
            "value": record.get(metric) if metric else None,
            "n": record.get(f"{metric}_n") if metric else None,
            "seeds": record.get(f"{metric}_seeds") if metric else None,
            "lo": record.get(f"{metric}_lo") if metric else None,
            "hi": record.get(f"{metric}_hi") if metric else None,
            "rank": record.get("rank"), "rank_lo": record.get("rank_lo"),
            "rank_hi": record.get("rank_hi"), "tie_group": record.get("tie_group"),
            "attacks": ensemble.split(",") if ensemble else None}
