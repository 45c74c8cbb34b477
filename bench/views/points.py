"""Per-point outcomes of a board's evaluations, ready for the statistics in bench.views.stats.

A ``robustness`` row carries packed bits (bench.results.points): point ``i`` is the
``i``-th point of the one evaluation permutation of the test split, whatever the row's
``n_examples``, so rows of one run share a prefix and rows of two runs (two seeds, two
methods) are paired point by point.

- :func:`row_bits`: one row's clean or robust bits.
- :func:`per_run_bits`: per run, the bits of one attack at one threat model (the most
  points evaluated, then the lowest robust accuracy, as the leaderboard's columns do).
- :func:`worst_case_bits`: per run, robust only where every attack of a set failed (the
  "robust = correct under every attack tried" of the README), on the prefix they share.
- :func:`by_seed`: regroups per-run bits into {seed: bits} for one method's runs, the
  shape ``hierarchical_bootstrap_ci`` and ``paired_bootstrap`` take.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from bench.results.points import unpack
from bench.views.stats import worst_case


def row_bits(row, which: str = "robust") -> np.ndarray | None:
    """The ``which`` ("robust" or "clean") bits of one robustness row (a Series or a
    namedtuple), None where the row predates per-point results."""
    data = row[f"{which}_points"] if isinstance(row, (pd.Series, dict)) else getattr(
        row, f"{which}_points", None)
    n = row["n_examples"] if isinstance(row, (pd.Series, dict)) else row.n_examples
    if data is None or pd.isna(n):
        return None
    return unpack(data, int(n))


def _with_points(rob: pd.DataFrame) -> pd.DataFrame:
    """Finished rows that carry per-point bits."""
    if "robust_points" not in rob:
        return rob.iloc[:0]
    ok = (rob["status"] != "failed") & rob["robust_acc"].notna() & rob["robust_points"].notna()
    return rob[ok]


def _at(rob: pd.DataFrame, norm: str, eps: float) -> pd.DataFrame:
    return rob[(rob["norm"] == norm) & np.isclose(rob["eps"].astype(float), eps)]


def per_run_bits(rob: pd.DataFrame, attack: str, *, norm: str, eps: float,
                 which: str = "robust") -> dict[str, np.ndarray]:
    """run_id → bits of ``attack`` at (norm, eps): per run the row with the most points,
    then the lowest robust accuracy. Runs without per-point rows are absent."""
    rows = _at(_with_points(rob), norm, eps)
    rows = rows[rows["attack"] == attack].sort_values(
        ["n_examples", "robust_acc"], ascending=[False, True], kind="stable")
    return {r.run_id: row_bits(r, which) for r in rows.drop_duplicates("run_id").itertuples()}


def worst_case_bits(rob: pd.DataFrame, attacks: Iterable[str], *, norm: str, eps: float
                    ) -> dict[str, np.ndarray]:
    """run_id → per-point worst case over every row of ``attacks`` at (norm, eps): robust
    only where each of those evaluations (every row, so an attack run twice counts twice)
    failed, on the prefix all of them share. A run lacking per-point rows of any of the
    attacks is absent: its worst case would silently cover fewer attacks."""
    wanted = list(dict.fromkeys(attacks))
    rows = _at(_with_points(rob), norm, eps)
    rows = rows[rows["attack"].isin(wanted)]
    out: dict[str, np.ndarray] = {}
    for run_id, group in rows.groupby("run_id", sort=True):
        if set(group["attack"]) != set(wanted):
            continue
        out[run_id] = worst_case([row_bits(r) for r in group.itertuples()])
    return out


def shared_attacks(rob: pd.DataFrame, run_ids: Iterable[str], *, norm: str, eps: float,
                   exclude: Iterable[str] = ()) -> list[str]:
    """The attacks with per-point rows at (norm, eps) on every one of ``run_ids``, in name
    order, less ``exclude``: the set a worst case can be taken over for all of them."""
    ids = list(run_ids)
    rows = _at(_with_points(rob), norm, eps)
    rows = rows[rows["run_id"].isin(ids) & ~rows["attack"].isin(list(exclude))]
    if not ids or rows.empty:
        return []
    covered = rows.groupby("attack")["run_id"].nunique()
    return sorted(covered[covered == len(set(ids))].index)


def by_seed(bits: Mapping[str, np.ndarray], runs: pd.DataFrame) -> dict[int, np.ndarray]:
    """{seed: bits} for the runs of ``runs`` (columns run_id, seed) found in ``bits``."""
    seeds = runs.set_index("run_id")["seed"]
    return {int(seeds[r]): b for r, b in bits.items() if r in seeds.index}
