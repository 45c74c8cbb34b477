"""The figures: each times PERBench and its reference side by side (see bench.speed)."""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bench.speed import reference

from bench.speed import DEFAULT_FIGURES, FIGURES


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


@dataclass
class Subject:
    """The model and data the figures run on: a trained checkpoint and its dataset."""

    name: str  # e.g. "pgd_at · fashion-mnist · small_cnn · seed 0"
    model: nn.Module
    arch: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    eps: float
    build: Callable[[], nn.Module]  # a fresh, untrained model of the same architecture


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(fastest wall time of ``repeats`` calls, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, object]]:
    """Best-of-``repeats`` for several functions, alternated so that a disturbance of the
    machine (another process, a frequency change) hits every side alike."""
    best: dict[str, float] = dict.fromkeys(fns, float("inf"))
    out: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: (best[name], out[name]) for name in fns}


# -- the figures -------------------------------------------------------------------------

def matmul_peak(device: torch.device, n: int = 1024, repeats: int = 20,
                dtype: torch.dtype = torch.float32) -> Figure:
    """Float32 (or ``dtype``) matmul FLOP/s at the current thread count: the roof the
    training figures are a fraction of. n=1024 keeps one product well above 10 ms on two
    cores; larger sizes gave the same rate here."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = _sync(device)
    for _ in range(3):  # warm-up: thread pool, caches, clocks
        a @ b
    sync()

    def once() -> None:
        a @ b
        sync()

    seconds, _ = best_of(once, repeats)
    rate = 2 * n**3 / seconds
    return Figure("matmul_peak", rate / 1e9, "GFLOP/s",
                  detail={"n": n, "dtype": str(dtype).removeprefix("torch."), "seconds": seconds})


def pgd10_eval(subject: Subject, points: int = 1000, batch_size: int = 500,
               repeats: int = 3, steps: int = 10, target: float = 1.5) -> Figure:
    """PGD-10 robust accuracy of ``points`` test points: ``evaluate_attack`` against the
    plain loop; ratio = PERBench throughput / plain throughput."""
    from bench.attacks import ATTACKS, evaluate_attack

    model = subject.model.eval()
    x, y = subject.test_x[:points], subject.test_y[:points]
    attack = ATTACKS.create("pgd", norm="Linf", eps=subject.eps, steps=steps)
    alpha = attack.opts["alpha"]
    timed = interleaved({
        "perbench": lambda: evaluate_attack(model, x, y, attack, seed=0, batch_size=batch_size),
        "plain": lambda: reference.pgd_robust(
            model, x, y, eps=subject.eps, alpha=alpha, steps=steps, batch_size=batch_size,
            generator=torch.Generator(device=x.device).manual_seed(0)),
    }, repeats)
    (t_ours, result), (t_plain, plain_robust) = timed["perbench"], timed["plain"]
    n = len(y)
    return Figure("pgd10_eval", n / t_ours, "points/s", reference=n / t_plain,
                  ratio=t_plain / t_ours, ratio_meaning="PERBench / plain PGD loop throughput",
                  target=target, detail={
                      "points": n, "batch_size": batch_size, "eps": subject.eps,
                      "clean_acc": result.clean_acc, "robust_acc": result.robust_acc,
                      "plain_robust_acc": plain_robust.float().mean().item(),
                      "perbench_s": t_ours, "plain_s": t_plain, "model": subject.name})


def _train_once(subject: Subject, method: str, config: dict, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, metered: bool, seed: int = 0):
    from bench.api import Budget, ThreatModel, TrainContext
    from bench.attacks import perturb
    from bench.engine import train
    from bench.plugins import compose

    comp = compose(method, config)
    torch.manual_seed(seed)
    model = subject.build().to(x.device)
    empty = x[:0]
    ctx = TrainContext(model=model, train_x=x, train_y=y, val_x=empty, val_y=y[:0],
                       num_classes=int(subject.test_y.max()) + 1, budget=Budget(1, batch_size),
                       threat=ThreatModel("Linf", subject.eps), device=x.device, seed=seed,
                       generator=torch.Generator(device=x.device).manual_seed(seed),
                       attack=perturb)
    return train(comp.base, comp.modifiers, ctx, metered=metered)


def train_throughput(subject: Subject, method: str, peak_gflops: float | None,
                     images: int = 1024, batch_size: int = 64, repeats: int = 3,
                     pgd_steps: int = 7, target: float = 0.6) -> tuple[Figure, Figure | None]:
    """One epoch of ``method`` (erm or pgd_at) on ``images`` training images through the
    engine (metered and unmetered) and through the plain DataLoader loop. Returns the
    throughput figure (ratio: achieved FLOP/s over the matmul peak, the issue's target) and,
    for pgd_at, the metering-overhead figure."""
    if method not in ("erm", "pgd_at"):
        raise ValueError(f"train_throughput measures erm and pgd_at, not {method!r}")
    x, y = subject.train_x[:images], subject.train_y[:images]
    adversarial = method == "pgd_at"
    config = {"steps": pgd_steps, "lr": 0.01, "schedule": "constant"} if adversarial else {
        "lr": 0.01, "schedule": "constant"}
    plain_model = subject.build().to(x.device)
    timed = interleaved({
        "metered": lambda: _train_once(subject, method, config, x, y, batch_size, True),
        "unmetered": lambda: _train_once(subject, method, config, x, y, batch_size, False),
        "plain": lambda: reference.train_epoch(
            copy.deepcopy(plain_model), x, y, batch_size=batch_size, adversarial=adversarial,
            eps=subject.eps, alpha=subject.eps / 4, steps=pgd_steps),
    }, repeats)
    t_metered, stats = timed["metered"]
    t_unmetered, _ = timed["unmetered"]
    t_plain, _ = timed["plain"]
    flops = stats.train_flops
    achieved = flops / t_unmetered / 1e9
    n = len(y)
    throughput = Figure(
        f"train_{method}", n / t_unmetered, "images/s", reference=n / t_plain,
        ratio=achieved / peak_gflops if peak_gflops else None,
        ratio_meaning="achieved training GFLOP/s / matmul peak GFLOP/s",
        target=target if peak_gflops else None, detail={
            "images": n, "batch_size": batch_size, "train_flops": flops,
            "achieved_gflops": achieved, "peak_gflops": peak_gflops,
            "vs_plain": t_plain / t_unmetered, "perbench_s": t_unmetered, "plain_s": t_plain,
            "metered_s": t_metered, "arch": subject.arch,
            **({"pgd_steps": pgd_steps} if adversarial else {})})
    overhead = None
    if adversarial:
        overhead = Figure("meter_overhead", 100 * (t_metered / t_unmetered - 1), "%",
                          ratio=t_metered / t_unmetered - 1,
                          ratio_meaning="metered / unmetered training time - 1 (pgd_at)",
                          target=0.05, lower_is_better=True, detail={
                              "metered_s": t_metered, "unmetered_s": t_unmetered,
                              "method": method, "images": n})
    return throughput, overhead


def autoattack_time(subject: Subject, points: int = 200, target: float = 1.0) -> Figure:
    """Standard AutoAttack on ``points`` test points through ``evaluate_attack`` vs
    pyautoattack's ``run_standard_evaluation`` called directly (once each: minutes)."""
    from bench.attacks import ATTACKS, evaluate_attack

    model = subject.model.eval()
    x, y = subject.test_x[:points], subject.test_y[:points]
    attack = ATTACKS.create("autoattack", norm="Linf", eps=subject.eps)
    t_ours, result = best_of(lambda: evaluate_attack(model, x, y, attack, seed=0,
                                                     batch_size=points), 1)
    t_direct, direct = best_of(lambda: reference.autoattack_robust(model, x, y, eps=subject.eps,
                                                                    seed=0), 1)
    return Figure("autoattack", t_ours, "s", reference=t_direct, ratio=t_direct / t_ours,
                  ratio_meaning="pyautoattack direct time / PERBench time", target=target,
                  detail={"points": len(y), "robust_acc": result.robust_acc,
                          "direct_robust_acc": direct.float().mean().item(),
                          "clean_acc": result.clean_acc, "model": subject.name})


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# -- the subject: a trained checkpoint of a leaderboard ------------------------------------

def load_subject(board: Path, method: str = "pgd_at", arch: str | None = None,
                 seed: int = 0, run_id: str | None = None,
                 device: torch.device | None = None) -> Subject:
    """A finished run of ``board`` (default: its ``pgd_at`` run, seed 0, first arch) with
    its dataset. Raises ValueError naming what is missing."""
    from bench import store
    from bench.runner import build_model, load_dataset
    from bench.spec import load_spec, results_location

    spec = load_spec(Path(board) / "grid.yaml")
    results = results_location(board, spec)
    runs = store.read_table(results, "runs")
    if runs.empty:
        raise ValueError(f"{board}: no finished runs (run `perbench run {board}` first)")
    if run_id is not None:
        chosen = runs[runs["run_id"] == run_id]
        what = f"run {run_id!r}"
    else:
        chosen = runs[(runs["method"] == method) & (runs["seed"] == seed)
                      & (runs["status"] == "ok")]
        if arch is not None:
            chosen = chosen[chosen["arch"] == arch]
        else:
            chosen = chosen[chosen["arch"] == spec.archs[0]]
        what = f"a finished {method} run (seed {seed}, arch {arch or spec.archs[0]})"
    if chosen.empty:
        raise ValueError(f"{board}: no {what}; runs there: "
                         f"{sorted(set(runs['method']))}")
    row = chosen.iloc[0]
    device = device or torch.device("cpu")
    data = load_dataset(row["dataset"], spec.data_root)
    model = build_model(data, row["arch"])
    with store.open_read(store.checkpoint_path(results, row["run_id"])) as f:
        model.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
    model = model.to(device).eval()
    return Subject(
        name=f"{row['method']} · {row['dataset']} · {row['arch']} · seed {row['seed']}",
        model=model, arch=row["arch"], train_x=data.train_x.to(device),
        train_y=data.train_y.to(device), test_x=data.test_x.to(device),
        test_y=data.test_y.to(device), eps=float(spec.train_threat.eps),
        build=lambda: build_model(data, row["arch"]))


# -- all together ----------------------------------------------------------------------

def measure(subject: Subject, figures: tuple[str, ...] = DEFAULT_FIGURES, *,
            threads: int = 2, points: int = 1000, images: int = 1024, repeats: int = 3,
            aa_points: int = 200, quickstart: Path | None = None,
            progress: Callable[[str], None] = lambda name: None) -> list[Figure]:
    """The requested figures, in order, at ``threads`` torch threads."""
    from bench.runner import threads as with_threads

    unknown = set(figures) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figures {sorted(unknown)}; allowed: {', '.join(FIGURES)}")
    device = subject.test_x.device
    out: list[Figure] = []
    peak = None
    with with_threads(threads):
        if {"matmul_peak", "train_erm", "train_pgd_at"} & set(figures):
            progress("matmul_peak")
            fig = matmul_peak(device)
            peak = fig.value
            if "matmul_peak" in figures:
                out.append(fig)
        if "pgd10_eval" in figures:
            progress("pgd10_eval")
            out.append(pgd10_eval(subject, points=points, repeats=repeats))
        for method in ("erm", "pgd_at"):
            wanted = f"train_{method}" in figures or (method == "pgd_at"
                                                      and "meter_overhead" in figures)
            if not wanted:
                continue
            progress(f"train_{method}")
            fig, overhead = train_throughput(subject, method, peak, images=images,
                                             repeats=repeats)
            if f"train_{method}" in figures:
                out.append(fig)
            if overhead is not None and "meter_overhead" in figures:
                out.append(overhead)
        if "autoattack" in figures:
            progress("autoattack")
            out.append(autoattack_time(subject, points=aa_points))
    if "quickstart" in figures:
        from bench.speed.quickstart import quickstart_figure

        progress("quickstart")
        out.append(quickstart_figure(quickstart))
    return out


def rows(figures: list[Figure], *, bench_id: str, threads: int, device: torch.device) -> list[dict]:
    """``speed`` table rows, with what the numbers depend on beside them."""
    import pandas as pd

    from bench.hardware import cpu_model_name
    from bench.provenance import host, load_avg, versions_json

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else cpu_model_name())
    now = pd.Timestamp.now(tz="UTC")
    return [{
        "bench_id": bench_id, "figure": f.figure, "value": f.value, "reference": f.reference,
        "unit": f.unit, "ratio": f.ratio, "ratio_meaning": f.ratio_meaning,
        "target": f.target, "target_met": f.target_met,
        "detail": json.dumps(f.detail, sort_keys=True, default=str),
        "hardware": f"{device.type}-{threads}t", "device_name": device_name,
        "threads": threads, "host": host(), "versions": versions_json(), "created_at": now,
        "load_avg": load_avg(),
    } for f in figures]
