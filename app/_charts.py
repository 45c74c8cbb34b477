"""Altair charts shared by the app's pages. Each takes a tidy frame and returns a chart;
the pages decide what to show and what to say when there is nothing to draw."""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from bench.views.columns import is_percent, log_scale, lower_is_better
from bench.views.pareto import frontier


def label(metric: str) -> str:
    """Axis title: the metric, its better direction, and (log) where it applies."""
    arrow = "↓" if lower_is_better(metric) else "↑"
    return f"{metric} {arrow}" + (" (log)" if log_scale(metric) else "")


def _axis_format(metric: str) -> str:
    return "%" if is_percent(metric) else "~s" if log_scale(metric) else "~g"


def _position(channel, metric: str):
    scale = alt.Scale(type="log") if log_scale(metric) else alt.Scale(zero=False)
    return channel(f"{metric}:Q", scale=scale, title=label(metric),
                   axis=alt.Axis(format=_axis_format(metric)))


def plottable(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Rows with every metric present and, on log axes, positive."""
    rows = frame.dropna(subset=list(metrics))
    for metric in metrics:
        if log_scale(metric):
            rows = rows[rows[metric] > 0]
    return rows


def tradeoff_scatter(points: pd.DataFrame, x: str, y: str) -> alt.LayerChart:
    """``y`` against ``x``: colour by method, shape by arch, the pair's Pareto front as a line."""
    cols = list(dict.fromkeys(["method", "arch", "seeds", x, y]))
    points = points[cols]
    tooltip = [alt.Tooltip("method:N"), alt.Tooltip("arch:N"), alt.Tooltip("seeds:Q")]
    tooltip += [alt.Tooltip(f"{m}:Q", format=".1%" if is_percent(m) else ".3~s")
                for m in dict.fromkeys((x, y))]
    scatter = alt.Chart(points).mark_point(size=110, filled=True).encode(
        x=_position(alt.X, x), y=_position(alt.Y, y),
        color=alt.Color("method:N"), shape=alt.Shape("arch:N"), tooltip=tooltip)
    front = alt.Chart(frontier(points, x, y)).mark_line(color="gray", strokeDash=[4, 3]).encode(
        x=f"{x}:Q", y=f"{y}:Q")
    return alt.layer(front, scatter)


def parallel_chart(long: pd.DataFrame) -> alt.Chart:
    """Parallel coordinates from ``bench.views.pareto.parallel_coordinates``: up is better."""
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("axis:N", sort=alt.SortField("order"), title=None,
                axis=alt.Axis(labelAngle=0)),
        y=alt.Y("scaled:Q", title="normalised (1 = best shown)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("method:N"), detail="line:N",
        tooltip=["method:N", "arch:N", "axis:N", alt.Tooltip("value:Q", format=".3~g")])


def radar_chart(per_attack: pd.DataFrame) -> alt.LayerChart:
    """Robust accuracy per attack as a radar (the CAPER paper's figures): one spoke per
    attack, the mean over seeds as the distance from the centre (0 to 100%), rings at 25%
    steps. Coordinates are computed here: Vega-Lite has no polar lines."""
    k = len(per_attack)
    angle = 2 * np.pi * np.arange(k) / k
    points = per_attack.assign(x=per_attack["robust_acc"].to_numpy() * np.sin(angle),
                               y=per_attack["robust_acc"].to_numpy() * np.cos(angle),
                               order=np.arange(k))
    closed = pd.concat([points, points.iloc[:1].assign(order=k)], ignore_index=True)
    ring_angles = np.linspace(0, 2 * np.pi, 61)
    rings = pd.DataFrame([{"x": r * np.sin(t), "y": r * np.cos(t), "ring": r, "order": i}
                          for r in (0.25, 0.5, 0.75, 1.0) for i, t in enumerate(ring_angles)])
    spokes = pd.DataFrame({"x": 1.08 * np.sin(angle), "y": 1.08 * np.cos(angle),
                           "attack": per_attack["attack"].to_numpy()})
    axis = dict(axis=None, scale=alt.Scale(domain=[-1.2, 1.2]))
    x, y = alt.X("x:Q", **axis), alt.Y("y:Q", **axis)
    grid = alt.Chart(rings).mark_line(color="#ddd").encode(x=x, y=y, detail="ring:N",
                                                           order="order:Q")
    labels = alt.Chart(spokes).mark_text(fontSize=12).encode(x=x, y=y, text="attack:N")
    shape = alt.Chart(closed).mark_line(point=True, filled=False).encode(x=x, y=y,
                                                                         order="order:Q")
    dots = alt.Chart(points).mark_circle(size=80).encode(
        x=x, y=y, tooltip=["attack:N", alt.Tooltip("robust_acc:Q", title="mean", format=".1%"),
                           alt.Tooltip("std:Q", title="std over seeds", format=".1%"),
                           "seeds:Q"])
    return (grid + shape + dots + labels).properties(width=420, height=420)


def seed_lines(frame: pd.DataFrame, x: str, y: str, *, dash: str | None = None) -> alt.Chart:
    """One line per seed of ``y`` against ``x``; ``dash`` splits lines by another column."""
    encoding = dict(x=alt.X(f"{x}:Q", title=x),
                    y=alt.Y(f"{y}:Q", title=y, axis=alt.Axis(format=_axis_format(y))),
                    color=alt.Color("seed:N"), tooltip=["seed:N", f"{x}:Q", f"{y}:Q"])
    if dash:
        encoding["strokeDash"] = alt.StrokeDash(f"{dash}:N")
    return alt.Chart(frame).mark_line(point=True).encode(**encoding)


def curves_chart(long: pd.DataFrame) -> alt.FacetChart:
    """Training curves (``epoch``, ``metric``, ``value``, ``seed``): one panel per metric,
    each with its own y scale."""
    return alt.Chart(long).mark_line().encode(
        x=alt.X("epoch:Q"), y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("seed:N"), tooltip=["seed:N", "epoch:Q", "metric:N", "value:Q"],
    ).properties(width=220, height=150).facet(facet=alt.Facet("metric:N", title=None), columns=3
                                              ).resolve_scale(y="independent")


def bar_chart(frame: pd.DataFrame, x: str, y: str, *, title: str, offset: str | None = None,
              percent: bool = False) -> alt.Chart:
    """Bars of ``y`` per ``x``; ``offset`` puts one bar per value of that column side by side."""
    encoding = dict(x=alt.X(f"{x}:N", title=x, sort=None),
                    y=alt.Y(f"{y}:Q", title=title, axis=alt.Axis(format="%" if percent else "~g")),
                    tooltip=[f"{x}:N", alt.Tooltip(f"{y}:Q", format=".1%" if percent else ".3~g")])
    if offset:
        encoding.update(xOffset=f"{offset}:N", color=f"{offset}:N")
        encoding["tooltip"].append(f"{offset}:N")
    return alt.Chart(frame).mark_bar().encode(**encoding)


def heatmap(frame: pd.DataFrame, x: str, y: str, value: str,
            order: list[str] | None = None) -> alt.Chart:
    """``value`` (an accuracy) per (``x``, ``y``) cell, with the number written in it.
    ``order``: both axes are names in this order (a square matrix), else x is ordinal."""
    x_enc = (alt.X(f"{x}:N", sort=order, axis=alt.Axis(labelAngle=-40, labelLimit=260))
             if order else alt.X(f"{x}:O"))
    base = alt.Chart(frame).encode(x=x_enc, y=alt.Y(f"{y}:N", sort=order,
                                                   axis=alt.Axis(labelLimit=260)))
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1])),
        tooltip=[f"{y}:N", f"{x}:{'N' if order else 'O'}",
                 alt.Tooltip(f"{value}:Q", format=".1%")])
    text = base.mark_text(baseline="middle", color="white").encode(
        text=alt.Text(f"{value}:Q", format=".0%"))
    return alt.layer(cells, text)
