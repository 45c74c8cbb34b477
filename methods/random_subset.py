"""Random-subset ablation of CAPER: remove the same number of samples, chosen at random.

Source: CAPER (Ganesh et al., BMVC 2023) §4.2, Table 1 "Random" baseline. Everything but
the choice of samples matches ``caper`` (τ, γ, class balance, label smoothing), so the pair
isolates the effect of choosing samples by noise susceptibility.

Options (default — source): ``tau`` 0.25, ``gamma`` 0.05, ``class_balanced`` False,
``label_smoothing`` 0.1 — all as ``caper`` (see methods/caper.py).
"""
from __future__ import annotations

import torch

from bench.api import METHODS, TrainContext
from methods._data_pruning import SamplePruner


@METHODS.register()
class RandomSubset(SamplePruner):
    """Random-subset ablation: drop γ random samples at epoch τ (label-smoothed CE)."""

    name = "random_subset"
    citation = "Ganesh, Sekeh & Corso, BMVC 2023 (Random baseline)"

    def score(self, ctx: TrainContext, index: torch.Tensor) -> torch.Tensor:
        # Random scores from the run's generator: seeded, and no model passes are charged.
        return torch.rand(len(index), generator=ctx.generator, device=ctx.generator.device).to(index.device)
