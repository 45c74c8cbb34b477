"""Shared fixtures: digits tensors and one small model trained with plain PyTorch.

The trained model is deliberately built without the harness so that attack and measure
tests do not depend on the engine they help to check.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

torch.set_num_threads(int(os.environ.get("PERBENCH_TEST_THREADS", "2")))

FIXTURE = Path(__file__).parent / "fixtures" / "tiny"


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> Path:
    """The tiny fixture grid run once, uninterrupted (read-only: copy it to change it)."""
    from bench.cli import main

    dest = tmp_path_factory.mktemp("ref") / "tiny"
    shutil.copytree(FIXTURE, dest)
    assert main(["run", str(dest), "--quiet"]) == 0
    return dest


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, num_classes),
    )


@pytest.fixture(scope="session")
def digits_tensors():
    """(x_train, y_train, x_test, y_test): digits in [0,1], shape (N,1,8,8), fixed split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="session")
def trained_digits_model(digits_tensors):
    """A tiny CNN trained with plain ERM for a few epochs (~97% clean on digits test)."""
    x, y, _, _ = digits_tensors
    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after: bit-exact comparisons, and small nets
    that lose ~50x to intra-op threads when the cores are shared with other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
