"""CAPER: remove the training samples whose features are most susceptible to input noise.

Source: Ganesh, Sekeh & Corso, "Can Deep Networks Be Highly Performant, Efficient and
Robust Simultaneously?", BMVC 2023, §3 (docs/methods.md#caper).

At epoch τ every training sample x_i is passed through the model with and without
additive Gaussian input noise δ_i; per channel q of a chosen layer the features are
projected by H (mean over spatial positions), Δf(i,q) = |H(f(x_i)) − H(f(x_i+δ_i))|
(Eq. 3 per channel), min-max normalised per channel across samples (Eq. 4), and the
instability ξ_i is the mean over channels (Eq. 5). The γ samples with the largest ξ are
removed for the rest of training (Eq. 6); the loss is label-smoothed cross-entropy (Eq. 1).

Options (default — source):
- ``tau`` 0.25 of the epochs — paper §4: τ=50 of 200+ epochs; an integer is an epoch.
- ``gamma`` 0.05 of the training split — paper Table 1: γ=2.5k of 50k; an integer is a count.
- ``class_balanced`` False — paper ranks all samples globally; option ours.
- ``label_smoothing`` 0.1 — paper uses ℓ_ε without the value; 0.1 is the common choice.
- ``layer`` "last_conv" — paper §4: "features from the last convolution layer"; or a
  module name from ``model.named_modules()``. Features are that module's output.
- ``noise_std`` 0.5 — paper: δ ~ N(0, 0.5), read as a standard deviation in [0,1] pixel
  units (the paper does not say whether 0.5 is the variance).
- ``draws`` 1 — paper: one draw; with more, Δf is averaged over draws.
- ``projection`` "mean" — paper §4 (H = spatial mean); "l2" (spatial L2 norm per channel)
  as in a later public re-implementation.
- ``score_batch`` 512 — batch size of the scoring passes (no effect on results).

Cost: the scoring passes (2·draws forward passes per sample, eval mode) are charged; the
saving is every pass not run on removed samples after τ, which the FLOP meter shows.
Scoring runs in eval mode so BatchNorm statistics are not updated by noisy inputs.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from bench.api import METHODS, TrainContext
from methods._data_pruning import PruningConfig, SamplePruner, batched


class CAPERConfig(PruningConfig):
    layer: str = Field("last_conv", description="feature layer: 'last_conv' or a module name")
    noise_std: float = Field(0.5, gt=0, description="std of the input noise δ (paper: N(0, 0.5))")
    draws: int = Field(1, ge=1, description="noise draws averaged per sample (paper: 1)")
    projection: Literal["mean", "l2"] = Field("mean", description="H: spatial mean (paper) or L2")
    score_batch: int = Field(512, ge=1, description="batch size of the scoring passes")


def feature_module(model: nn.Module, layer: str) -> nn.Module:
    if layer == "last_conv":
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError("caper: layer 'last_conv' but the model has no nn.Conv2d")
        return convs[-1]
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"caper: no module {layer!r}; allowed: 'last_conv', "
                         f"{', '.join(n for n in modules if n)}")
    return modules[layer]


def project(features: torch.Tensor, how: str) -> torch.Tensor:
    """H: (N, C, h, w) -> (N, C); a (N, C) feature (linear layer) is its own projection."""
    if features.dim() == 2:
        return features
    flat = features.flatten(2)
    return flat.mean(2) if how == "mean" else flat.norm(dim=2)


def instability(delta_f: torch.Tensor) -> torch.Tensor:
    """ξ (Eq. 4–5): min-max normalise each channel across samples, then average channels.
    A channel with no spread carries no ranking information and contributes 0."""
    lo, hi = delta_f.min(0).values, delta_f.max(0).values
    span = hi - lo
    normalised = torch.where(span > 0, (delta_f - lo) / span.clamp_min(1e-12), torch.zeros_like(delta_f))
    return normalised.mean(1)


@METHODS.register()
class CAPER(SamplePruner):
    """CAPER: drop the γ most noise-susceptible samples at epoch τ (label-smoothed CE)."""

    name = "caper"
    Config = CAPERConfig
    citation = "Ganesh, Sekeh & Corso, BMVC 2023"

    @torch.no_grad()
    def score(self, ctx: TrainContext, index: torch.Tensor) -> torch.Tensor:
        cfg, model = self.config, ctx.model
        module = feature_module(model, cfg.layer)
        captured: list[torch.Tensor] = []
        hook = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
        was_training = model.training
        model.eval()
        try:
            parts = []
            for sl in batched(len(index), cfg.score_batch):
                x = ctx.train_x[index[sl]]
                captured.clear()
                model(x)
                clean = project(captured.pop(), cfg.projection)
                diff = torch.zeros_like(clean)
                for _ in range(cfg.draws):
                    noise = torch.randn(x.shape, generator=ctx.generator, device=x.device)
                    # δ is added in input space (paper §3.1.2); no clipping to [0,1] is
                    # described, so none is applied.
                    model(x + cfg.noise_std * noise)
                    diff += (clean - project(captured.pop(), cfg.projection)).abs()
                parts.append(diff / cfg.draws)
        finally:
            hook.remove()
            model.train(was_training)
        return instability(torch.cat(parts))
