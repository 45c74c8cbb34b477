"""How fast PERBench runs, measured against plain PyTorch in the same process and run.

Every figure times PERBench's code path and its reference side by side, interleaved and
best-of-``repeats`` (the least disturbed measurement of each), with the same model, data,
batch size and thread count: a ratio taken in one run is robust to what the machine is
doing, an absolute number is not. The reference loops are in :mod:`bench.speed.reference`.

Figures (docs/conventions.md#speed-figures-and-the-allocator): ``matmul_peak`` (the machine's float32 matmul FLOP/s), ``pgd10_eval``
(attack evaluation vs a plain PGD loop), ``train_erm`` / ``train_pgd_at`` (training
throughput vs a plain DataLoader loop, and as a fraction of a matmul peak timed in the
same rounds, in the training's precision; both sides run the same ``Execution``: fp32 or
bf16 autocast, NCHW or channels_last, eager or compiled),
``meter_overhead`` (FLOP counting's cost), ``autoattack`` (through PERBench vs pyautoattack
called directly) and ``quickstart`` (wall time, the harness's share of it, and the share spent outside model
compute).
On CUDA every time is read from CUDA events.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Names only here, so the CLI can list them without importing torch.
FIGURES = ("matmul_peak", "pgd10_eval", "train_erm", "train_pgd_at", "meter_overhead",
           "autoattack", "quickstart")
DEFAULT_FIGURES = FIGURES[:-1]  # the quickstart takes minutes: asked for by name


@dataclass
class Figure:
    """One measured figure: PERBench's value beside the reference's, in one unit."""

    figure: str
    value: float
    unit: str
    reference: float | None = None
    ratio: float | None = None
    ratio_meaning: str = ""
    target: float | None = None  # the ratio's target; met when ratio >= target (or <= for costs)
    lower_is_better: bool = False
    detail: dict = field(default_factory=dict)

    @property
    def target_met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target
