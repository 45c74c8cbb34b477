"""What a leaderboard's ranking can claim: the worst case over attacks, a 95% interval for
every accuracy, and the ranks and tie groups those intervals allow.

- :func:`worst_case_runs`: per run, robust only where every attack of one shared ensemble
  failed (``bench.views.points``), or why the ranking has no per-point worst case.
- :func:`interval_columns`: per (method, dataset, arch), the mean over seeds with its
  hierarchical bootstrap interval (``bench.views.stats``).
- :func:`autoattack_crosscheck`: where AutoAttack and the ensemble disagree point by point.
- :func:`rank_columns`: rank intervals and tie groups from the ranking column's intervals.
- :func:`deterministic_measures`: which exact counts (FLOPs, parameters) are equal across
  seeds; those get no interval.

Every interval is drawn with the same fixed seed, so the same tables give the same output.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.views.points import per_run_bits, row_bits, shared_attacks, worst_case_bits
from bench.views.stats import (
    deterministic,
    hierarchical_bootstrap_ci,
    rank_intervals,
    tie_groups,
)

LEVEL = 0.95
N_BOOT = 2000
BOOT_SEED = 0
WORST = "robust_worst"
# AutoAttack's subset is small (its cost), so it would shrink the points the worst case
# covers; it stays its own column and is held against the ensemble point by point instead.
ENSEMBLE_EXCLUDE = ("autoattack",)
# Exact counts, not estimates: no interval, only whether the seeds agree.
DETERMINISTIC_MEASURES = ("train_flops", "infer_flops", "params", "nonzero_params")
INTERVAL_SUFFIXES = ("_std", "_lo", "_hi", "_n", "_seeds")


def count_bits(acc: float, n: int) -> np.ndarray:
    """A 0/1 array with ``round(acc · n)`` ones out of ``n``, for a metric stored only as an
    aggregate (clean accuracy on the run's ``n_test`` points, corruption accuracy).

    The two-level bootstrap of a mean of 0/1 outcomes depends on each seed's count of
    ones and number of points only, never on which points they are, so this array gives
    the very interval the per-point bits would."""
    ones = round(float(acc) * int(n))
    return np.r_[np.ones(ones, dtype=bool), np.zeros(int(n) - ones, dtype=bool)]


def seed_interval(per_seed: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean over seeds of each seed's mean, with its 95% two-level
    (seeds, then points within a seed) bootstrap interval, seeded for repeatable output."""
    return hierarchical_bootstrap_ci(list(per_seed), level=LEVEL, n_boot=N_BOOT, seed=BOOT_SEED)


def interval_columns(name: str, bits: pd.DataFrame, keys: list[str],
                     index: pd.Index | None = None, *, mean: bool = True) -> pd.DataFrame:
    """Per group of ``keys``: ``<name>`` (with ``mean``), ``<name>_std`` (sample std of the
    seed means, NaN for one seed), ``<name>_lo`` and ``<name>_hi`` (95% interval),
    ``<name>_n`` (points per seed, the fewest where seeds differ) and ``<name>_seeds`` (the
    seeds it covers: an attack may have run on fewer seeds than the group has).

    ``bits``: one row per run, with ``keys``, ``seed`` and ``bits`` (a 0/1 array)."""
    rows = {}
    for key, group in bits.sort_values("seed", kind="stable").groupby(keys, sort=True):
        arrays = [np.asarray(b, dtype=float) for b in group["bits"]]
        m, lo, hi = seed_interval(arrays)
        row = {f"{name}_lo": lo, f"{name}_hi": hi, f"{name}_n": min(a.size for a in arrays),
               f"{name}_seeds": len(arrays)}
        if mean:
            seed_means = [a.mean() for a in arrays]
            row = {name: m, f"{name}_std": float(np.std(seed_means, ddof=1))
                   if len(arrays) > 1 else np.nan, **row}
        rows[key if isinstance(key, tuple) else (key,)] = row
    names = [*([name, f"{name}_std"] if mean else []),
             *(f"{name}{suffix}" for suffix in ("_lo", "_hi", "_n", "_seeds"))]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=names)
    frame.index = (pd.MultiIndex.from_tuples(frame.index, names=keys) if rows
                   else pd.MultiIndex.from_arrays([[]] * len(keys), names=keys))
    frame[[f"{name}_n", f"{name}_seeds"]] = frame[[f"{name}_n", f"{name}_seeds"]].astype("Int64")
    return frame if index is None else frame.reindex(index)


def counted_bits(frame: pd.DataFrame, acc: str, n: str) -> pd.Series:
    """Per row, :func:`count_bits` of its ``acc`` on ``n`` points; None where either is
    missing (an old runs table without ``n_test``)."""
    return pd.Series([None if pd.isna(a) or pd.isna(k) or int(k) <= 0 else count_bits(a, k)
                      for a, k in zip(frame[acc], frame[n])], index=frame.index, dtype=object)


def row_or_counted_bits(rows: pd.DataFrame) -> pd.Series:
    """Per robustness row, its robust bits; rows written before per-point results get
    :func:`count_bits` of their robust accuracy (the same interval, see there)."""
    out = []
    for row in rows.itertuples():
        bits = row_bits(row) if "robust_points" in rows else None
        if bits is None and not pd.isna(row.n_examples) and not pd.isna(row.robust_acc):
            bits = count_bits(row.robust_acc, row.n_examples)
        out.append(bits)
    return pd.Series(out, index=rows.index, dtype=object)


# ----------------------------------------------------------------------------- worst case

