"""How numbers read to people: percentages with their spread, FLOPs with an SI unit, counts
in k/M, the source of a row. Shared by the CLI renderer, the app and the comparisons, so a
value reads the same wherever it is shown."""
from __future__ import annotations

import numpy as np
import pandas as pd

_FLOP_UNITS = (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def format_number(v) -> str:
    """3 significant digits, thousands separated above 1,000; blank for a missing value."""
    return "" if v is None or pd.isna(v) else (f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}")


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


def format_pct_interval(lo: float, hi: float) -> str:
    """``[84.1, 86.4]`` (percent); blank where a bound is missing."""
    return "" if pd.isna(lo) or pd.isna(hi) else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def format_pct_ci(mean: float, lo: float, hi: float) -> str:
    """``85.3 [84.1, 86.4]`` (percent): the mean and its interval; the mean alone where
    there is no interval."""
    if pd.isna(mean):
        return ""
    return f"{100 * mean:.1f} {format_pct_interval(lo, hi)}".rstrip()


def format_rank_range(lo, hi) -> str:
    """``2–6``, or ``3`` where the interval allows one rank only; blank where unknown."""
    if pd.isna(lo) or pd.isna(hi):
        return ""
    return str(int(lo)) if lo == hi else f"{int(lo)}–{int(hi)}"


def format_rank(rank, lo, hi) -> str:
    """``3 (2–6)``: a rank and the range its interval allows; ``3`` where that is 3 alone
    or unknown; blank for an unranked row."""
    if pd.isna(rank):
        return ""
    if pd.isna(lo) or pd.isna(hi) or lo == hi:
        return str(int(rank))
    return f"{int(rank)} ({format_rank_range(lo, hi)})"


def format_count(n) -> str:
    """``1.23M``, ``45.6k`` or the count itself; blank for a missing value."""
    if pd.isna(n):
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def format_value(mean: float, std: float, percent: bool) -> str:
    """``72.4 ± 0.8`` (percent) or ``3.1e+12 ± 2e+10``; no spread for one seed."""
    if percent:
        return f"{100 * mean:.1f}" + ("" if np.isnan(std) else f" ± {100 * std:.1f}")
    return f"{mean:.3g}" + ("" if np.isnan(std) else f" ± {std:.2g}")


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


def flag_text(flags) -> str:
    """``⚠ <failed checks>`` for a flagged row, blank otherwise."""
    return f"⚠ {flags}" if isinstance(flags, str) and flags else ""


def format_eps(eps: float) -> str:
    """``8/255`` where eps is a whole number of 255ths that no short decimal writes, else ``0.1``."""
    steps = eps * 255
    if round(eps, 4) != eps and abs(steps - round(steps)) < 1e-6:
        return f"{round(steps)}/255"
    return f"{eps:g}"
