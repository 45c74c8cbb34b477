"""The bootstrap's cost at the leaderboard's scale (3 seeds x 1,000 points x 2,000
resamples), as pytest-benchmark benchmarks (`tox -e bench`). Reported, not gated."""
from __future__ import annotations

import numpy as np
import pytest

from bench.views.stats import hierarchical_bootstrap_ci, paired_bootstrap

pytestmark = pytest.mark.bench
RNG = np.random.default_rng(8)
BITS = [(RNG.random(1000) < 0.6).astype(np.uint8) for _ in range(3)]
FLOATS = [RNG.random(1000) for _ in range(3)]


def test_hierarchical_bootstrap_bits(benchmark):
    benchmark(hierarchical_bootstrap_ci, BITS)


def test_paired_bootstrap_bits(benchmark):
    benchmark(paired_bootstrap, BITS, BITS[::-1])


def test_hierarchical_bootstrap_floats(benchmark):
    benchmark(hierarchical_bootstrap_ci, FLOATS)
