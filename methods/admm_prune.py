"""Robust pruning with ADMM: adversarial training under a weight-sparsity constraint.

Source: Marshall, "Robust Convolutional Neural Networks with Resource Constraints", MSc
thesis, Grenoble 2020, §3–3.2.1 and §4 "Experimental Training Parameters"
(docs/methods.md#admm_prune); Ye et al., "Adversarial
Robustness vs. Model Compression, or Both?", ICCV 2019, and its public code
(Robustness-Aware-Pruning-ADMM) for the schedule the thesis leaves open.

Objective (thesis Eq. 4–6): the base's adversarial loss subject to W ∈ S, split by ADMM
into weights W, an auxiliary Z ∈ S and a scaled dual U (Ye et al.'s form):
  loss += Σ_layers ρ/2 ‖W − Z + U‖²                        (``extra_loss``, every step)
  Z ← Π_S(W + U);  U ← U + W − Z;  ρ ← 1.3·ρ               (``after_step``, a few times)
Z₀ = Π_S(W₀) and U₀ = 0 at the start (Ye et al.'s ``admm_initialization``). As in Ye et
al.'s code U is not rescaled when ρ grows.

Phases inside the grid's epoch budget E (ours; Ye et al. run ADMM and retraining as two
separate 200-epoch stages from a pretrained model):
1. ADMM for the first A = round(admm_fraction·E) epochs (at least 1, at most E), with
   ``updates`` Z/U updates spaced evenly over its steps (at most one per step).
2. At epoch A: hard prune W ← Π_S(W) and fix the mask (Ye et al.'s ``masking``).
3. Masked retraining for the remaining E − A epochs: pruned gradients are zeroed before
   each optimizer step and the mask is re-applied after it, because momentum and weight
   decay would otherwise revive pruned weights. With A = E the prune happens at the end.

Prunable layers: the weights of every ``nn.Conv2d`` and ``nn.Linear`` (never biases or
BatchNorm). Both sources prune the first conv and the classifier under irregular pruning
(the thesis counts k over all the network's parameters, §4 footnote 1; Ye et al.'s LeNet
config prunes conv1 and fc2), but their structured configs prune convolutions only —
dropping whole rows of the classifier would delete classes. Hence the defaults below.

Π_S per ``scheme`` (keep = fraction of weights kept):
- ``irregular`` (thesis default, §3 Eq. 6): per layer, the round(keep·n) weights of
  largest magnitude.
- ``filter`` (Ye et al.): per layer, the round(keep·F) output filters (weight rows) of
  largest L2 norm.
- ``funnel`` (thesis §3.2.1: each layer pruned proportionally more than the one before):
  irregular pruning with per-layer keep fractions k_i = min(1, c·s_i), where layer i of L
  (in ``named_modules`` order) has slope s_i = 1 + spread·(1 − 2i/(L−1)) — falling linearly
  from 1+spread to 1−spread — and c is solved so that Σ k_i·n_i = keep·Σ n_i. Counts are
  rounded by largest remainder, so the whole model keeps exactly round(keep·Σ n_i).
  A layer clipped at k_i = 1 can tie with its neighbour.
- ``redundant`` (thesis §3.2.1: no two filters closer than φ): per layer, keep round(keep·F)
  filters by greedily removing redundancy — repeatedly take the two remaining filters with
  the smallest L2 distance and drop the one with the smaller norm (the later one on a
  tie). A target fraction replaces the thesis' threshold φ so that schemes compare at the
  same k; the thesis compares filters across layers, which needs equal shapes, so we
  compare within a layer.

Loss mix (thesis §4: "90% adversarial loss to 10% natural loss"): the base returns the
adversarial loss on ``batch.logits``; this modifier adds
  natural_weight · (criterion(model(x)) − criterion(batch.logits)),
which makes the total (1 − w)·adversarial + w·natural exactly, with gradients through
both terms, and applies any other modifier's criterion to both. The clean pass is a real
forward and backward and the FLOP meter charges it; ``natural_weight=0`` skips it. Under
TRADES ``batch.logits`` are the clean logits, so the term cancels (TRADES already weighs
a natural term): set ``natural_weight=0`` there to avoid paying for the clean pass.
The penalty and the Z/U updates are elementwise tensor work, which the FLOP meter (matrix
products and convolutions only) does not count; they run no model passes.

Options (default — source):
- ``keep`` 0.5 — fraction of prunable weights kept (thesis k ∈ {100%, 50%, 10%}).
- ``scheme`` "irregular" — thesis default; "filter", "funnel", "redundant" above.
- ``natural_weight`` 0.1 — thesis §4 (0.9 adversarial + 0.1 natural).
- ``rho`` 1e-3 — Ye et al. code (config ``rho``).
- ``rho_growth`` 1.3 — Ye et al. code (``admm_multi_rho_scheduler``).
- ``admm_fraction`` 0.6 — share of the epochs spent in the ADMM phase; ours.
- ``updates`` 9 — Z/U updates in the ADMM phase; Ye et al. update every 20 of 200 ADMM
  epochs (every 4 of 40 on MNIST): 9 updates after initialisation.
- ``funnel_spread`` 0.5 — slope of the funnel rule (first layer keeps 3× the fraction of
  the last before clipping); the thesis gives no value, ours.
- ``prune_first_conv`` True — both sources prune it (see above).
- ``prune_classifier`` None — auto: pruned under irregular/funnel, kept dense under
  filter/redundant (Ye et al.'s configs); True/False forces it.

Reported: ``runs.sparsity`` = fraction of prunable weights exactly zero at the end;
``layer_sparsity`` rows per pruned layer; per-epoch history fields ``admm_residual``
(‖W − Z‖/‖W‖ over prunable layers), ``admm_rho`` and ``admm_updates`` in the ADMM phase;
``mechanism`` rows ``hard_prune`` (when, and the sparsity of the mask) and ``sparsity``
(reached at the end). An ``admm_fraction`` < 1 that rounds to the whole run (no epoch of
masked retraining) fails grid validation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from bench.api import METHODS, Batch, MethodConfig, Modifier, TrainContext

Scheme = Literal["irregular", "filter", "funnel", "redundant"]
PRUNABLE = (nn.Conv2d, nn.Linear)


class ADMMPruneConfig(MethodConfig):
    keep: float = Field(0.5, gt=0, le=1, description="fraction of prunable weights kept (thesis k)")
    scheme: Scheme = Field("irregular", description="Π_S: irregular (thesis), filter, funnel, "
                           "redundant")
    natural_weight: float = Field(0.1, ge=0, lt=1, description="natural CE share (thesis §4: 0.1)")
    rho: float = Field(1e-3, gt=0, description="initial ADMM penalty ρ (Ye et al. code)")
    rho_growth: float = Field(1.3, ge=1, description="ρ factor per Z/U update (Ye et al. code)")
    admm_fraction: float = Field(0.6, gt=0, le=1,
                                 description="share of epochs in the ADMM phase (ours)")
    updates: int = Field(9, ge=1, description="Z/U updates in the ADMM phase (Ye et al.: 9)")
    funnel_spread: float = Field(0.5, ge=0, lt=1,
                                 description="funnel slope: keep falls 1+s → 1−s (ours)")
    prune_first_conv: bool = Field(True, description="prune the first conv (thesis, Ye et al.)")
    prune_classifier: bool | None = Field(
        None, description="prune the last linear; None = only under irregular/funnel (Ye et al.)")


# -- the sparsity set S and its projection -----------------------------------------------

def _rounded(x: float) -> int:
    return int(math.floor(x + 0.5))  # half up: Python's round() rounds 2.5 to 2


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    # A stable sort makes ties deterministic (topk's choice among equal values is not).
    return torch.sort(scores, descending=True, stable=True).indices[:k]


def magnitude_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` entries of largest magnitude."""
    mask = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
    mask[_top(w.detach().abs().flatten(), k)] = True
    return mask.view_as(w)


