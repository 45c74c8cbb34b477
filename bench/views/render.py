"""``perbench show``: a leaderboard as a terminal table, markdown, CSV or JSON.

The table and markdown formats are for people (percentages with their spread, FLOPs with
units); CSV and JSON carry the full-precision frame for notebooks and scripts.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml
from tabulate import tabulate

from bench.views.leaderboard import format_eps, leaderboard_frame, load_tables
from bench.results.store import Location, is_uri, location, read_table

FORMATS = ("table", "csv", "json", "markdown")
_TEXT_COLUMNS = ("method", "dataset", "arch", "status", "source", "flags")
_FLOP_UNITS = (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def render(results_dir: Location, fmt: str = "table", provenance: bool = False,
           board: Path | None = None) -> str:
    """The leaderboard of ``leaderboards/<name>/results`` (or the fsspec URI its grid names;
    then pass ``board``, the folder holding grid.yaml) in one of ``FORMATS``; with
    ``provenance``, the table/markdown formats also list each row's source, code and config."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    results_dir = location(results_dir)
    frame, note = leaderboard_frame(load_tables(results_dir),
                                    mce_reference=mce_reference(results_dir, board))
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
    align = ["left" if c in _TEXT_COLUMNS else "right" for c in shown.columns]
    table = tabulate(shown, headers="keys", showindex=False, colalign=align,
                     tablefmt="pipe" if fmt == "markdown" else "simple", disable_numparse=True)
    notes = [f"failed: {line}" for line in failures(frame)] + skipped_profiles(frame)
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


def short_source(source) -> str:
    """``built-in``, or ``sub 72bcb293 (A. Tester)``: the table's source column."""
    if not isinstance(source, str) or source == "built-in":
        return "built-in" if source == "built-in" else ""
    parts = []
    for one in source.split("; "):
        head, _, authors = one.partition(" by ")
        sid = head.removeprefix("submission ").split(" ")[0]
        parts.append(f"sub {sid[:8]}" + (f" ({authors})" if authors else ""))
    return "; ".join(parts)


def format_number(v) -> str:
    """3 significant digits, thousands separated above 1,000; blank for a missing value."""
    return "" if v is None or pd.isna(v) else (f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}")


def latest_speed(speed: pd.DataFrame) -> pd.DataFrame:
    """The newest measurement of each figure on each machine (host, hardware, device) and
    training setting (precision, layout, compile), shaped for reading: PERBench beside its
    reference and the ratio's target. A later bench of some figures (say, only the
    quickstart) leaves the other figures' latest values shown."""
    if speed.empty:
        return pd.DataFrame()
    speed = speed.assign(setting=speed["detail"].map(_speed_setting))
    keys = ["host", "hardware", "device_name", "figure", "setting"]
    rows = (speed.sort_values("created_at", kind="stable")
            .groupby(keys, dropna=False, sort=False).tail(1)
            .sort_values(["host", "hardware", "device_name", "created_at"], kind="stable"))
    num = format_number
    return pd.DataFrame({
        "machine": [f"{h} · {d} · {hw}" for h, d, hw in
                    zip(rows["host"], rows["device_name"], rows["hardware"])],
        "figure": [f"{f} ({s})" if s else f for f, s in zip(rows["figure"], rows["setting"])],
        "PERBench": rows["value"].map(num),
        "reference": rows["reference"].map(num), "unit": rows["unit"],
        "ratio": rows["ratio"].map(num), "ratio is": rows["ratio_meaning"],
        "target met": rows["target_met"].map({True: "yes", False: "no"}).fillna(""),
        "measured": rows["created_at"].dt.strftime("%Y-%m-%d"),
    }).reset_index(drop=True)


def _speed_setting(detail: str | None) -> str:
    """How a training figure ran, from its detail ("bf16, channels_last, compiled"); ""
    for the default (fp32, NCHW, eager) and for figures that do not train."""
    try:
        d = json.loads(detail) if detail else {}
    except ValueError:
        return ""
    parts = [d["precision"]] if d.get("precision", "fp32") != "fp32" else []
    parts += [name for key, name in (("channels_last", "channels_last"), ("compile", "compiled"))
              if d.get(key)]
    return ", ".join(parts)


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


def mce_reference(results_dir: Location, board: Path | None = None) -> str:
    """The grid's ``corruptions.reference`` (the grid in ``board``, else beside a local
    ``results/``), else ``erm``."""
    if board is None and is_uri(results_dir):
        return "erm"
    grid = (Path(board) if board is not None else Path(results_dir).resolve().parent) / "grid.yaml"
    try:
        ref = ((yaml.safe_load(grid.read_text()) or {}).get("corruptions") or {}).get("reference")
    except (OSError, AttributeError, yaml.YAMLError):
        ref = None
    return ref if isinstance(ref, str) else "erm"


