"""Statistics for rankings and paper-claim verdicts, computed from per-point results.

The board stores, per run (one trained model: a method has one run per seed) and per
evaluation, which evaluation points were robust (bit 1) or not (0). The points are
indices into one fixed, nested subset of the test split: the first ``n`` points of one
permutation, so two evaluations with different ``n`` share their first ``min(n)`` points.

Everything here is numpy only (plus the standard library's ``statistics.NormalDist`` for
one normal quantile) and deterministic given ``seed``.

- :func:`worst_case`: per-point worst case over several attacks on one run.
- :func:`hierarchical_bootstrap_ci`: mean over seeds of each seed's mean, with the
  two-level (seeds, then points) bootstrap of Saravanan et al. 2020.
- :func:`paired_bootstrap`: the difference b − a of two methods on the same points and
  paired seeds, with a percentile interval and a two-sided bootstrap p-value;
  :func:`unpaired_bootstrap` the same where the points cannot be paired.
- :func:`verdict`: ``supported`` / ``contradicted`` / ``within noise`` from an interval
  (and, when given, an adjusted p-value).
- :func:`holm`: Holm–Bonferroni adjusted p-values.
- :func:`tie_groups` and :func:`rank_intervals`: what a ranking can claim given the CIs.
- :func:`binomial_ci` (Wilson) for a single run and attack; :func:`deterministic` for
  metrics that are equal across seeds (FLOPs) and get no interval.

Reference: V. Saravanan, G. J. Berman, S. J. Sober, "Application of the hierarchical
bootstrap to multi-level data in neuroscience", Neurons, Behavior, Data analysis, and
Theory 3(5), 2020.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
WITHIN_NOISE = "within noise"

# Pooled per-point values with at most this many distinct values (0/1 bits: 2, paired
# differences of bits: 3) are resampled exactly through their counts (a multinomial);
# anything else through index arrays.
_MAX_DISTINCT_FOR_COUNTS = 32
# Largest index array drawn at once on the index path (elements).
_CHUNK = 1 << 22


# ----------------------------------------------------------------------------- helpers

def _as_arrays(per_seed) -> list[np.ndarray]:
    """One float array per seed; a Mapping is read in its keys' sorted order."""
    if isinstance(per_seed, Mapping):
        per_seed = [per_seed[k] for k in sorted(per_seed)]
    arrays = [np.asarray(x, dtype=float).ravel() for x in per_seed]
    if not arrays:
        raise ValueError("no seeds")
    for i, x in enumerate(arrays):
        if x.size == 0:
            raise ValueError(f"seed {i} has no points")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"seed {i} has non-finite values")
    return arrays


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    lo, hi = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _resample_counts(arrays: list[np.ndarray], seed_idx: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray | None:
    """Resampled means, shape of ``seed_idx``, drawing each chosen seed's ``n`` points with
    replacement through its value counts: the counts of a resample of ``n`` points with
    replacement are Multinomial(n, observed frequencies), exactly. Drawn as a chain of
    conditional binomials (vectorised over all replicates). None when the pooled values
    have too many distinct values for this to pay off."""
    values = np.unique(np.concatenate(arrays))
    if values.size > _MAX_DISTINCT_FOR_COUNTS:
        return None
    counts = np.stack([np.bincount(np.searchsorted(values, x), minlength=values.size)
                       for x in arrays])                      # (S, V) integer counts
    sizes = counts.sum(axis=1)                                # (S,)
    # P(value v | not one of the values before v) = counts[v] / sum(counts[v:])
    tails = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]       # (S, V)
    cond = np.divide(counts, tails, out=np.zeros(counts.shape), where=tails > 0)
    remaining = sizes[seed_idx].astype(np.int64)              # points left to place
    total = np.zeros(seed_idx.shape)
    for v in range(values.size - 1):
        k = rng.binomial(remaining, np.clip(cond[seed_idx, v], 0.0, 1.0))
        total += k * values[v]
        remaining -= k
    total += remaining * values[-1]
    return total / sizes[seed_idx]


