"""Trade-off computations for the app: which direction is better per metric, Pareto fronts,
per-method means and the normalised three-axis (P, E, R) view. Pure pandas, no Streamlit."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.views.columns import lower_is_better
from bench.views.leaderboard import KEYS, STANDARD_ATTACK

# Columns of ``per_run_metrics`` that identify a run rather than measure it.
ID_COLUMNS = ("run_id", *KEYS, "seed", "seeds", "params")


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric metric columns with at least one value, in frame order."""
    return [c for c in frame.columns if c not in ID_COLUMNS and not c.endswith("_std")
            and pd.api.types.is_numeric_dtype(frame[c]) and frame[c].notna().any()]


def pareto_mask(frame: pd.DataFrame, objectives: Mapping[str, bool]) -> pd.Series:
    """True for rows no other row dominates; ``objectives`` maps column -> higher is better.

    A row dominates another when it is at least as good on every objective and strictly
    better on one, so tied rows do not dominate each other and are both on the front.
    Rows missing any objective are never marked (and dominate nothing).
    """
    mask = pd.Series(False, index=frame.index)
    if frame.empty or not objectives:
        return mask
    values = frame[list(objectives)].astype(float).to_numpy()
    signs = np.array([1.0 if higher else -1.0 for higher in objectives.values()])
    complete = ~np.isnan(values).any(axis=1)
    points = values[complete] * signs  # now higher is better on every axis
    at_least = (points[:, None, :] >= points[None, :, :]).all(axis=2)
    strictly = (points[:, None, :] > points[None, :, :]).any(axis=2)
    dominated = (at_least & strictly).any(axis=0)  # [i, j]: row i dominates row j
    mask[complete] = ~dominated
    return mask


def pair_objectives(x: str, y: str) -> dict[str, bool]:
    """Objectives for a scatter of ``x`` against ``y``: higher is better unless a cost."""
    return {m: not lower_is_better(m) for m in dict.fromkeys((x, y))}


def frontier(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The Pareto-optimal rows for the pair, sorted along ``x`` so a line joins them."""
    on_front = frame[pareto_mask(frame, pair_objectives(x, y))]
    return on_front.sort_values([x, y])


def method_means(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (method, dataset, arch): the mean of each metric over seeds, and ``seeds``."""
    if metrics.empty:
        return pd.DataFrame(columns=[*KEYS, "seeds"])
    grouped = metrics.groupby(KEYS)
    means = grouped[metric_columns(metrics)].mean()
    means.insert(0, "seeds", grouped["run_id"].count())
    return means.reset_index()


def robust_metric(columns: Sequence[str]) -> str | None:
    """The robust accuracy column that stands for robustness: AutoAttack's where present."""
    robust = [c for c in columns if c.startswith("robust_")]
    standard = f"robust_{STANDARD_ATTACK}"
    return standard if standard in robust else (robust[0] if robust else None)


def parallel_coordinates(means: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """Long frame (method, arch, line, axis, order, value, scaled) for parallel coordinates.

    Each axis is min-max scaled to [0, 1] and flipped for costs, so up is better on every
    axis; a constant axis sits at 0.5. Rows missing an axis are left out: a broken line
    would read as a zero.
    """
    rows = means.dropna(subset=list(axes))
    out = []
    for order, axis in enumerate(axes):
        values = rows[axis].astype(float)
        span = values.max() - values.min()
        scaled = (values - values.min()) / span if span > 0 else values * 0 + 0.5
        if lower_is_better(axis):
            scaled = 1 - scaled
        out.append(pd.DataFrame({
            "method": rows["method"], "arch": rows["arch"],
            "line": rows["method"] + " · " + rows["arch"], "axis": axis, "order": order,
            "value": values, "scaled": scaled}))
    if not out:
        return pd.DataFrame(columns=["method", "arch", "line", "axis", "order", "value", "scaled"])
    return pd.concat(out, ignore_index=True)
