"""Every built-in base and modifier, and the compositions the fashion-mnist grid runs, as
small training cases on digits: shared by the FLOP-meter memo and resume tests."""
from __future__ import annotations

import torch
from conftest import tiny_cnn
from torch import nn

from bench.api import Budget, ThreatModel, TrainContext
from bench.archs.preact_resnet import PreActResNet
from bench.attacks import perturb
from bench.plugins import compose
from bench.work.loop import TrainStats, train

PGD = {"steps": 2}
ACCEL = {"n": 1, "val_points": 50, "val_steps": 2}
# The budget (3 epochs of 3 batches, the last one short) makes CAPER prune mid-run,
# AccelAT fire, ADMM switch from its penalty phase to masked retraining, and EWS's
# controller (interval 2) step on some batches and not on others.
COMPOSITIONS = {
    "erm": {},
    "pgd_at": {"pgd_at": PGD},
    "fast_at": {},
    "free_at": {"free_at": {"replays": 2}},
    "trades": {"trades": PGD},
    "erm+dropout": {},
    "erm+caper": {"caper": {"tau": 1}},
    "erm+random_subset": {"random_subset": {"tau": 1}},
    "pgd_at+caper+accelat": {"pgd_at": PGD, "caper": {"tau": 1}, "accelat": ACCEL},
    "free_at+accelat": {"free_at": {"replays": 2}, "accelat": ACCEL},
    "pgd_at+admm_prune": {"pgd_at": PGD, "admm_prune": {"keep": 0.5, "updates": 2,
                                                         "admm_fraction": 0.5}},
    "pgd_at+ews": {"pgd_at": PGD, "ews": {"interval": 2}},
    "trades+ews": {"trades": PGD, "ews": {"interval": 2}},
    "pgd_at+ews_random": {"pgd_at": PGD},
    "pgd_at+ews_l1": {"pgd_at": PGD},
    "fgsm": {},
    "n_fgsm": {},
    "gradalign": {},
    "atas": {"atas": {"warmup": 1, "reset": 2}},  # warm-up, then adaptive; a reset at epoch 2
    "mart": {"mart": PGD},
    "pgd_at+awp": {"pgd_at": PGD, "awp": {"warmup": 1}},  # epoch 0 without, then with AWP
    "trades+awp": {"trades": PGD},
}


def model_for(name: str) -> nn.Module:
    torch.manual_seed(0)
    if "ews" in name:  # EWS needs residual blocks
        return PreActResNet((1, 1), (8, 16), 8, in_channels=1, num_classes=10)
    return tiny_cnn()


def context(name: str, digits_tensors, log=None) -> TrainContext:
    x, y, _, _ = digits_tensors
    return TrainContext(
        model=model_for(name), train_x=x[:250], train_y=y[:250], val_x=x[250:350],
        val_y=y[250:350], num_classes=10, budget=Budget(3, 100),
        threat=ThreatModel("Linf", 0.1), device=torch.device("cpu"), seed=0,
        generator=torch.Generator().manual_seed(0), attack=perturb,
        log=log or (lambda **kw: None))


def train_case(name: str, digits_tensors, ctx: TrainContext | None = None,
               **train_kwargs) -> tuple[TrainStats, TrainContext]:
    """Train composition ``name`` from scratch (seeded); ``train_kwargs`` go to train()."""
    comp = compose(name, COMPOSITIONS[name])
    ctx = ctx or context(name, digits_tensors)
    return train(comp.base, comp.modifiers, ctx, **train_kwargs), ctx