def _resample_indices(arrays: list[np.ndarray], seed_idx: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """Resampled means, shape of ``seed_idx``, by drawing point indices: for each seed
    (a loop over seeds only), all its resamples at once as one (count, n) index array,
    in chunks of at most ``_CHUNK`` elements."""
    out = np.empty(seed_idx.shape)
    flat_idx = seed_idx.ravel()
    flat_out = out.ravel()
    for s, x in enumerate(arrays):
        where = np.flatnonzero(flat_idx == s)
        rows = max(1, _CHUNK // x.size)
        for start in range(0, where.size, rows):
            part = where[start:start + rows]
            idx = rng.integers(0, x.size, size=(part.size, x.size))
            flat_out[part] = x[idx].mean(axis=1)
    return out


def _replicates(arrays: list[np.ndarray], n_boot: int, rng: np.random.Generator,
                resample: str) -> np.ndarray:
    """``n_boot`` two-level bootstrap replicates of the mean over seeds of seed means."""
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    if resample not in ("auto", "counts", "indices"):
        raise ValueError(f"resample must be 'auto', 'counts' or 'indices', got {resample!r}")
    n_seeds = len(arrays)
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))   # level 1: seeds
    means = None
    if resample in ("auto", "counts"):                            # level 2: points
        means = _resample_counts(arrays, seed_idx, rng)
        if means is None and resample == "counts":
            raise ValueError("too many distinct values for resample='counts'")
    if means is None:
        means = _resample_indices(arrays, seed_idx, rng)
    return means.mean(axis=1)


# ----------------------------------------------------------------------------- per-point

def worst_case(bits: Sequence[np.ndarray]) -> np.ndarray:
    """Per-point worst case over several attacks on the same run.

    A point is robust only if it is robust under every attack: the elementwise minimum
    (for 0/1 bits, the logical AND). The arrays may have different lengths (evaluations
    with different ``n``); since the evaluation subsets are nested (the first ``n``
    points of one permutation), the result covers the largest prefix they all share,
    ``min(len(b) for b in bits)`` points. The caller records that ``n`` (``len`` of the
    result). The dtype follows numpy's promotion of the inputs.
    """
    arrays = [np.asarray(b).ravel() for b in bits]
    if not arrays:
        raise ValueError("worst_case needs at least one array")
    n = min(a.size for a in arrays)
    return np.minimum.reduce([a[:n] for a in arrays])


# ----------------------------------------------------------------------------- bootstrap

def hierarchical_bootstrap_ci(per_seed, *, level: float = 0.95, n_boot: int = 2000,
                              seed: int = 0, resample: str = "auto"
                              ) -> tuple[float, float, float]:
    """Mean over seeds of each seed's mean, with a two-level bootstrap percentile interval.

    ``per_seed``: one 0/1 (or float) array per seed, each the per-point results of one
    run (a list, or a Mapping from seed to array, read in sorted key order). Seeds may
    have different numbers of points; each seed counts equally.

    Each bootstrap replicate draws ``S`` seeds with replacement from the ``S`` seeds, then,
    within each drawn seed, its ``n_s`` points with replacement, and takes the mean over
    the drawn seeds of their resampled means (the hierarchical bootstrap of Saravanan et
    al. 2020). The interval is the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the
    ``n_boot`` replicates. The hierarchical bootstrap is known to be somewhat conservative
    (it counts the point-level noise twice: once inside the spread of the seed means and
    once when resampling points); with few seeds the seed level has few distinct
    resamples (3 seeds: 10 multisets), so read its intervals as approximate.

    With one seed the seed level is trivial and this is the ordinary point bootstrap of
    that run's mean.

    Resampling is vectorised: ``resample="auto"`` (default) draws the resampled counts of
    each value directly when the data have few distinct values (0/1 bits: a
    Binomial(n, p) draw is exactly the number of ones in a resample of n points with
    replacement; in general a Multinomial), else index arrays; ``"counts"`` /
    ``"indices"`` force one path (the two are the same distribution).

    Returns ``(mean, lo, hi)``: the observed statistic and the interval.
    """
    _check_level(level)
    arrays = _as_arrays(per_seed)
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([x.mean() for x in arrays]))
    lo, hi = _interval(_replicates(arrays, n_boot, rng, resample), level)
    return estimate, lo, hi


def _pair(a_per_seed, b_per_seed) -> tuple[list, list]:
    """Pair seeds: by shared keys (sorted) for Mappings, else by position (the first
    ``min(len(a), len(b))`` seeds)."""
    if isinstance(a_per_seed, Mapping) and isinstance(b_per_seed, Mapping):
        keys = sorted(set(a_per_seed) & set(b_per_seed))
        return [a_per_seed[k] for k in keys], [b_per_seed[k] for k in keys]
    if isinstance(a_per_seed, Mapping) or isinstance(b_per_seed, Mapping):
        raise TypeError("pass both sides as Mappings (seed -> array) or both as sequences")
    m = min(len(a_per_seed), len(b_per_seed))
    return list(a_per_seed)[:m], list(b_per_seed)[:m]


