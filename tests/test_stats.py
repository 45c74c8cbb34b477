"""bench.views.stats: known answers for the statistics behind rankings and claim verdicts.

Every random draw has a fixed seed, so each test is deterministic; the simulation settings
were chosen so that the asserted rates sit well inside their bounds (checked over many
more repetitions than the tests run)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.views.stats import (
    binomial_ci,
    deterministic,
    hierarchical_bootstrap_ci,
    holm,
    paired_bootstrap,
    rank_intervals,
    tie_groups,
    unpaired_bootstrap,
    verdict,
    worst_case,
)


def bits_with_mean(rng: np.random.Generator, n: int, ones: int) -> np.ndarray:
    """A 0/1 array of length n with exactly ``ones`` ones, in random order."""
    x = np.zeros(n, dtype=np.uint8)
    x[rng.choice(n, size=ones, replace=False)] = 1
    return x


# ----------------------------------------------------------------------------- worst_case

def test_worst_case_nested_different_lengths():
    a = np.array([1, 1, 0, 1, 1, 0], dtype=np.uint8)
    b = np.array([1, 0, 1, 1], dtype=np.uint8)          # evaluated on the first 4 only
    c = np.array([1, 1, 1, 1, 0], dtype=np.uint8)
    out = worst_case([a, b, c])
    assert out.tolist() == [1, 0, 0, 1]
    assert len(out) == 4                                  # the caller records n = 4
    assert worst_case([a]).tolist() == a.tolist()
    with pytest.raises(ValueError):
        worst_case([])


def test_worst_case_bool_is_logical_and():
    a = np.array([True, True, False])
    b = np.array([True, False, False, True])
    assert worst_case([a, b]).tolist() == [True, False, False]


# ----------------------------------------------------------------------------- hierarchical

def test_hierarchical_ci_widens_when_seeds_disagree():
    rng = np.random.default_rng(0)
    agree = [bits_with_mean(rng, 1000, 600) for _ in range(3)]
    disagree = [bits_with_mean(rng, 1000, k) for k in (500, 600, 700)]
    m1, lo1, hi1 = hierarchical_bootstrap_ci(agree, seed=1)
    m2, lo2, hi2 = hierarchical_bootstrap_ci(disagree, seed=1)
    assert m1 == pytest.approx(0.6) and m2 == pytest.approx(0.6)
    assert lo1 < 0.6 < hi1 and lo2 < 0.6 < hi2
    assert (hi2 - lo2) > 2.5 * (hi1 - lo1)


def test_one_seed_is_the_point_bootstrap():
    """One seed: the interval matches the normal approximation of a binomial mean."""
    rng = np.random.default_rng(2)
    x = bits_with_mean(rng, 2000, 700)
    m, lo, hi = hierarchical_bootstrap_ci([x], n_boot=4000, seed=3)
    se = np.sqrt(0.35 * 0.65 / 2000)
    assert m == pytest.approx(0.35)
    assert lo == pytest.approx(0.35 - 1.96 * se, abs=0.004)
    assert hi == pytest.approx(0.35 + 1.96 * se, abs=0.004)


def test_counts_and_indices_paths_agree():
    """The binomial/multinomial shortcut is the same distribution as index resampling."""
    rng = np.random.default_rng(4)
    per_seed = [bits_with_mean(rng, 800, k) for k in (300, 360, 420)]
    _, lo_c, hi_c = hierarchical_bootstrap_ci(per_seed, n_boot=4000, seed=5, resample="counts")
    _, lo_i, hi_i = hierarchical_bootstrap_ci(per_seed, n_boot=4000, seed=5, resample="indices")
    assert lo_c == pytest.approx(lo_i, abs=0.01)
    assert hi_c == pytest.approx(hi_i, abs=0.01)


def test_float_data_and_mapping_input():
    rng = np.random.default_rng(6)
    per_seed = {s: rng.normal(0.3, 1.0, size=500) for s in (2, 0, 1)}
    m, lo, hi = hierarchical_bootstrap_ci(per_seed, seed=0)   # > 32 distinct: index path
    assert m == pytest.approx(np.mean([per_seed[s].mean() for s in per_seed]))
    assert lo < m < hi
    # same seed, same answer
    assert hierarchical_bootstrap_ci(per_seed, seed=0) == (m, lo, hi)


def test_hierarchical_coverage():
    """Seeds with their own accuracy (sd 2 points around 0.6), points Bernoulli: the 95%
    interval covers the true mean in 90–99% of 200 simulated experiments (≈94% over
    2000)."""
    rng = np.random.default_rng(7)
    reps, seeds, n, p, tau = 200, 5, 1000, 0.6, 0.02
    mu = p + tau * rng.standard_normal((reps, seeds))
    bits = (rng.random((reps, seeds, n)) < mu[..., None]).astype(np.uint8)
    covered = 0
    for r in range(reps):
        _, lo, hi = hierarchical_bootstrap_ci(list(bits[r]), seed=r)
        covered += lo <= p <= hi
    assert 0.90 <= covered / reps <= 0.99


def test_bad_inputs():
    with pytest.raises(ValueError):
        hierarchical_bootstrap_ci([])
    with pytest.raises(ValueError):
        hierarchical_bootstrap_ci([np.array([])])
    with pytest.raises(ValueError):
        hierarchical_bootstrap_ci([np.array([0.0, np.nan])])
    with pytest.raises(ValueError):
        hierarchical_bootstrap_ci([np.ones(3)], level=1.0)


# ----------------------------------------------------------------------------- paired

def test_planted_difference_is_found():
    """b = a with 50 of each seed's 1000 points flipped to robust: +5 points."""
    rng = np.random.default_rng(10)
    a = [bits_with_mean(rng, 1000, 500) for _ in range(3)]
    b = []
    for x in a:
        y = x.copy()
        y[rng.choice(np.flatnonzero(x == 0), size=50, replace=False)] = 1
        b.append(y)
    res = paired_bootstrap(a, b, seed=0)
    assert res["diff"] == pytest.approx(0.05)
    assert res["lo"] > 0
    assert res["p"] == pytest.approx(2 / 2001)            # no replicate at or below 0
    assert verdict(res["diff"], res["lo"], res["hi"], "higher") == "supported"
    assert verdict(res["diff"], res["lo"], res["hi"], "lower") == "contradicted"
    # the other way round, the verdicts flip
    rev = paired_bootstrap(b, a, seed=0)
    assert rev["diff"] == pytest.approx(-0.05) and rev["hi"] < 0