def leaderboard_name(results_dir: Location) -> str:
    """``quickstart`` for ``leaderboards/quickstart/results`` (or ``s3://b/quickstart/results``)."""
    parts = str(location(results_dir)).rstrip("/").split("/")
    return parts[-2] if parts[-1] == "results" and len(parts) > 1 else parts[-1]


def flop_unit(value: float) -> tuple[str, float]:
    """The largest SI unit not above ``value``: ``("TFLOPs", 1e12)`` for 3.2e12."""
    for prefix, scale in _FLOP_UNITS:
        if value >= scale:
            return f"{prefix}FLOPs", scale
    return "FLOPs", 1.0


def format_flops(value: float) -> str:
    """FLOPs with an SI unit: ``12.0 TFLOPs``."""
    if pd.isna(value):
        return ""
    unit, scale = flop_unit(value)
    return f"{value / scale:.1f} {unit}"


def format_pct(mean: float, std: float) -> str:
    """``85.3 ± 1.2`` (percent); the spread is left out for a single seed."""
    if pd.isna(mean):
        return ""
    return f"{100 * mean:.1f}" if pd.isna(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Formatted strings, one column per shown metric, in leaderboard order."""
    out = pd.DataFrame({"#": frame["rank"].map(lambda r: "" if pd.isna(r) else str(r)),
                        "method": frame["method"]})
    for col in ("dataset", "arch"):  # a single value goes in the title instead
        if frame[col].nunique() > 1:
            out[col] = frame[col]
    out["seeds"] = frame["seeds"].astype(str)
    out["clean %"] = [format_pct(m, s) for m, s in zip(frame["clean_acc"], frame["clean_acc_std"])]
    for col in _attack_columns(frame):
        out[f"{col.removeprefix('robust_')} %"] = [
            format_pct(m, s) for m, s in zip(frame[col], frame[f"{col}_std"])]
    if "corruption_acc" in frame:
        out["corrupt %"] = [format_pct(m, s) for m, s in
                            zip(frame["corruption_acc"], frame["corruption_acc_std"])]
        out["mCE %"] = [format_pct(m, s) for m, s in zip(frame["mce"], frame["mce_std"])]
    out["train FLOPs"] = frame["train_flops"].map(format_flops)
    out["train s"] = frame["train_seconds"].map(lambda s: "" if pd.isna(s) else f"{s:.1f}")
    out["infer FLOPs/img"] = frame["infer_flops"].map(format_flops)
    out["params"] = frame["params"].map(_count)
    if (frame["nonzero_params"] < frame["params"]).any():  # only pruned models need it
        out["nonzero"] = frame["nonzero_params"].map(_count)
    for col in (c for c in frame.columns if c.startswith("latency_ms_")):
        hw = col.removeprefix("latency_ms_")
        skipped = frame.get(f"latency_skipped_{hw}", pd.Series(None, index=frame.index))
        out[f"{hw} ms"] = [f"{ms:.2f}" if not pd.isna(ms) else "skipped" if isinstance(why, str)
                           else "" for ms, why in zip(frame[col], skipped)]
    out["source"] = frame["source"].map(short_source)
    if frame["flags"].fillna("").ne("").any():
        out["flags"] = frame["flags"].fillna("").map(lambda f: f"⚠ {f}" if f else "")
    if (frame["status"] != "ok").any():
        out["status"] = [s if s != "partial" else f"{f} of {f + n} failed"
                         for s, f, n in zip(frame["status"], frame["failed"], frame["seeds"])]
    return out


def _attack_columns(frame: pd.DataFrame) -> list[str]:
    """``robust_<attack>`` mean columns; ``robust_acc`` repeats the ranking attack's."""
    return [c for c in frame.columns
            if c.startswith("robust_") and not c.endswith("_std") and c != "robust_acc"]


def _count(n) -> str:
    if pd.isna(n):
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def failures(frame: pd.DataFrame) -> list[str]:
    """One line per group with failed runs or evaluations, with their errors."""
    return [f"{m} ({d}, {a}) {err}"
            for m, d, a, err in zip(frame["method"], frame["dataset"], frame["arch"],
                                    frame["error"]) if isinstance(err, str)]


def skipped_profiles(frame: pd.DataFrame) -> list[str]:
    """Why a hardware profile has no latency: recorded as skipped, never silently dropped."""
    return [f"{col.removeprefix('latency_skipped_')} latency skipped: {reason}"
            for col in frame.columns if col.startswith("latency_skipped_")
            for reason in frame[col].dropna().unique()]


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-safe records: NaN and NA become null, numpy scalars become Python numbers."""
    def plain(value):
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()}
            for row in frame.astype(object).to_dict(orient="records")]
