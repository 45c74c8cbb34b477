"""First-order evaluation attacks, each a setting of the shared ascent loop.

Defaults follow each attack's paper (or torchattacks where the paper leaves it open);
every default that depends on eps or steps is resolved at creation and recorded.
Evaluation uses the summed loss, so a point's gradient does not depend on which other
points share its batch, and stops attacking a point once any iterate fools it.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.ascent import ascend, input_diversity
from bench.attacks.base import ATTACKS, Attack


def _sum_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


def _cw_margin(logits: torch.Tensor, y: torch.Tensor, kappa: float) -> torch.Tensor:
    """CW loss (Carlini & Wagner 2017): best wrong logit minus true logit, capped at kappa."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return (wrong - true).clamp(max=kappa).sum()


class _Ascent(Attack):
    """Shared ``run``: subclasses set the loop's knobs in ``resolve``/``_loop_args``."""

    def _loop_args(self) -> dict[str, Any]:
        o = self.opts
        return {"alpha": o["alpha"], "random_start": o.get("random_start"),
                "loss_fn": _sum_cross_entropy}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
        return ascend(model, x, y, norm=self.norm, eps=self.eps, steps=self.steps,
                      generator=generator, stop_when_fooled=True, **self._loop_args())


@ATTACKS.register()
class FGSM(_Ascent):
    """FGSM (Goodfellow et al. 2015): one step of size eps from the clean input."""

    name = "fgsm"
    default_steps = 1
    fixed_steps = True
    randomized = False

    def resolve(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {**opts, "alpha": self.eps}


@ATTACKS.register()
class FFGSM(_Ascent):
    """FFGSM (Wong et al. 2020): FGSM from a uniform random start, alpha = 1.25 eps."""

    name = "ffgsm"
    default_steps = 1
    fixed_steps = True
    options = {"alpha": None}

    def resolve(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {"alpha": 1.25 * self.eps if opts["alpha"] is None else opts["alpha"],
                "random_start": "uniform"}


@ATTACKS.register()
class PGD(_Ascent):
    """PGD (Madry et al. 2018): uniform random start, alpha = 2.5 eps / steps."""

    name = "pgd"
    default_steps = 10
    options = {"alpha": None, "random_start": "uniform"}

    def resolve(self, opts: dict[str, Any]) -> dict[str, Any]:
        if opts["random_start"] not in ("uniform", "normal", None):
            raise ValueError(f"attack {self.name!r}: random_start must be 'uniform', 'normal' "
                             f"or null, got {opts['random_start']!r}")
        alpha = 2.5 * self.eps / self.steps if opts["alpha"] is None else opts["alpha"]
        return {**opts, "alpha": alpha}

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.opts["random_start"] is not None


@ATTACKS.register()
class CW(PGD):
    """CW-Linf: PGD on the CW margin loss (kappa = 50 as in TRADES' evaluation code)."""

    name = "cw"
    supported_norms = ("Linf",)
    options = {**PGD.options, "kappa": 50.0}

    def _loop_args(self) -> dict[str, Any]:
        return {**super()._loop_args(), "loss_fn": partial(_cw_margin, kappa=self.opts["kappa"])}


@ATTACKS.register()
class MIFGSM(_Ascent):
    """MI-FGSM (Dong et al. 2018): momentum 1.0 on L1-normalised gradients, alpha = eps / steps."""

    name = "mifgsm"
    default_steps = 10
    randomized = False
    options = {"alpha": None, "momentum": 1.0}

    def resolve(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {**opts, "alpha": self.eps / self.steps if opts["alpha"] is None else opts["alpha"]}

    def _loop_args(self) -> dict[str, Any]:
        return {**super()._loop_args(), "momentum": self.opts["momentum"]}


@ATTACKS.register()
class DIFGSM(_Ascent):
    """DI-FGSM (Xie et al. 2019): gradients through a random resize-and-pad (prob 0.5)."""

    name = "difgsm"
    default_steps = 10
    options = {"alpha": None, "momentum": 0.0, "resize_rate": 0.9, "diversity_prob": 0.5}

    def resolve(self, opts: dict[str, Any]) -> dict[str, Any]:
        if not 0 < opts["resize_rate"] < 1:
            raise ValueError(f"attack {self.name!r}: resize_rate must be in (0, 1) so the padded "
                             f"image keeps its size, got {opts['resize_rate']}")
        return {**opts, "alpha": self.eps / self.steps if opts["alpha"] is None else opts["alpha"]}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
        o = self.opts
        transform = partial(input_diversity, resize_rate=o["resize_rate"], prob=o["diversity_prob"])
        # No early stop: the logits seen in the loop are of the transformed input, not x_adv.
        return ascend(model, x, y, norm=self.norm, eps=self.eps, steps=self.steps, alpha=o["alpha"],
                      random_start=None, loss_fn=_sum_cross_entropy, generator=generator,
                      momentum=o["momentum"], transform=transform)