@dataclass
class WorstCase:
    """The ensemble a worst case is taken over and each run's bits (empty: none, ``why``)."""

    attacks: list[str] = field(default_factory=list)
    bits: dict[str, np.ndarray] = field(default_factory=dict)
    why: str = ""

    def __bool__(self) -> bool:
        return bool(self.attacks)


def worst_case_runs(rob: pd.DataFrame, norm: str, eps: float) -> WorstCase:
    """The per-point worst case over the attacks every evaluated run shares at (norm, eps).

    ``rob``: the finished runs' robustness rows at this threat model. The ensemble is the
    attacks with per-point rows on every run evaluated here, less AutoAttack; a run with
    rows of some attack but no per-point rows (written before them) leaves no attack
    shared, so the whole selection falls back to per-attack ranking, and ``why`` says so.
    """
    done = rob[(rob["status"] != "failed") & rob["robust_acc"].notna()]
    evaluated = sorted(done["run_id"].unique())
    if not evaluated:
        return WorstCase(why="no robustness results")
    with_points = (set(done.loc[done["robust_points"].notna(), "run_id"])
                   if "robust_points" in done else set())
    if not with_points:
        return WorstCase(why="its robustness rows predate per-point results, which "
                             "`perbench run` adds by evaluating them again")
    attacks = shared_attacks(rob, evaluated, norm=norm, eps=eps, exclude=ENSEMBLE_EXCLUDE)
    if not attacks:
        missing = len(set(evaluated) - with_points)
        return WorstCase(why=(f"{missing} of {len(evaluated)} evaluated runs have no per-point "
                              "results yet" if missing else
                              "no attack besides autoattack has per-point results on every "
                              "evaluated run"))
    bits = worst_case_bits(rob, attacks, norm=norm, eps=eps)
    return WorstCase(attacks=attacks, bits={r: bits[r] for r in evaluated if r in bits})


def bits_frame(bits: Mapping[str, np.ndarray], runs: pd.DataFrame, keys: list[str]
               ) -> pd.DataFrame:
    """The runs of ``runs`` found in ``bits``, with ``keys``, ``seed`` and their ``bits``."""
    rows = runs[runs["run_id"].isin(list(bits))][["run_id", *keys, "seed"]]
    return rows.assign(bits=[bits[r] for r in rows["run_id"]])


def autoattack_crosscheck(worst: Mapping[str, np.ndarray], rob: pd.DataFrame,
                          runs: pd.DataFrame, keys: list[str], *, norm: str, eps: float,
                          attack: str = "autoattack") -> pd.DataFrame:
    """Per group, summed over its runs on the points each run's AutoAttack and worst case
    share: ``aa_only_breaks`` (robust under the ensemble, broken by AutoAttack: expected,
    it is the stronger attack), ``ensemble_only_breaks`` (AutoAttack left robust, the
    ensemble broke: unexpected) and ``crosscheck_n`` (the points compared)."""
    aa = per_run_bits(rob, attack, norm=norm, eps=eps)
    rows = []
    for run in runs[runs["run_id"].isin([r for r in worst if r in aa])].itertuples():
        w, a = worst[run.run_id], aa[run.run_id]
        n = min(w.size, a.size)
        w, a = w[:n].astype(bool), a[:n].astype(bool)
        rows.append({**{k: getattr(run, k) for k in keys},
                     "aa_only_breaks": int(np.count_nonzero(w & ~a)),
                     "ensemble_only_breaks": int(np.count_nonzero(~w & a)), "crosscheck_n": n})
    if not rows:  # no AutoAttack per-point rows: no columns
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[]] * len(keys), names=keys))
    return pd.DataFrame(rows).groupby(keys).sum().astype("Int64")


# ----------------------------------------------------------------------------- ranks

def rank_columns(board: pd.DataFrame, score: str, within: list[str]) -> pd.DataFrame:
    """``rank_lo``, ``rank_hi`` (best and worst rank the intervals allow) and ``tie_group``
    (1: the rows indistinguishable from the best) per group of ``within``, from the
    ``<score>_lo``/``<score>_hi`` interval; NA for rows without a score or an interval."""
    out = pd.DataFrame({c: pd.array([pd.NA] * len(board), dtype="Int64")
                        for c in ("rank_lo", "rank_hi", "tie_group")}, index=board.index)
    lo, hi = f"{score}_lo", f"{score}_hi"
    if lo not in board or hi not in board:
        return out
    ok = board[score].notna() & board[lo].notna() & board[hi].notna()
    for _, part in board[ok].groupby(within, sort=False):
        means, los, his = (part[c].astype(float).to_numpy() for c in (score, lo, hi))
        best, worst = rank_intervals(means, los, his)
        groups = tie_groups([str(i) for i in part.index], means, los, his)
        out.loc[part.index, "rank_lo"] = best
        out.loc[part.index, "rank_hi"] = worst
        out.loc[part.index, "tie_group"] = [groups[str(i)] for i in part.index]
    return out


# ----------------------------------------------------------------------------- exact counts

def deterministic_measures(runs: pd.DataFrame, keys: list[str],
                           measures: Iterable[str] = DETERMINISTIC_MEASURES) -> pd.Series:
    """Per group, the ``measures`` equal across its seeds, comma-separated (a measure no
    seed recorded is left out): these are shown as one value with no interval."""
    present = [m for m in measures if m in runs]

    def equal(group: pd.DataFrame) -> str:
        return ",".join(m for m in present if group[m].notna().any()
                        and deterministic(group[m].dropna().to_numpy(dtype=float)))

    if runs.empty:
        return pd.Series(dtype=object)
    return pd.Series({key: equal(group) for key, group in runs.groupby(keys, sort=True)},
                     dtype=object).rename_axis(keys)
