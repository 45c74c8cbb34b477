"""What each per-run number of ``per_run_metrics`` was computed from, for the tests that set
two methods against each other (bench.views.difference).

A run's accuracy is one number on the leaderboard, but its uncertainty depends on how many
points it was measured on, and two methods can only be paired point by point where each
point's outcome is stored (bench.views.points). :func:`metric_evidence` collects, per
metric and run:

- ``bits``: the per-point outcomes behind the value. ``robust_<attack>``: the bits of that
  attack at the threat model whose row ``per_run_metrics`` reads (``per_run_bits``: the
  largest evaluation carrying points). ``clean_acc``: the clean bits of the run's largest
  robustness evaluation (the run's own clean accuracy, on the whole test split, is stored
  as a number only), so a paired clean comparison covers those points, not the split.
- ``robust_worst``: per point, robust under every attack all evaluated runs share (the
  leaderboard's ranking column), where the rows carry points.
- ``sizes``: how many points the stored value averages, for a test built from counts where
  no bits exist (rows written before per-point results): ``robust_<attack>`` its row's
  ``n_examples``, ``clean_acc`` the run's ``n_test``, ``corruption_acc`` the number of
  images each corruption was scored on (the same images under every corruption and
  severity, so they count once: more would pretend the conditions were independent).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.views.leaderboard import best_row_per_attack, run_robustness, table_or_empty
from bench.views.points import per_run_bits, row_bits
from bench.views.ranking import WORST, worst_case_runs


@dataclass(frozen=True)
class Evidence:
    """metric -> run_id -> per-point bits, and metric -> run_id -> points behind the value."""

    bits: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    sizes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def bits_of(self, metric: str, run_ids) -> dict[str, np.ndarray] | None:
        """The bits of every one of ``run_ids``, or None where any run lacks them (a test
        mixing paired and unpaired runs would be neither)."""
        have = self.bits.get(metric, {})
        ids = list(run_ids)
        return {r: have[r] for r in ids} if ids and all(r in have for r in ids) else None

    def sizes_of(self, metric: str, run_ids) -> dict[str, int] | None:
        """The number of points behind each of ``run_ids``' values, or None where any is
        unknown."""
        have = self.sizes.get(metric, {})
        ids = list(run_ids)
        return {r: have[r] for r in ids} if ids and all(r in have for r in ids) else None


def finished_runs(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    runs = table_or_empty(tables, "runs")
    return runs[runs["status"] == "ok"].assign(_failed=False)


def attack_rows(tables: Mapping[str, pd.DataFrame], runs: pd.DataFrame, *,
                norm: str | None = None, eps: float | None = None) -> pd.DataFrame:
    """The robustness rows of ``runs``' attacks (no sweeps), at one threat model when given."""
    rob = run_robustness(tables, runs)
    if norm is not None:
        rob = rob[rob["norm"] == norm]
    if eps is not None:
        rob = rob[np.isclose(rob["eps"], eps)]
    return rob


def worst_case_evidence(rob: pd.DataFrame, *, norm: str | None = None,
                        eps: float | None = None) -> dict[str, np.ndarray]:
    """run_id → per-point worst case over the attacks every evaluated run shares (the
    leaderboard's ranking column ``robust_worst``; bench.views.ranking), at (norm, eps),
    or at the threat model with the most finished evaluations when not given. Empty when
    the rows carry no per-point results."""
    done = rob[(rob["status"] != "failed") & rob["robust_acc"].notna()]
    if done.empty:
        return {}
    if norm is None or eps is None:
        counts = done.groupby(["norm", "eps"]).size().sort_values(ascending=False,
                                                                  kind="stable")
        norm, eps = counts.index[0]
    here = done[(done["norm"] == norm) & np.isclose(done["eps"], eps)]
    return worst_case_runs(here, norm, float(eps)).bits


def metric_evidence(tables: Mapping[str, pd.DataFrame], *, norm: str | None = None,
                    eps: float | None = None) -> Evidence:
    """The bits and sizes behind ``per_run_metrics(tables, norm=norm, eps=eps)``."""
    runs = finished_runs(tables)
    rob = attack_rows(tables, runs, norm=norm, eps=eps)
    bits: dict[str, dict[str, np.ndarray]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for attack, chosen in best_row_per_attack(rob).groupby("attack"):
        metric = f"robust_{attack}"
        sizes[metric] = {r: int(n) for r, n in zip(chosen["run_id"], chosen["n_examples"])
                         if pd.notna(n) and n > 0}
        found: dict[str, np.ndarray] = {}
        # per threat model: without norm/eps a run's row may come from any of them
        for (n, e), here in chosen.groupby(["norm", "eps"]):
            found.update(per_run_bits(rob[rob["run_id"].isin(here["run_id"])], attack,
                                      norm=n, eps=float(e)))
        bits[metric] = found
    worst = worst_case_evidence(rob, norm=norm, eps=eps)
    if worst:
        bits[WORST], sizes[WORST] = worst, {r: len(b) for r, b in worst.items()}
    bits["clean_acc"] = _clean_bits(table_or_empty(tables, "robustness"), runs["run_id"])
    if "n_test" in runs:
        sizes["clean_acc"] = {r: int(n) for r, n in zip(runs["run_id"], runs["n_test"])
                              if pd.notna(n) and n > 0}
    cor = table_or_empty(tables, "corruption")
    cor = cor[cor["run_id"].isin(runs["run_id"]) & (cor["n_examples"].fillna(0) > 0)]
    if not cor.empty:
        sizes["corruption_acc"] = {r: int(n) for r, n in
                                   cor.groupby("run_id")["n_examples"].max().items()}
    return Evidence(bits, sizes)


def _clean_bits(rob: pd.DataFrame, run_ids) -> dict[str, np.ndarray]:
    """run_id → the clean bits of its largest finished robustness evaluation (any attack,
    threat model or sweep: the clean outcome of a point does not depend on the attack)."""
    if "clean_points" not in rob:
        return {}
    ok = (rob["run_id"].isin(list(run_ids)) & (rob["status"] != "failed")
          & rob["clean_points"].notna() & rob["n_examples"].notna())
    rows = rob[ok].sort_values(["n_examples", "attack", "eps"], ascending=[False, True, True],
                               kind="stable").drop_duplicates("run_id")
    return {r.run_id: row_bits(r, "clean") for r in rows.itertuples()}