def _p_value(replicates: np.ndarray, null: float) -> float:
    """Two-sided percentile-bootstrap p-value of ``difference = null``: see
    :func:`paired_bootstrap`."""
    n_boot = replicates.size
    below = (1 + np.count_nonzero(replicates <= null)) / (n_boot + 1)
    above = (1 + np.count_nonzero(replicates >= null)) / (n_boot + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def paired_bootstrap(a_per_seed, b_per_seed, *, level: float = 0.95, n_boot: int = 2000,
                     seed: int = 0, resample: str = "auto", null: float = 0.0) -> dict:
    """The difference b − a of two methods on the same points and paired seeds.

    Seed ``s`` of method a is paired with seed ``s`` of method b (sequences: by position;
    Mappings seed -> array: by key), and within a pair, point ``i`` of a with point ``i``
    of b (both index the same nested evaluation subset). Unequal inputs are truncated to
    what both share: the shared seeds (sequences: the first ``min(len(a), len(b))``;
    Mappings: the common keys), and within each pair the shared prefix of points
    (``min(len(a_s), len(b_s))``, valid because the subsets are nested).

    The statistic is the mean over pairs of the per-pair mean of ``b_s[i] − a_s[i]`` (equal
    to the difference of the two methods' means over seeds on the truncated data). Each
    replicate resamples pairs with replacement, then points within each drawn pair with
    replacement, jointly for a and b (the same point indices for both: that is the
    pairing, and it is exactly the hierarchical bootstrap of the per-point differences;
    see :func:`hierarchical_bootstrap_ci`).

    Returns a dict:

    - ``diff``: observed b − a; ``lo``, ``hi``: percentile interval at ``level``;
    - ``p``: two-sided bootstrap p-value of ``b − a = null`` (default 0)
      ``min(1, 2 · min((1 + #{d* ≤ null}) / (B + 1), (1 + #{d* ≥ null}) / (B + 1)))`` over
      the ``B = n_boot`` replicates ``d*``; the +1 counts the observed sample among the
      resamples, so p is never 0 (at least ``2 / (B + 1)``: raise ``n_boot`` when many
      tests are corrected together, see :func:`holm`). It is the percentile-interval
      p-value: the interval at level ``1 − p`` just reaches ``null``. A non-zero ``null``
      tests a margin (non-inferiority: is the difference beyond ``−tolerance``?);
    - ``n_seeds``: pairs used; ``n_points``: points used per pair (a list).
    """
    _check_level(level)
    a_list, b_list = _pair(a_per_seed, b_per_seed)
    if not a_list:
        raise ValueError("the two methods share no seeds")
    a_arr, b_arr = _as_arrays(a_list), _as_arrays(b_list)
    sizes = [min(a.size, b.size) for a, b in zip(a_arr, b_arr)]
    diffs = [b[:n] - a[:n] for a, b, n in zip(a_arr, b_arr, sizes)]
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([d.mean() for d in diffs]))
    reps = _replicates(diffs, n_boot, rng, resample)
    lo, hi = _interval(reps, level)
    return {"diff": estimate, "lo": lo, "hi": hi, "p": _p_value(reps, null),
            "n_seeds": len(diffs), "n_points": sizes}