def test_planted_difference_independent_draws():
    """b drawn independently with 5 points more (0.55 vs 0.50): still found."""
    rng = np.random.default_rng(11)
    a = [(rng.random(1000) < 0.50).astype(np.uint8) for _ in range(3)]
    b = [(rng.random(1000) < 0.55).astype(np.uint8) for _ in range(3)]
    res = paired_bootstrap(a, b, seed=0)
    assert res["lo"] > 0
    assert verdict(res["diff"], res["lo"], res["hi"], "higher") == "supported"


def test_two_samples_of_one_model_are_within_noise():
    rng = np.random.default_rng(12)
    a = [(rng.random(1000) < 0.6).astype(np.uint8) for _ in range(3)]
    b = [(rng.random(1000) < 0.6).astype(np.uint8) for _ in range(3)]
    res = paired_bootstrap(a, b, seed=0)
    assert res["lo"] < 0 < res["hi"]
    assert res["p"] > 0.05
    assert verdict(res["diff"], res["lo"], res["hi"], "higher") == "within noise"


def test_false_positive_rate():
    """50 repetitions of two independent samples of one model: the 95% paired interval
    excludes 0 in at most 10% of them (the hierarchical bootstrap is conservative)."""
    rng = np.random.default_rng(13)
    reps = 50
    a = (rng.random((reps, 3, 1000)) < 0.6).astype(np.uint8)
    b = (rng.random((reps, 3, 1000)) < 0.6).astype(np.uint8)
    results = [paired_bootstrap(list(a[r]), list(b[r]), seed=r) for r in range(reps)]
    positives = sum(not (res["lo"] <= 0 <= res["hi"]) for res in results)
    assert positives / reps <= 0.10
    small_p = sum(res["p"] < 0.05 for res in results)
    assert small_p / reps <= 0.10


def test_paired_beats_unpaired():
    """b = a with 2% of points flipped to robust: the paired interval of b − a is much
    narrower than what the two methods' separate intervals allow."""
    rng = np.random.default_rng(14)
    a = [(rng.random(1000) < 0.5).astype(np.uint8) for _ in range(3)]
    b = []
    for x in a:
        y = x.copy()
        y[rng.choice(np.flatnonzero(x == 0), size=20, replace=False)] = 1
        b.append(y)
    res = paired_bootstrap(a, b, seed=0)
    _, lo_a, hi_a = hierarchical_bootstrap_ci(a, seed=1)
    _, lo_b, hi_b = hierarchical_bootstrap_ci(b, seed=2)
    paired_width = res["hi"] - res["lo"]
    unpaired_width = np.hypot(hi_a - lo_a, hi_b - lo_b)    # independent errors add in quadrature
    assert paired_width < 0.35 * unpaired_width
    assert res["lo"] > 0                                   # +2 points is found paired...
    assert lo_b < hi_a                                     # ...not by overlapping CIs


