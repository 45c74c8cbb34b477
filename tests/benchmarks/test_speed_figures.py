"""The speed figures of bench.speed as pytest-benchmark benchmarks (`tox -e bench`).

Each benchmark runs one figure of ``bench.speed``: PERBench and its plain-PyTorch
reference timed side by side in the same run (interleaved, best of 3), on the PGD-AT
small-CNN checkpoint of the fashion-mnist leaderboard. The ratios, targets and details go
into the JSON's ``extra_info``; pytest-benchmark's own time is the whole figure's. Nothing
here asserts a speed: the figures are reported (README, issue notes), not gated.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.allocator import current_setting, keep_freed_memory
from bench.speed import figures as speed

pytestmark = pytest.mark.bench
BOARD = Path(__file__).resolve().parents[2] / "leaderboards" / "fashion-mnist"


@pytest.fixture(scope="module")
def subject():
    from bench.work.model import threads

    keep_freed_memory()  # as `perbench` does in every process that runs cells

    try:
        loaded = speed.load_subject(BOARD, method="pgd_at", arch="small_cnn")
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"Fashion-MNIST is not on this machine ({exc}); "
                    "apt-get install dataset-fashion-mnist")
    with threads(2):
        yield loaded


def record(benchmark, fig: speed.Figure) -> speed.Figure:
    benchmark.extra_info.update({
        "figure": fig.figure, "value": fig.value, "unit": fig.unit, "reference": fig.reference,
        "ratio": fig.ratio, "ratio_meaning": fig.ratio_meaning, "target": fig.target,
        "target_met": fig.target_met, **{f"detail.{k}": v for k, v in fig.detail.items()},
        "allocator": current_setting()})
    return fig


def once(benchmark, fn, *args, **kwargs):
    return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=1, iterations=1)


def test_matmul_peak(benchmark):
    import torch

    from bench.work.model import threads

    with threads(2):
        fig = record(benchmark, once(benchmark, speed.matmul_peak, torch.device("cpu")))
    assert fig.value > 0


def test_pgd10_eval(benchmark, subject):
    fig = record(benchmark, once(benchmark, speed.pgd10_eval, subject, points=1000))
    # a PGD-AT model with realistic robustness: most clean-correct points survive PGD-10
    assert 0.3 < fig.detail["robust_acc"] < fig.detail["clean_acc"]


EXECUTIONS = {"fp32": {}, "fp32-channels_last": {"channels_last": True},
              "bf16-channels_last": {"precision": "bf16", "channels_last": True}}


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("method", ["erm", "pgd_at"])
def test_training_throughput(benchmark, subject, method, execution):
    from bench.api import Execution

    fig, overhead = once(benchmark, speed.train_throughput, subject, method,
                         execution=Execution(**EXECUTIONS[execution]))
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


def test_gpu_preact_resnet18_pgd_at_bf16(benchmark):
    """The GPU target (docs/conventions.md#speed-figures-and-the-allocator): a PreActResNet-18 PGD-AT step on CIFAR-shaped data, bf16
    autocast, channels_last, compiled, as a fraction of the bf16 matmul peak timed in the
    same rounds (target 35% on an H100), and its epoch time against the plain
    DataLoader loop on the same GPU. Skipped where there is no GPU."""
    import torch

    from bench.api import Execution

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    subject = speed.synthetic_subject("preact_resnet18", torch.device("cuda"), images=8192)
    fig, _ = once(benchmark, speed.train_throughput, subject, "pgd_at", images=8192,
                  batch_size=512, pgd_steps=10,
                  execution=Execution(precision="bf16", channels_last=True, compile=True))
    record(benchmark, fig)
    assert fig.detail["train_flops"] > 0 and fig.target == 0.35


# One fresh process per setting, as a grid cell starts: best of 3 PGD-AT epochs (1,024
# images, PGD-7) on the fashion-mnist CNN, and the minor page faults of those epochs.
ALLOCATOR_PROBE = """
import json, resource, sys, time
from pathlib import Path
import torch
from bench.allocator import keep_freed_memory
from bench.api import Execution
from bench.speed.figures import _train_once, load_subject
setting = keep_freed_memory()
torch.set_num_threads(2)
s = load_subject(Path(sys.argv[1]), method="pgd_at", arch="small_cnn")
x, y = s.train_x[:1024], s.train_y[:1024]
cfg = {"steps": 7, "lr": 0.01, "schedule": "constant"}
_train_once(s, "pgd_at", cfg, x, y, 128, False, Execution())
faults, best = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, float("inf")
for _ in range(3):
    start = time.perf_counter()
    _train_once(s, "pgd_at", cfg, x, y, 128, False, Execution())
    best = min(best, time.perf_counter() - start)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 3
print(json.dumps({"allocator": setting, "epoch_s": best, "faults_per_epoch": faults}))
"""


def test_allocator_setting_on_a_fresh_process(benchmark, subject):
    """PGD-AT epochs with glibc's defaults (PERBENCH_MALLOC=system) and with PERBench's
    setting, each in a new process. glibc's own mmap threshold rises after the first large
    free, so how much the setting saves depends on what the process allocated first: a
    process that has already run a matmul benchmark sees little difference."""
    import json
    import os
    import subprocess
    import sys

    def probe(env: dict) -> dict:
        out = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE, str(BOARD)], check=True,
                             capture_output=True, text=True, env={**os.environ, **env})
        return json.loads(out.stdout.strip().splitlines()[-1])

    def both() -> tuple[dict, dict]:
        return probe({"PERBENCH_MALLOC": "system"}), probe({})

    system, kept = benchmark.pedantic(both, rounds=1, iterations=1)
    benchmark.extra_info.update({"system": system, "kept": kept,
                                 "speedup": system["epoch_s"] / kept["epoch_s"]})
    assert kept["allocator"] != system["allocator"]
