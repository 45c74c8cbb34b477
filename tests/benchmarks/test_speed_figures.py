"""The speed figures of issue #8 as pytest-benchmark benchmarks (`tox -e bench`).

Each benchmark runs one figure of ``bench.speed``: PERBench and its plain-PyTorch
reference timed side by side in the same run (interleaved, best of 3), on the PGD-AT
small-CNN checkpoint of the fashion-mnist leaderboard. The ratios, targets and details go
into the JSON's ``extra_info``; pytest-benchmark's own time is the whole figure's. Nothing
here asserts a speed: the figures are reported (README, issue notes), not gated.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.speed import figures as speed

pytestmark = pytest.mark.bench
BOARD = Path(__file__).resolve().parents[2] / "leaderboards" / "fashion-mnist"


@pytest.fixture(scope="module")
def subject():
    from bench.runner import threads

    try:
        loaded = speed.load_subject(BOARD, method="pgd_at", arch="small_cnn")
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"Fashion-MNIST is not on this machine ({exc}); "
                    "apt-get install dataset-fashion-mnist")
    with threads(2):
        yield loaded


@pytest.fixture(scope="module")
def peak() -> float:
    import torch

    from bench.runner import threads

    with threads(2):
        return speed.matmul_peak(torch.device("cpu")).value


def record(benchmark, fig: speed.Figure) -> speed.Figure:
    benchmark.extra_info.update({
        "figure": fig.figure, "value": fig.value, "unit": fig.unit, "reference": fig.reference,
        "ratio": fig.ratio, "ratio_meaning": fig.ratio_meaning, "target": fig.target,
        "target_met": fig.target_met, **{f"detail.{k}": v for k, v in fig.detail.items()}})
    return fig


def once(benchmark, fn, *args, **kwargs):
    return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=1, iterations=1)


def test_matmul_peak(benchmark):
    import torch

    from bench.runner import threads

    with threads(2):
        fig = record(benchmark, once(benchmark, speed.matmul_peak, torch.device("cpu")))
    assert fig.value > 0


def test_pgd10_eval(benchmark, subject):
    fig = record(benchmark, once(benchmark, speed.pgd10_eval, subject, points=1000))
    # a PGD-AT model with realistic robustness: most clean-correct points survive PGD-10
    assert 0.3 < fig.detail["robust_acc"] < fig.detail["clean_acc"]


@pytest.mark.parametrize("method", ["erm", "pgd_at"])
def test_training_throughput(benchmark, subject, peak, method):
    fig, overhead = once(benchmark, speed.train_throughput, subject, method, peak)
    record(benchmark, fig)
    if overhead is not None:
        benchmark.extra_info["meter_overhead"] = overhead.ratio
    assert fig.detail["train_flops"] > 0


def test_autoattack_200(benchmark, subject):
    fig = record(benchmark, once(benchmark, speed.autoattack_time, subject, points=200))
    assert fig.detail["robust_acc"] <= fig.detail["clean_acc"]


def test_quickstart_wall_time(benchmark):
    from bench.speed.quickstart import quickstart_figure

    fig = record(benchmark, once(benchmark, quickstart_figure))
    assert fig.value > 0