def test_paired_truncates_to_shared_seeds_and_points():
    a = [np.array([1, 0, 1, 1, 0]), np.array([0, 0, 1, 1]), np.array([1, 1])]
    b = [np.array([1, 1, 1]), np.array([1, 0, 1, 1, 1, 1])]
    res = paired_bootstrap(a, b, seed=0, n_boot=200)
    assert res["n_seeds"] == 2 and res["n_points"] == [3, 4]
    # pair 0: (1,1,1) − (1,0,1) = 1/3; pair 1: (1,0,1,1) − (0,0,1,1) = 1/4
    assert res["diff"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    # Mappings pair by key
    res_m = paired_bootstrap({7: a[0], 3: a[1]}, {3: b[1], 9: b[0]}, seed=0, n_boot=200)
    assert res_m["n_seeds"] == 1 and res_m["diff"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        paired_bootstrap({1: a[0]}, {2: b[0]})


def test_identical_methods_p_is_one():
    x = [np.array([1, 0, 1, 1]), np.array([0, 1, 1, 0])]
    res = paired_bootstrap(x, [v.copy() for v in x], n_boot=100)
    assert res["diff"] == 0 and res["lo"] == 0 and res["hi"] == 0 and res["p"] == 1.0


def test_p_against_a_margin():
    """A non-zero null tests a margin: a difference of about −0.5 point is surely not 0 but
    also surely not −2 points, and is no evidence against −0.5."""
    rng = np.random.default_rng(5)
    a = [bits_with_mean(rng, 1000, 600) for _ in range(3)]
    b = []
    for x in a:
        y = x.copy()
        y[rng.choice(np.flatnonzero(x), 5, replace=False)] = 0
        b.append(y)
    assert paired_bootstrap(a, b, null=0.0)["p"] < 0.01
    assert paired_bootstrap(a, b, null=-0.02)["p"] < 0.01
    assert paired_bootstrap(a, b, null=-0.005)["p"] > 0.5


def test_unpaired_bootstrap_finds_a_planted_difference_and_not_a_null_one():
    rng = np.random.default_rng(6)
    a = [bits_with_mean(rng, 1000, 600) for _ in range(3)]
    b = [bits_with_mean(rng, 1000, 650) for _ in range(3)]
    res = unpaired_bootstrap(a, b)
    assert res["diff"] == pytest.approx(0.05) and 0 < res["lo"] < 0.05 < res["hi"]
    assert res["p"] < 0.01 and res["n_seeds"] == (3, 3)
    same = unpaired_bootstrap(a, [bits_with_mean(rng, 1000, 600) for _ in range(2)])
    assert same["diff"] == 0 and same["lo"] < 0 < same["hi"] and same["p"] > 0.5
    assert same["n_seeds"] == (3, 2) and same["n_points"] == ([1000] * 3, [1000] * 2)


# ----------------------------------------------------------------------------- verdict

def test_verdict_with_an_adjusted_p():
    assert verdict(1.0, 0.2, 1.8, "higher", p=0.01) == "supported"
    assert verdict(1.0, 0.2, 1.8, "higher", p=0.06) == "within noise"
    assert verdict(-1.0, -1.8, -0.2, "higher", p=0.049) == "contradicted"
    assert verdict(-1.0, -1.8, -0.2, "higher", p=np.nan) == "within noise"
    assert verdict(-0.5, -0.8, -0.2, "keep", tolerance=1.0, p=0.2) == "within noise"


def test_keep_non_inferiority():
    assert verdict(-0.5, -1.5, 0.5, "keep", tolerance=1.0) == "within noise"
    assert verdict(-0.5, -0.8, -0.2, "keep", tolerance=1.0) == "supported"
    assert verdict(-2.0, -2.5, -1.5, "keep", tolerance=1.0) == "contradicted"
    assert verdict(0.3, 0.1, 0.5, "keep", tolerance=0.0) == "supported"


def test_verdict_higher_lower():
    assert verdict(1.0, 0.2, 1.8, "higher") == "supported"
    assert verdict(-1.0, -1.8, -0.2, "higher") == "contradicted"
    assert verdict(0.5, -0.2, 1.2, "higher") == "within noise"
    assert verdict(-1.0, -1.8, -0.2, "lower") == "supported"
    assert verdict(1.0, 0.2, 1.8, "lower") == "contradicted"
    assert verdict(0.0, 0.0, 1.0, "higher") == "within noise"   # touching 0 is not excluding
    assert verdict(np.nan, np.nan, np.nan, "higher") == "within noise"
    with pytest.raises(ValueError):
        verdict(0, 0, 0, "better")
    with pytest.raises(ValueError):
        verdict(0, 0, 0, "keep", tolerance=-1)


# ----------------------------------------------------------------------------- holm

def test_holm_hand_example():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_nan_and_cap():
    out = holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(out[1])
    assert out[[0, 2, 3, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]).size == 0 and np.isnan(holm([np.nan])).all()
    ps = np.random.default_rng(15).random(20)
    adj = holm(ps)
    order = np.argsort(ps)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= ps) and np.all(adj <= 1)


# ----------------------------------------------------------------------------- rankings

# A hand example, in percent:
#   A 80 [78, 82]   B 79 [76, 81]   C 75 [74.5, 75.5]   D 74 [70, 78]   E 60 [58, 62]
# Group 1 (leader A, lo 78): B (81 ≥ 78) and D (78 ≥ 78) join; C (75.5) does not.
# Group 2 (leader C, lo 74.5): nothing left but E (62): C alone. Group 3: E.
NAMES = ["B", "E", "A", "D", "C"]
MEANS = [79, 60, 80, 74, 75]
LOS = [76, 58, 78, 70, 74.5]
HIS = [81, 62, 82, 78, 75.5]


def test_tie_groups_hand_example():
    assert tie_groups(NAMES, MEANS, LOS, HIS) == {"A": 1, "B": 1, "D": 1, "C": 2, "E": 3}


def test_tie_groups_all_distinct_and_all_tied():
    assert tie_groups(["x", "y"], [2, 1], [1.9, 0.9], [2.1, 1.1]) == {"x": 1, "y": 2}
    assert tie_groups(["x", "y"], [2, 1], [0, 0], [3, 3]) == {"x": 1, "y": 1}
    with pytest.raises(ValueError):
        tie_groups(["x"], [np.nan], [0], [1])


def test_rank_intervals_hand_example():
    best, worst = rank_intervals(MEANS, LOS, HIS)
    by = dict(zip(NAMES, zip(best.tolist(), worst.tolist())))
    # A: nobody surely above; A, B, D reach 78 → ranks 1..3
    # B: nobody's lo > 81; A, B, D reach 76 → 1..3
    # C: A, B surely above (lo 78, 76 > 75.5); A, B, C, D reach 74.5 → 3..4
    # D: nobody's lo > 78 (A's is 78, not above); A, B, C, D reach 70 → 1..4
    # E: A, B, C, D surely above → 5..5
    assert by == {"A": (1, 3), "B": (1, 3), "C": (3, 4), "D": (1, 4), "E": (5, 5)}
    ranked = sorted(NAMES, key=lambda n: -MEANS[NAMES.index(n)])
    point_rank = {n: r for r, n in enumerate(ranked, 1)}
    assert all(by[n][0] <= point_rank[n] <= by[n][1] for n in NAMES)


# ----------------------------------------------------------------------------- one run

def test_wilson_known_values():
    p, lo, hi = binomial_ci(0, 10)
    assert (p, lo) == (0.0, 0.0) and hi == pytest.approx(0.2775, abs=1e-4)
    p, lo, hi = binomial_ci(5, 10)
    assert p == 0.5
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    p, lo, hi = binomial_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-4)
    p, lo, hi = binomial_ci(np.array([0, 5]), np.array([10, 10]))
    assert lo.tolist()[0] == 0.0 and hi[1] == pytest.approx(0.7634, abs=1e-4)
    assert all(np.isnan(v) for v in binomial_ci(0, 0))
    with pytest.raises(ValueError):
        binomial_ci(11, 10)


def test_wilson_narrower_at_lower_level():
    _, lo95, hi95 = binomial_ci(600, 1000)
    _, lo80, hi80 = binomial_ci(600, 1000, level=0.80)
    assert lo95 < lo80 < 0.6 < hi80 < hi95


def test_deterministic():
    assert deterministic([1.2e9, 1.2e9, 1.2e9])
    assert deterministic([5.0])
    assert not deterministic([1.2e9, 1.2e9 + 1])
    assert deterministic([1.0, 1.0 + 1e-12], rtol=1e-9)
    assert not deterministic([1.0, np.nan])
    with pytest.raises(ValueError):
        deterministic([])