def unpaired_bootstrap(a_per_seed, b_per_seed, *, level: float = 0.95, n_boot: int = 2000,
                       seed: int = 0, resample: str = "auto", null: float = 0.0) -> dict:
    """The difference b − a of two methods whose results cannot be paired point by point.

    For results without per-point data (only each run's accuracy and ``n``: pass
    ``round(acc · n)`` ones of ``n`` per seed) or one value per seed (timings: pass one
    one-element array per seed, and the point level is trivial: a bootstrap over seeds).
    Each side is resampled independently with the two-level bootstrap of
    :func:`hierarchical_bootstrap_ci` (its seeds, then its points), and each replicate of
    the difference is b's replicate minus a's. Seeds are not paired and sides may have
    different numbers of seeds and points. Without the pairing the interval is wider than
    :func:`paired_bootstrap`'s on the same models whenever the two methods agree on most
    points (the usual case), so prefer that one where per-point results exist.

    Returns the dict of :func:`paired_bootstrap` (``diff``, ``lo``, ``hi``, ``p`` against
    ``null``), with ``n_seeds`` and ``n_points`` as pairs ``(a's, b's)``: seed counts, and
    lists of points per seed.
    """
    _check_level(level)
    a_arr, b_arr = _as_arrays(a_per_seed), _as_arrays(b_per_seed)
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([x.mean() for x in b_arr]) - np.mean([x.mean() for x in a_arr]))
    reps = _replicates(b_arr, n_boot, rng, resample) - _replicates(a_arr, n_boot, rng, resample)
    lo, hi = _interval(reps, level)
    return {"diff": estimate, "lo": lo, "hi": hi, "p": _p_value(reps, null),
            "n_seeds": (len(a_arr), len(b_arr)),
            "n_points": ([x.size for x in a_arr], [x.size for x in b_arr])}


# ----------------------------------------------------------------------------- verdicts

