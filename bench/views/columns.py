"""Every column a leaderboard shows, declared once: its name in the frame, its label and
unit, which direction is better, and how its values read.

``perbench show`` (``bench.views.render``), the app's table (``app._data.table_view``),
the comparisons and claims (better direction, percent or not) and the app's charts (log
axes) all read these declarations, so a new column is one entry here (plus computing the
metric, in ``bench.views.leaderboard`` / ``bench.views.compare.per_run_metrics``).

A family (``robust_<attack>``, ``latency_ms_<hardware>``) is declared once by its prefix;
each member takes the suffix as its label, in the frame's order.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from bench.formats import (
    flag_text,
    format_count,
    format_flops,
    format_pct,
    format_pct_ci,
    format_rank,
    short_source,
)
from bench.views.ranking import INTERVAL_SUFFIXES

Better = Literal["higher", "lower"] | None
# How values read: "text" as they are (or through the column's ``text``); "int" a whole
# number; "percent" a fraction shown as a percentage with its interval ``<name>_lo``,
# ``<name>_hi`` (else its ``<name>_std`` spread);
# "flops" with an SI unit; "seconds" and "latency" (ms) to fixed decimals; "count" in k/M.
Format = Literal["text", "int", "percent", "flops", "seconds", "latency", "count"]

# The app's number format (st.column_config.NumberColumn) for each numeric format.
_NUMBER_FORMATS = {"int": "%d", "percent": "%.1f", "flops": "%.2f", "seconds": "%.1f",
                   "latency": "%.2f", "count": "localized"}


@dataclass(frozen=True)
class Column:
    name: str  # the frame's column; for a family, the prefix its members share
    label: str  # the header without its unit; a family's members use their suffix
    unit: str = ""  # "%", "s", "ms", "FLOPs" (the app scales it: "TFLOPs"), ...
    better: Better = None
    format: Format = "text"
    help: str = ""
    # Text shown in place of the values (all rows at once: some read other columns).
    text: Callable[[pd.DataFrame, str], Iterable[str]] | None = None
    # Whether the table shows it at all, when present in the frame (None: always).
    shown: Callable[[pd.DataFrame, str], bool] | None = None
    family: bool = False
    in_table: bool = True  # False: a metric with a direction that no table shows itself
    # An exact count (FLOPs, parameters): no interval; in text a "~" marks a row whose
    # seeds disagree (the frame's ``deterministic`` column lists the measures they agree on).
    exact: bool = False

    def header(self, unit: str | None = None) -> str:
        """``clean %``, ``train FLOPs``; ``unit`` replaces the declared one (a scaled unit)."""
        unit = self.unit if unit is None else unit
        return f"{self.label} {unit}" if unit else self.label

    @property
    def percent(self) -> bool:
        return self.format == "percent"

    @property
    def log_scale(self) -> bool:
        """Costs span orders of magnitude across methods: FLOPs, seconds and latency."""
        return self.format in ("flops", "seconds", "latency")

    @property
    def number_format(self) -> str | None:
        """The app's printf-style format; None for text."""
        return _NUMBER_FORMATS.get(self.format)

    def member(self, name: str) -> Column:
        """A family's column ``name``, labelled by its suffix."""
        return replace(self, name=name, label=name.removeprefix(self.name), family=False)

    def cells(self, frame: pd.DataFrame) -> list[str] | pd.Series:
        """The column's values as text for a table of strings (``perbench show``)."""
        if self.text is not None:
            return self.text(frame, self.name)
        values = frame[self.name]
        if self.format == "percent":
            # the interval where there is one, else the spread over seeds (an old runs
            # table without n_test has no counts for clean accuracy's interval)
            missing = pd.Series(float("nan"), index=frame.index)
            std, lo, hi = (frame.get(f"{self.name}{s}", missing) for s in ("_std", "_lo", "_hi"))
            return [format_pct(m, sd) if pd.isna(a) or pd.isna(b) else format_pct_ci(m, a, b)
                    for m, sd, a, b in zip(values, std, lo, hi)]
        if self.format == "flops":
            return self._marked(frame, values.map(format_flops))
        if self.format == "count":
            return self._marked(frame, values.map(format_count))
        if self.format == "int":
            return values.map(lambda v: "" if pd.isna(v) else str(v))
        if self.format == "seconds":
            return values.map(lambda s: "" if pd.isna(s) else f"{s:.1f}")
        return values

    def _marked(self, frame: pd.DataFrame, texts: pd.Series) -> pd.Series:
        """``~`` before an exact count whose seeds disagree (the mean is shown)."""
        if not self.exact or "deterministic" not in frame:
            return texts
        return pd.Series([f"~{t}" if t and isinstance(d, str) and self.name not in d.split(",")
                          else t for t, d in zip(texts, frame["deterministic"])],
                         index=frame.index)


def _varies(frame: pd.DataFrame, name: str) -> bool:
    # a single value goes in the title (CLI) or the sidebar (app) instead
    return frame[name].nunique() > 1


def _pruned(frame: pd.DataFrame, name: str) -> bool:
    return (frame[name] < frame["params"]).any()  # only pruned models need it


def _any_text(frame: pd.DataFrame, name: str) -> bool:
    return frame[name].fillna("").ne("").any()


def _not_all_ok(frame: pd.DataFrame, name: str) -> bool:
    return (frame[name] != "ok").any()


def _latency_text(frame: pd.DataFrame, name: str) -> list[str]:
    """Milliseconds, or ``skipped`` where the profile recorded why it has none."""
    skipped = frame.get(name.replace("latency_ms_", "latency_skipped_", 1),
                        pd.Series(None, index=frame.index))
    return [f"{ms:.2f}" if not pd.isna(ms) else "skipped" if isinstance(why, str) else ""
            for ms, why in zip(frame[name], skipped)]


