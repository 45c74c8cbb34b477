"""One metric's difference between two methods on one (dataset, arch), with the test the
data allow (docs/conventions.md#comparisons-and-claims).

:func:`difference` takes each method's ``per_run_metrics`` rows and the ``Evidence``
behind them (bench.views.evidence) and picks, in this order, the first test that applies;
its name is the result's ``test``:

- ``deterministic`` (:data:`EXACT`): FLOPs and parameter counts that are equal across
  each side's seeds (``stats.deterministic``; two seeds a side at least) have no sampling
  error: the exact difference, no interval (``lo = hi = diff``) and no p-value.
- ``paired bootstrap`` (:data:`PAIRED`): an accuracy with per-point bits for every run on
  the seeds both methods share: ``stats.paired_bootstrap``, seed ``s`` of A with seed
  ``s`` of B and point ``i`` with point ``i``, on each pair's shared prefix of points.
- ``unpaired (no per-point results)`` (:data:`UNPAIRED`): an accuracy whose runs (some of
  them) have no bits but whose point counts are known: each run's value as
  ``round(acc · n)`` ones of ``n``, each side resampled on its own
  (``stats.unpaired_bootstrap``, two levels: seeds, then points).
- ``unpaired bootstrap over seeds`` (:data:`SEEDS`): anything else that varies by seed
  (training seconds, latency, mCE; an accuracy without point counts): one value per
  seed, each side's seeds resampled on its own. It needs two seeds on each side. With few
  seeds the bootstrap has few distinct resamples, so its interval is approximate and its
  p-value is raised to at least the smallest the exact permutation test of those seeds can
  give, ``2 / C(n_a + n_b, n_a)``: 0.1 for 3 seeds against 3 (never significant), 0.008
  for 5 against 5.

Every bootstrap uses the fixed seed :data:`BOOT_SEED`, so the output is deterministic, and
:data:`N_BOOT` replicates, so that the smallest p-value, ``2 / (N_BOOT + 1)``, survives a
Holm correction over a few hundred tests. Side means and intervals are over the data the
test used (for a paired test, the shared seeds and points), so ``b − a`` is ``diff``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.views.columns import column, higher_is_better, is_percent
from bench.views.evidence import Evidence
from bench.views.points import by_seed
from bench.views.stats import (
    deterministic,
    hierarchical_bootstrap_ci,
    paired_bootstrap,
    unpaired_bootstrap,
)

PAIRED = "paired bootstrap"
UNPAIRED = "unpaired (no per-point results)"
SEEDS = "unpaired bootstrap over seeds"
EXACT = "deterministic"
SHORT = {PAIRED: "paired", UNPAIRED: "unpaired", SEEDS: "seeds", EXACT: "exact"}
N_BOOT = 10_000
BOOT_SEED = 0
LEVEL = 0.95

_NAN = math.nan


def is_accuracy(metric: str) -> bool:
    """A fraction of points (clean, robust, corruption accuracy): its uncertainty comes from
    the points as well as the seeds. mCE reads as a percentage but is a ratio of errors."""
    return is_percent(metric) and higher_is_better(metric)


def counted(metric: str) -> bool:
    """FLOPs and parameter counts: exact wherever they do not vary by seed."""
    col = column(metric)
    return col is not None and col.format in ("flops", "count")


def difference(metric: str, a: pd.DataFrame, b: pd.DataFrame, evidence: Evidence | None = None,
               *, null: float = 0.0, level: float = LEVEL, n_boot: int = N_BOOT,
               seed: int = BOOT_SEED) -> dict:
    """B − A on ``metric``: each side's mean and interval, the difference, its interval and
    two-sided p-value against ``null`` (a margin, for non-inferiority), the seeds and points
    the test used, and the test's name (see the module docstring).

    ``a`` and ``b``: ``per_run_metrics`` rows (run_id, seed, ``metric``) of each method at
    one (dataset, arch); rows where ``metric`` is missing are left out. Raises ValueError
    when a side has none.
    """
    a = a[a[metric].notna()]
    b = b[b[metric].notna()]
    if a.empty or b.empty:
        raise ValueError(f"{metric}: no values on {'both sides' if a.empty and b.empty else 'one side'}")
    va, vb = a[metric].astype(float).to_numpy(), b[metric].astype(float).to_numpy()
    kw = {"level": level, "n_boot": n_boot, "seed": seed}
    out = {"a_seeds": len(a), "b_seeds": len(b)}
    # Two seeds a side at least: one value says nothing of whether the next seed repeats it.
    if counted(metric) and min(va.size, vb.size) >= 2 and deterministic(va) and deterministic(vb):
        return {**out, **_exact(va[0], vb[0], min(len(a), len(b)))}
    if evidence is not None and is_accuracy(metric):
        paired = _paired(metric, a, b, evidence, null, kw)
        if paired is not None:
            return {**out, **paired}
        sizes = (evidence.sizes_of(metric, a["run_id"]), evidence.sizes_of(metric, b["run_id"]))
        if sizes[0] is not None and sizes[1] is not None:
            return {**out, **_from_counts(a, b, metric, sizes, null, kw)}
    return {**out, **_over_seeds(va, vb, null, kw)}


def _result(side_a, side_b, res, n_seeds, n_points, test) -> dict:
    return {"a": side_a[0], "a_lo": side_a[1], "a_hi": side_a[2],
            "b": side_b[0], "b_lo": side_b[1], "b_hi": side_b[2],
            "diff": res["diff"], "lo": res["lo"], "hi": res["hi"], "p": res["p"],
            "n_seeds": n_seeds, "n_points": n_points, "test": test}


def _exact(a: float, b: float, n_seeds: int) -> dict:
    d = b - a
    return _result((a, a, a), (b, b, b), {"diff": d, "lo": d, "hi": d, "p": _NAN}, n_seeds,
                   None, EXACT)


def _paired(metric, a, b, evidence, null, kw) -> dict | None:
    """The paired test, or None where a run on the shared seeds has no bits."""
    shared = sorted(set(a["seed"]) & set(b["seed"]))
    a_on, b_on = a[a["seed"].isin(shared)], b[b["seed"].isin(shared)]
    a_bits, b_bits = (evidence.bits_of(metric, a_on["run_id"]),
                      evidence.bits_of(metric, b_on["run_id"]))
    if not shared or a_bits is None or b_bits is None:
        return None
    a_seed, b_seed = by_seed(a_bits, a_on), by_seed(b_bits, b_on)
    n = {s: min(a_seed[s].size, b_seed[s].size) for s in shared}
    a_cut = [a_seed[s][:n[s]] for s in shared]
    b_cut = [b_seed[s][:n[s]] for s in shared]
    res = paired_bootstrap(a_cut, b_cut, null=null, **kw)
    return _result(hierarchical_bootstrap_ci(a_cut, **kw), hierarchical_bootstrap_ci(b_cut, **kw),
                   res, res["n_seeds"], min(res["n_points"]), PAIRED)


def _as_counts(values, sizes) -> list[np.ndarray]:
    """Each run's accuracy as ``round(acc · n)`` ones of ``n``: what a bootstrap of its
    points would resample, had they been stored."""
    out = []
    for acc, n in zip(values, sizes):
        k = min(n, max(0, round(float(acc) * n)))
        out.append(np.r_[np.ones(k), np.zeros(n - k)])
    return out


def _from_counts(a, b, metric, sizes, null, kw) -> dict:
    a_pts = _as_counts(a[metric], [sizes[0][r] for r in a["run_id"]])
    b_pts = _as_counts(b[metric], [sizes[1][r] for r in b["run_id"]])
    res = unpaired_bootstrap(a_pts, b_pts, null=null, **kw)
    n_points = min(x.size for x in (*a_pts, *b_pts))
    return _result(hierarchical_bootstrap_ci(a_pts, **kw), hierarchical_bootstrap_ci(b_pts, **kw),
                   res, min(res["n_seeds"]), n_points, UNPAIRED)


def _over_seeds(va: np.ndarray, vb: np.ndarray, null, kw) -> dict:
    n_seeds = min(va.size, vb.size)
    if n_seeds < 2:  # no spread to resample on one side: a mean, nothing more
        d = float(vb.mean() - va.mean())
        return _result((va.mean(), _NAN, _NAN), (vb.mean(), _NAN, _NAN),
                       {"diff": d, "lo": _NAN, "hi": _NAN, "p": _NAN}, n_seeds, None, SEEDS)
    a_pts, b_pts = [[v] for v in va], [[v] for v in vb]
    res = unpaired_bootstrap(a_pts, b_pts, null=null, **kw)
    # With a few seeds the bootstrap has few distinct resamples and calls completely
    # separated groups certain; no test of the seed values can be surer than the exact
    # permutation test, whose smallest two-sided p splits the pooled seeds every way.
    res["p"] = max(res["p"], min(1.0, 2 / math.comb(va.size + vb.size, va.size)))
    return _result(hierarchical_bootstrap_ci(a_pts, **kw), hierarchical_bootstrap_ci(b_pts, **kw),
                   res, n_seeds, None, SEEDS)