def verdict(diff: float, lo: float, hi: float, expect: str, tolerance: float = 0.0, *,
            p: float | None = None, alpha: float = 0.05) -> str:
    """What an interval ``[lo, hi]`` for the difference (method − baseline) says of a claim.

    All quantities share one unit (fractions or points: the caller's choice).

    - ``expect="higher"``: ``supported`` when ``lo > 0``, ``contradicted`` when ``hi < 0``;
    - ``expect="lower"``: ``supported`` when ``hi < 0``, ``contradicted`` when ``lo > 0``;
    - ``expect="keep"`` (non-inferiority: "no worse than the baseline by more than
      ``tolerance``", for a higher-is-better metric): ``supported`` when
      ``lo > −tolerance``, ``contradicted`` when ``hi < −tolerance`` (surely worse by more
      than the tolerance). For a lower-is-better metric (costs) the caller flips signs:
      pass ``(−diff, −hi, −lo)``;
    - otherwise ``within noise`` (also when a bound is NaN).

    With ``p`` (the test's p-value, adjusted for multiplicity by the caller, e.g. with
    :func:`holm`), ``supported`` and ``contradicted`` also need ``p < alpha``; a NaN ``p``
    then gives ``within noise``. Without it the interval alone decides (an exact
    difference: pass ``lo = hi = diff``).

    ``diff`` is not used by the decision (the interval decides); it is accepted so callers
    can pass a result row whole. It is not checked against ``[lo, hi]``: a percentile
    interval may, rarely, not contain the observed value.
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    if expect not in ("higher", "lower", "keep"):
        raise ValueError(f"expect must be 'higher', 'lower' or 'keep', got {expect!r}")
    if p is not None and not p < alpha:  # NaN too
        return WITHIN_NOISE
    if expect == "higher":
        if lo > 0:
            return SUPPORTED
        if hi < 0:
            return CONTRADICTED
    elif expect == "lower":
        if hi < 0:
            return SUPPORTED
        if lo > 0:
            return CONTRADICTED
    elif expect == "keep":
        if lo > -tolerance:
            return SUPPORTED
        if hi < -tolerance:
            return CONTRADICTED
    return WITHIN_NOISE


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input's order.

    With the ``m`` non-NaN p-values sorted ascending, ``p_(1) ≤ … ≤ p_(m)``, the adjusted
    value of ``p_(i)`` is ``max_{j ≤ i} min(1, (m − j + 1) · p_(j))``: monotone in the raw
    p-values and capped at 1. Rejecting where the adjusted value is ≤ α controls the
    family-wise error rate at α. NaN entries stay NaN and do not count in ``m``. Ties keep
    their input order (a stable sort); tied raw values get equal adjusted values.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


# ----------------------------------------------------------------------------- rankings

def _ranking_inputs(means, los, his) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, lo, hi = (np.asarray(x, dtype=float).ravel() for x in (means, los, his))
    if not (m.shape == lo.shape == hi.shape):
        raise ValueError("means, los and his must have the same length")
    if np.any(np.isnan(m) | np.isnan(lo) | np.isnan(hi)):
        raise ValueError("NaN mean or bound: leave methods without results out")
    if np.any(lo > hi):
        raise ValueError("every lo must be <= its hi")
    return m, lo, hi


def tie_groups(names: Sequence[str], means, los, his) -> dict[str, int]:
    """Groups of methods a ranking cannot tell apart: ``{name: group}``, groups 1, 2, ….

    Methods are ordered by mean, descending (ties keep input order). Greedy from the top:
    a group starts at the best method not yet in a group (its leader); every method not
    yet in a group whose ``hi ≥`` the leader's ``lo`` (its interval reaches the leader's)
    joins it. Repeat until every method has a group. Group 1 is the set of methods
    indistinguishable from the best one.

    Membership is decided against the leader only, so a group may skip a method: a
    narrow-CI method ranked just below a group may start the next group while a wide-CI
    method further down joined the earlier one. Group numbers therefore need not be
    monotone along the ranking.
    """
    names = list(names)
    m, lo, hi = _ranking_inputs(means, los, his)
    if len(names) != m.size:
        raise ValueError("names and means must have the same length")
    if len(set(names)) != len(names):
        raise ValueError("names must be unique")
    order = np.argsort(-m, kind="stable")
    group = np.zeros(m.size, dtype=int)
    current = 0
    for leader in order:
        if group[leader]:
            continue
        current += 1
        for j in order:
            if not group[j] and hi[j] >= lo[leader]:
                group[j] = current
    return {name: int(g) for name, g in zip(names, group)}


def rank_intervals(means, los, his) -> tuple[np.ndarray, np.ndarray]:
    """Each method's best and worst possible rank (1 = top, higher is better) given its CI.

    ``best[i] = 1 + #{j : lo_j > hi_i}``: only the methods surely above it (their whole
    interval above its whole interval) must rank ahead of it.
    ``worst[i] = #{j : hi_j ≥ lo_i}`` (``j = i`` included): every method that might be at
    least as good could rank ahead of it.

    Returns two int arrays in input order. ``means`` does not enter the bounds (only the
    intervals do); it is accepted for a signature uniform with :func:`tie_groups` and
    validated alongside. A method with the point-estimate rank ``r`` has
    ``best ≤ r ≤ worst`` whenever each mean lies in its own interval.
    """
    _, lo, hi = _ranking_inputs(means, los, his)
    best = 1 + (lo[None, :] > hi[:, None]).sum(axis=1)
    worst = (hi[None, :] >= lo[:, None]).sum(axis=1)
    return best.astype(int), worst.astype(int)


# ----------------------------------------------------------------------------- one run

def binomial_ci(k, n, level: float = 0.95):
    """Wilson score interval for ``k`` successes in ``n`` trials: ``(p̂, lo, hi)``.

    For single-run, single-attack rows (one seed: no seed-to-seed spread to resample).
    With ``z`` the two-sided normal quantile at ``level``:
    centre ``(p̂ + z²/2n) / (1 + z²/n)``, half-width
    ``z / (1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/4n²)``. Unlike the Wald interval it stays in
    [0, 1] and is not degenerate at ``k = 0`` or ``k = n``. Broadcasts over array
    inputs (then returns arrays); ``n = 0`` gives NaNs.
    """
    _check_level(level)
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError("need 0 <= k <= n")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k_arr / n_arr
        denom = 1.0 + z * z / n_arr
        centre = (p + z * z / (2.0 * n_arr)) / denom
        half = z / denom * np.sqrt(p * (1.0 - p) / n_arr + z * z / (4.0 * n_arr * n_arr))
        # exact endpoints at k = 0 and k = n (the formula gives them up to rounding)
        lo = np.where(k_arr == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
        hi = np.where(k_arr == n_arr, 1.0, np.clip(centre + half, 0.0, 1.0))
        lo, hi = np.where(n_arr == 0, np.nan, lo), np.where(n_arr == 0, np.nan, hi)
    if p.ndim == 0:
        return float(p), float(lo), float(hi)
    return p, lo, hi


def deterministic(values, *, rtol: float = 0.0, atol: float = 0.0) -> bool:
    """Whether a metric is the same for every seed (FLOPs-like measures): such a metric is
    reported as one value with no interval.

    True when all values equal the first within ``atol + rtol·|first|`` (default: exactly
    equal); a single value is deterministic; NaN is never equal to anything, so any NaN
    gives False. Empty input raises.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("no values")
    if np.any(np.isnan(v)):
        return False
    return bool(np.all(np.abs(v - v[0]) <= atol + rtol * abs(v[0])))