def _rank_text(frame: pd.DataFrame, name: str) -> list[str]:
    """``3 (2–6)``: the rank and the best and worst rank its interval allows."""
    missing = pd.Series(pd.NA, index=frame.index)
    return [format_rank(r, lo, hi) for r, lo, hi in
            zip(frame[name], frame.get("rank_lo", missing), frame.get("rank_hi", missing))]


def _breaks_text(frame: pd.DataFrame, name: str) -> list[str]:
    """``3/100``: points broken, of the points AutoAttack and the ensemble both evaluated."""
    return ["" if pd.isna(k) or pd.isna(n) else f"{int(k)}/{int(n)}"
            for k, n in zip(frame[name], frame["crosscheck_n"])]


def _status_text(frame: pd.DataFrame, name: str) -> list[str]:
    return [s if s != "partial" else f"{f} of {f + n} failed"
            for s, f, n in zip(frame[name], frame["failed"], frame["seeds"])]


# The leaderboard's columns, in the order tables show them.
COLUMNS: tuple[Column, ...] = (
    Column("rank", "#", format="int", text=_rank_text,
           help="rank (best–worst rank its 95% interval allows)"),
    Column("tie_group", "tie", format="int",
           help="tie group: 1 holds the rows whose interval reaches the best row's; each "
                "next group starts at the best row left"),
    Column("method", "method"),
    Column("pareto", "Pareto", text=lambda f, c: f[c].map(lambda p: "★" if p else ""),
           help="★: no other row is at least as good on clean and robust accuracy, "
                "training FLOPs and latency, and better on one"),
    Column("dataset", "dataset", shown=_varies),
    Column("arch", "arch", shown=_varies),
    Column("seeds", "seeds", format="int"),
    Column("clean_acc", "clean", "%", "higher", "percent"),
    # the ranking attack's accuracy: it repeats that attack's own robust_<attack> column
    Column("robust_acc", "robust", "%", "higher", "percent", in_table=False),
    Column("robust_worst", "worst case", "%", "higher", "percent",
           help="per point: robust only where every attack of the ensemble failed"),
    Column("robust_", "", "%", "higher", "percent", family=True),
    Column("aa_only_breaks", "AA-only", text=_breaks_text,
           help="points robust under the ensemble that AutoAttack broke (expected: it is "
                "the stronger attack), of the points both evaluated"),
    Column("ensemble_only_breaks", "ensemble-only", text=_breaks_text,
           help="points AutoAttack left robust that the ensemble broke (unexpected), of "
                "the points both evaluated"),
    Column("corruption_acc", "corrupt", "%", "higher", "percent"),
    Column("mce", "mCE", "%", "lower", "percent"),
    Column("train_flops", "train", "FLOPs", "lower", "flops", exact=True),
    Column("train_seconds", "train", "s", "lower", "seconds"),
    Column("infer_flops", "infer", "FLOPs/img", "lower", "flops", exact=True),
    Column("params", "params", format="count", exact=True),
    Column("nonzero_params", "nonzero", better="lower", format="count", shown=_pruned,
           exact=True),
    Column("latency_ms_", "", "ms", "lower", "latency", text=_latency_text, family=True,
           help="p50 single-image latency"),
    Column("source", "source", text=lambda f, c: f[c].map(short_source),
           help="built-in, or the submission (id, authors) that added the method"),
    Column("flags", "flags", text=lambda f, c: f[c].map(flag_text), shown=_any_text,
           help="failed reliability checks"),
    Column("status", "status", text=_status_text, shown=_not_all_ok),
)

_BY_NAME = {c.name: c for c in COLUMNS if not c.family}
_FAMILIES = tuple(c for c in COLUMNS if c.family)


def _in_family(name: str, family: Column) -> bool:
    return (name.startswith(family.name) and not name.endswith(INTERVAL_SUFFIXES)
            and name not in _BY_NAME)


def column(name: str) -> Column | None:
    """The declaration of a frame column (a family's member included); None for columns
    no table shows (``<name>_std`` spreads, ``_lo``/``_hi`` bounds, ``_n`` counts, ids,
    provenance details)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    family = next((f for f in _FAMILIES if _in_family(name, f)), None)
    return family.member(name) if family is not None else None


def shown_columns(frame: pd.DataFrame) -> list[Column]:
    """The columns a table of ``frame`` shows, in display order (a family's members in the
    frame's order), each present in the frame and, where it says when, wanted there."""
    out = []
    for col in COLUMNS:
        if not col.in_table:
            continue
        members = ([col.member(c) for c in frame.columns if _in_family(c, col)]
                   if col.family else [col] if col.name in frame else [])
        out += [m for m in members if m.shown is None or m.shown(frame, m.name)]
    return out


def lower_is_better(metric: str) -> bool:
    """Costs (FLOPs, seconds, latency, nonzero params) and mCE: lower is better."""
    col = column(metric)
    return col is not None and col.better == "lower"


def higher_is_better(metric: str) -> bool:
    """Accuracies: higher is better."""
    col = column(metric)
    return col is not None and col.better == "higher"


def is_metric(metric: str) -> bool:
    """A column with a better direction: one a comparison or a claim may judge."""
    col = column(metric)
    return col is not None and col.better is not None


def is_percent(metric: str) -> bool:
    """Accuracies and mCE read as percentages; costs as plain numbers."""
    col = column(metric)
    return col is not None and col.percent


def log_scale(metric: str) -> bool:
    """Costs span orders of magnitude across methods: FLOPs, seconds and latency."""
    col = column(metric)
    return col is not None and col.log_scale