def _rows_mask(w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros(w.shape[0], dtype=torch.bool, device=w.device)
    keep[rows] = True
    return keep.view(-1, *([1] * (w.dim() - 1))).expand_as(w).clone()


def filter_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` output filters (rows) of largest L2 norm."""
    return _rows_mask(w, _top(w.detach().flatten(1).norm(dim=1), k))


def redundant_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """Keep ``k`` filters: drop, one at a time, the weaker of the two closest remaining."""
    rows = w.detach().flatten(1).float()
    n = rows.shape[0]
    norms = rows.norm(dim=1)
    dist = torch.cdist(rows, rows)
    dist.fill_diagonal_(math.inf)
    kept = torch.ones(n, dtype=torch.bool, device=w.device)
    for _ in range(n - k):
        # argmin returns the first minimum in row-major order, so i < j for the pair.
        i, j = divmod(int(dist.argmin()), n)
        drop = j if norms[j] <= norms[i] else i
        kept[drop] = False
        dist[drop, :] = math.inf
        dist[:, drop] = math.inf
    return _rows_mask(w, kept.nonzero().flatten())


MASKS = {"irregular": magnitude_mask, "funnel": magnitude_mask, "filter": filter_mask,
         "redundant": redundant_mask}


def funnel_counts(sizes: Sequence[int], keep: float, spread: float) -> list[int]:
    """Weights kept per layer under the funnel rule (module docstring): keep fractions fall
    linearly with depth and the total is exactly round(keep·Σ sizes)."""
    depth = len(sizes)
    slopes = [1 + spread * (1 - 2 * i / (depth - 1)) if depth > 1 else 1.0 for i in range(depth)]
    target = keep * sum(sizes)

    def kept(c: float) -> float:
        return sum(n * min(1.0, c * s) for n, s in zip(sizes, slopes))

    lo, hi = 0.0, 1.0 / min(slopes)  # kept(hi) = Σ sizes >= target; kept is monotone in c
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept(mid) < target else (lo, mid)
    exact = [n * min(1.0, hi * s) for n, s in zip(sizes, slopes)]
    counts = [min(n, math.floor(e)) for n, e in zip(sizes, exact)]
    short = _rounded(target) - sum(counts)
    by_remainder = sorted(range(depth), key=lambda i: counts[i] - exact[i])
    for i in [i for i in by_remainder if counts[i] < sizes[i]][:max(short, 0)]:
        counts[i] += 1
    return [max(1, c) for c in counts]


@dataclass(frozen=True)
class SparsitySet:
    """S: per layer, how many weights (irregular, funnel) or filters (filter, redundant)
    may stay nonzero, and the Euclidean projection onto it."""

    scheme: str
    budgets: tuple[int, ...]

    @classmethod
    def for_shapes(cls, scheme: str, shapes: Sequence[torch.Size], keep: float,
                   funnel_spread: float = 0.5) -> SparsitySet:
        if scheme == "funnel":
            budgets = funnel_counts([math.prod(s) for s in shapes], keep, funnel_spread)
        elif scheme == "irregular":
            budgets = [max(1, _rounded(keep * math.prod(s))) for s in shapes]
        else:
            budgets = [max(1, _rounded(keep * s[0])) for s in shapes]
        return cls(scheme, tuple(budgets))

    def masks(self, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [MASKS[self.scheme](w, k) for w, k in zip(weights, self.budgets)]

    def project(self, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Π_S: for these schemes, zeroing all but the kept entries is the nearest point."""
        return [w * m for w, m in zip(weights, self.masks(weights))]


class ADMMState:
    """Z, the scaled dual U and ρ for a list of weight tensors (Ye et al.'s update order)."""

    def __init__(self, weights: Sequence[torch.Tensor], sparsity: SparsitySet, rho: float,
                 rho_growth: float):
        self.sparsity, self.rho, self.rho_growth = sparsity, rho, rho_growth
        with torch.no_grad():
            self.z = sparsity.project([w.detach() for w in weights])
        self.u = [torch.zeros_like(w) for w in self.z]
        self.updates = 0

    def penalty(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Σ ρ/2 ‖W − Z + U‖², differentiable in W."""
        return sum(self.rho / 2 * (w - z + u).pow(2).sum()
                   for w, z, u in zip(weights, self.z, self.u))

    @torch.no_grad()
    def update(self, weights: Sequence[torch.Tensor]) -> None:
        self.rho *= self.rho_growth
        self.z = self.sparsity.project([w + u for w, u in zip(weights, self.u)])
        self.u = [u + w - z for w, z, u in zip(weights, self.z, self.u)]
        self.updates += 1

    @torch.no_grad()
    def residual(self, weights: Sequence[torch.Tensor]) -> float:
        """‖W − Z‖ / ‖W‖ over all layers: how far the weights still are from S."""
        diff = sum(float((w - z).pow(2).sum()) for w, z in zip(weights, self.z))
        norm = sum(float(w.pow(2).sum()) for w in weights)
        return math.sqrt(diff / norm) if norm > 0 else 0.0


# -- which layers, and when ---------------------------------------------------------------

def prunable_layers(model: nn.Module, *, first_conv: bool, classifier: bool,
                    ) -> list[tuple[str, nn.Module]]:
    """Conv and linear modules in ``named_modules`` order, less the excluded ends."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    convs = [n for n, m in layers if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in layers if isinstance(m, nn.Linear)]
    excluded = set()
    if not first_conv and convs:
        excluded.add(convs[0])
    if not classifier and linears:
        excluded.add(linears[-1])
    chosen = [(n, m) for n, m in layers if n not in excluded]
    if not chosen:
        raise ValueError("admm_prune: the model has no nn.Conv2d or nn.Linear weights to prune")
    return chosen


def admm_epochs(epochs: int, fraction: float) -> int:
    """Epochs of the ADMM phase: round(fraction·epochs), at least 1 and at most all."""
    return min(epochs, max(1, _rounded(fraction * epochs)))


# -- the modifier -------------------------------------------------------------------------

@METHODS.register()
class ADMMPrune(Modifier):
    """ADMM pruning during adversarial training (keep 50%, irregular, 0.9 adv + 0.1 nat)."""

    name = "admm_prune"
    Config = ADMMPruneConfig
    requires_adversarial = True
    citation = "Marshall, MSc thesis 2020 §3; Ye et al., ICCV 2019"

    def check_budget(self, epochs: int) -> str | None:
        # admm_fraction < 1 asks for masked retraining after the hard prune; rounding can
        # leave it no epoch. (admm_fraction = 1 prunes at the end on purpose.)
        c = self.config
        phase = admm_epochs(epochs, c.admm_fraction)
        if c.admm_fraction >= 1 or phase < epochs:
            return None
        return (f"admm_prune: admm_fraction={c.admm_fraction:g} of this {epochs}-epoch run "
                f"rounds to {phase} ADMM epochs, so the hard prune would come after the last "
                f"epoch with no masked retraining; lower admm_fraction (or set it to 1 to "
                f"prune at the end on purpose)")

    def on_train_start(self, ctx: TrainContext) -> None:
        c = self.config
        classifier = (c.scheme in ("irregular", "funnel") if c.prune_classifier is None
                      else c.prune_classifier)
        self.layers = prunable_layers(ctx.model, first_conv=c.prune_first_conv,
                                      classifier=classifier)
        self.weights = [m.weight for _, m in self.layers]
        sparsity = SparsitySet.for_shapes(c.scheme, [w.shape for w in self.weights], c.keep,
                                          c.funnel_spread)
        self.admm = ADMMState(self.weights, sparsity, c.rho, c.rho_growth)
        self.admm_epochs = admm_epochs(ctx.epochs, c.admm_fraction)
        self.masks: list[torch.Tensor] | None = None
        self._batches = 0  # batches done in the current epoch

    def state_dict(self) -> dict:
        a = self.admm
        return {"z": a.z, "u": a.u, "rho": a.rho, "updates": a.updates, "masks": self.masks}

    def load_state_dict(self, state: dict) -> None:
        a, device = self.admm, self.weights[0].device
        a.z = [z.to(device) for z in state["z"]]
        a.u = [u.to(device) for u in state["u"]]
        a.rho, a.updates = state["rho"], state["updates"]
        masks = state["masks"]
        self.masks = None if masks is None else [m.to(device) for m in masks]

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self._batches = 0
        if ctx.epoch == self.admm_epochs:
            self._hard_prune(ctx)

    def extra_loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor | None:
        terms = []
        if self.config.natural_weight > 0:
            terms.append(self._natural_term(ctx, batch))
        if self.masks is None:
            terms.append(self.admm.penalty(self.weights))
        return sum(terms) if terms else None

    def _natural_term(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        if batch.x_adv is None or batch.logits is None:
            raise RuntimeError("admm_prune: the base set no batch.x_adv/batch.logits to mix with")
        natural = ctx.criterion(ctx.model(batch.x), batch.y).mean()
        adversarial = ctx.criterion(batch.logits, batch.y).mean()
        # base + w·(nat − adv) = (1 − w)·adv + w·nat, with gradients through both.
        return self.config.natural_weight * (natural - adversarial)

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        # The ADMM phase (penalty) and the masked phase add different work; Z/U updates and
        # masks are elementwise.
        return (self.masks is None,)

    def before_step(self, ctx: TrainContext, batch: Batch) -> None:
        if self.masks is not None:
            for w, m in zip(self.weights, self.masks):
                if w.grad is not None:
                    w.grad.mul_(m)

    def after_step(self, ctx: TrainContext, batch: Batch) -> None:
        if self.masks is not None:
            self._apply_masks()  # momentum and weight decay move pruned weights off zero
            return
        if batch.replay == 0:
            self._batches += 1
        if self._update_due(ctx):
            self.admm.update(self.weights)
        if self._batches == ctx.steps_per_epoch:
            ctx.log(admm_residual=self.admm.residual(self.weights), admm_rho=self.admm.rho,
                    admm_updates=self.admm.updates)

    def _update_due(self, ctx: TrainContext) -> bool:
        """Update j of n is due once the phase is j/n done; at most one per step."""
        n, spe = self.config.updates, ctx.steps_per_epoch
        done = ctx.epoch * spe + self._batches  # in batches of this epoch's size
        due = done * n >= (self.admm.updates + 1) * self.admm_epochs * spe
        return self.admm.updates < n and due

    def on_train_end(self, ctx: TrainContext) -> None:
        if self.masks is None:
            self._hard_prune(ctx)  # the ADMM phase filled the whole budget
        self._apply_masks()
        rows, zeros, total = [], 0, 0
        for (name, _), w in zip(self.layers, self.weights):
            nonzero = int(torch.count_nonzero(w.detach()))
            rows.append({"layer": name, "params": w.numel(), "nonzero": nonzero})
            zeros += w.numel() - nonzero
            total += w.numel()
        ctx.emit("layer_sparsity", rows)
        ctx.run_fields["sparsity"] = zeros / total
        ctx.record_mechanism(self.name, "sparsity", zeros / total, epoch=ctx.epochs - 1,
                             keep=self.config.keep, scheme=self.config.scheme,
                             layers=len(self.layers))

    @torch.no_grad()
    def _hard_prune(self, ctx: TrainContext) -> None:
        self.masks = self.admm.sparsity.masks(self.weights)
        self._apply_masks()
        kept = sum(int(m.sum()) for m in self.masks)
        total = sum(m.numel() for m in self.masks)
        # epoch: the first epoch trained with the mask fixed, A; A = the run's epochs when
        # the ADMM phase filled the budget and the prune followed the last epoch.
        ctx.record_mechanism(self.name, "hard_prune", 1 - kept / total, epoch=self.admm_epochs,
                             epochs=ctx.epochs, zu_updates=self.admm.updates, rho=self.admm.rho)

    @torch.no_grad()
    def _apply_masks(self) -> None:
        for w, m in zip(self.weights, self.masks):
            w.mul_(m)
