"""Dropout ablation: dropout on the classifier's input features during training.

Source: EWS (Guo et al., ECCV 2022) §4 compares against dropout as a regulariser that,
like EWS, trains subnetworks implicitly. The model's architecture is not changed: a
forward pre-hook on the final ``nn.Linear`` applies ``F.dropout`` in train mode only, so
evaluation, attacks and the saved checkpoint see the plain model.

Options (default — source):
- ``p`` 0.3 — drop probability; EWS does not state the value it used, 0.3 is ours.
"""
from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.api import METHODS, Batch, MethodConfig, Modifier, TrainContext


class DropoutConfig(MethodConfig):
    p: float = Field(0.3, gt=0, lt=1, description="drop probability on the classifier input")


@METHODS.register()
class Dropout(Modifier):
    """Dropout (p=0.3) on the classifier's input features, training passes only."""

    name = "dropout"
    Config = DropoutConfig
    citation = "Srivastava et al. 2014; baseline in Guo et al., ECCV 2022"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # its masks are elementwise: no product changes size

    def state_dict(self) -> dict:
        return {}  # its masks come from the global stream, which the loop restores

    def on_train_start(self, ctx: TrainContext) -> None:
        linears = [m for m in ctx.model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("dropout: the model has no nn.Linear classifier to regularise")
        p = self.config.p

        def drop(module: nn.Module, args: tuple):
            return (F.dropout(args[0], p=p, training=module.training), *args[1:])

        self._hook = linears[-1].register_forward_pre_hook(drop)

    def on_train_end(self, ctx: TrainContext) -> None:
        self._hook.remove()
