"""The figures: each times PERBench and its reference side by side (see bench.speed)."""
from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.api import Execution
from bench.measures import FlopMeter
from bench.speed import DEFAULT_FIGURES, FIGURES, Figure, reference
from bench.speed.quickstart import quickstart_figure


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
    trained: bool = True  # False: synthetic data and weights, for throughput figures only
    batch_size: int = 128  # the training figures' default: the leaderboard's batch size


def timed(fn: Callable[[], object], device: torch.device | None = None) -> tuple[float, object]:
    """(seconds, result) of one call. On CUDA the time is read from CUDA events recorded
    around the call on the current stream (the GPU's own clock, not the host's view of an
    asynchronous queue), synchronised once at the end."""
    if device is not None and device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3, out
    start_s = time.perf_counter()
    out = fn()
    return time.perf_counter() - start_s, out


def best_of(fn: Callable[[], object], repeats: int,
            device: torch.device | None = None) -> tuple[float, object]:
    """(fastest time of ``repeats`` calls, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        seconds, out = timed(fn, device)
        best = min(best, seconds)
    return best, out


def interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                device: torch.device | None = None,
                rounds: dict[str, list[float]] | None = None) -> dict[str, tuple[float, object]]:
    """Best-of-``repeats`` for several functions, alternated so that a disturbance of the
    machine (another process, a frequency change) hits every side alike. ``rounds``, if
    given, receives every round's time per side (for paired ratios)."""
    best: dict[str, float] = dict.fromkeys(fns, float("inf"))
    out: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, out[name] = timed(fn, device)
            best[name] = min(best[name], seconds)
            if rounds is not None:
                rounds.setdefault(name, []).append(seconds)
    return {name: (best[name], out[name]) for name in fns}


def paired_ratio(rounds: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b), each pair taken back to back. On a shared
    VM whose speed drifts by ±10% over seconds, the two sides of one round see the same
    machine, so this is steadier than comparing two best-ofs taken at different moments."""
    return statistics.median(ta / tb for ta, tb in zip(rounds[a], rounds[b], strict=True))


# -- the figures -------------------------------------------------------------------------

def matmul_peak(device: torch.device, n: int = 1024, repeats: int = 20,
                dtype: torch.dtype = torch.float32) -> Figure:
    """Float32 (or ``dtype``) matmul FLOP/s at the current thread count: the roof the
    training figures are a fraction of. n=1024 keeps one product well above 10 ms on two
    cores; larger sizes gave the same rate here."""
    product, flops, n = _matmul(device, dtype, n)
    seconds, _ = best_of(product, repeats, device)
    return Figure("matmul_peak", flops / seconds / 1e9, "GFLOP/s",
                  detail={"n": n, "dtype": str(dtype).removeprefix("torch."), "seconds": seconds})


def _matmul(device: torch.device, dtype: torch.dtype, n: int = 1024,
            ) -> tuple[Callable[[], object], int, int]:
    """(one n×n product, its FLOPs, n), warmed up: thread pool, caches, cuBLAS heuristics."""
    if device.type == "cuda":
        n = max(n, 8192)  # a GPU needs a large product to reach its peak
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (lambda: a @ b), 2 * n**3, n


def pgd10_eval(subject: Subject, points: int = 1000, batch_size: int | None = None,
               repeats: int = 3, steps: int = 10, target: float = 1.5) -> Figure:
    """PGD-10 robust accuracy of ``points`` test points: ``evaluate_attack`` against the
    plain loop; ratio = PERBench throughput / plain throughput."""
    from bench.attacks import ATTACKS, evaluate_attack
    from bench.attacks.evaluate import eval_batch_size

    batch_size = batch_size or eval_batch_size(subject.test_x.device)
    model = subject.model.eval()
    x, y = subject.test_x[:points], subject.test_y[:points]
    attack = ATTACKS.create("pgd", norm="Linf", eps=subject.eps, steps=steps)
    alpha = attack.opts["alpha"]
    times = interleaved({
        "perbench": lambda: evaluate_attack(model, x, y, attack, seed=0, batch_size=batch_size),
        "plain": lambda: reference.pgd_robust(
            model, x, y, eps=subject.eps, alpha=alpha, steps=steps, batch_size=batch_size,
            generator=torch.Generator(device=x.device).manual_seed(0)),
    }, repeats, x.device)
    (t_ours, result), (t_plain, plain_robust) = times["perbench"], times["plain"]
    n = len(y)
    return Figure("pgd10_eval", n / t_ours, "points/s", reference=n / t_plain,
                  ratio=t_plain / t_ours, ratio_meaning="PERBench / plain PGD loop throughput",
                  target=target, detail={
                      "points": n, "batch_size": batch_size, "eps": subject.eps,
                      "clean_acc": result.clean_acc, "robust_acc": result.robust_acc,
                      "plain_robust_acc": plain_robust.float().mean().item(),
                      "perbench_s": t_ours, "plain_s": t_plain, "model": subject.name})


def _train_once(subject: Subject, method: str, config: dict, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, metered: bool, execution: Execution, seed: int = 0):
    from bench.api import Budget, ThreatModel, TrainContext
    from bench.attacks import perturb
    from bench.plugins import compose
    from bench.work.loop import train

    comp = compose(method, config)
    torch.manual_seed(seed)
    model = subject.build().to(x.device)
    empty = x[:0]
    ctx = TrainContext(model=model, train_x=x, train_y=y, val_x=empty, val_y=y[:0],
                       num_classes=int(subject.test_y.max()) + 1, budget=Budget(1, batch_size),
                       threat=ThreatModel("Linf", subject.eps), device=x.device, seed=seed,
                       generator=torch.Generator(device=x.device).manual_seed(seed),
                       attack=perturb, execution=execution)
    return train(comp.base, comp.modifiers, ctx, meter=FlopMeter(enabled=metered))


def train_throughput(subject: Subject, method: str, images: int = 1024,
                     batch_size: int | None = None, repeats: int = 3, pgd_steps: int = 7, execution: Execution | None = None,
                     target: float | None = None) -> tuple[Figure, Figure | None]:
    """One epoch of ``method`` (erm or pgd_at) on ``images`` training images through the
    engine (metered and unmetered) and through the plain DataLoader loop, both run as
    ``execution`` says (precision, layout, compile), interleaved with a matmul in the same
    precision. Returns the throughput figure (ratio: achieved FLOP/s over that matmul's
    peak; target 60% on CPU, 35% on CUDA per docs/conventions.md#speed-figures-and-the-allocator)
    and, for pgd_at, the metering-overhead figure. A first untimed epoch of each side
    absorbs warm-up (torch.compile, cuDNN's algorithm search, allocator growth)."""
    if method not in ("erm", "pgd_at"):
        raise ValueError(f"train_throughput measures erm and pgd_at, not {method!r}")
    execution = execution or Execution()
    batch_size = batch_size or subject.batch_size
    device = subject.train_x.device
    if target is None:
        target = 0.35 if device.type == "cuda" else 0.6
    x, y = subject.train_x[:images], subject.train_y[:images]
    adversarial = method == "pgd_at"
    config = {"steps": pgd_steps, "lr": 0.01, "schedule": "constant"} if adversarial else {
        "lr": 0.01, "schedule": "constant"}
    plain_model = subject.build().to(device)
    # The plain loop's data lives on the host and comes through a DataLoader, as in the
    # textbook loop; PERBench keeps the dataset resident on the device.
    x_host, y_host = x.cpu(), y.cpu()
    sides = {
        "metered": lambda: _train_once(subject, method, config, x, y, batch_size, True,
                                       execution),
        "unmetered": lambda: _train_once(subject, method, config, x, y, batch_size, False,
                                         execution),
        "plain": lambda: reference.train_epoch(
            copy.deepcopy(plain_model), x_host, y_host, batch_size=batch_size,
            adversarial=adversarial, eps=subject.eps, alpha=subject.eps / 4, steps=pgd_steps,
            device=device, precision=execution.precision,
            channels_last=execution.channels_last, compile=execution.compile),
    }
    if execution.compile or device.type == "cuda":
        for fn in sides.values():
            fn()
    # The roof is timed in the same rounds as the training, so a slow spell of a shared
    # machine lowers both: best of 10 products per round.
    product, product_flops, _ = _matmul(
        device, torch.bfloat16 if execution.precision == "bf16" else torch.float32)
    product_seconds: list[float] = []
    sides["matmul"] = lambda: product_seconds.append(best_of(product, 10, device)[0])
    rounds: dict[str, list[float]] = {}
    times = interleaved(sides, repeats, device, rounds)
    t_metered, stats = times["metered"]
    t_unmetered, _ = times["unmetered"]
    t_plain, _ = times["plain"]
    peak = product_flops / min(product_seconds) / 1e9
    flops = stats.train_flops
    achieved = flops / t_unmetered / 1e9
    n = len(y)
    throughput = Figure(
        f"train_{method}", n / t_unmetered, "images/s", reference=n / t_plain,
        ratio=achieved / peak, ratio_meaning="achieved training GFLOP/s / matmul peak GFLOP/s",
        target=target, detail={
            "images": n, "batch_size": batch_size, "train_flops": flops,
            "achieved_gflops": achieved, "peak_gflops": peak,
            "peak_dtype": "bfloat16" if execution.precision == "bf16" else "float32",
            "vs_plain": t_plain / t_unmetered,
            "vs_plain_paired": paired_ratio(rounds, "plain", "unmetered"),
            "perbench_s": t_unmetered, "plain_s": t_plain,
            "metered_s": t_metered, "arch": subject.arch, "subject": subject.name,
            **dataclasses.asdict(execution),
            **({"pgd_steps": pgd_steps} if adversarial else {})})
    overhead = None
    if adversarial:
        cost = paired_ratio(rounds, "metered", "unmetered") - 1
        overhead = Figure("meter_overhead", 100 * cost, "%", ratio=cost,
                          ratio_meaning="median over rounds of metered / unmetered training "
                                        "time - 1 (pgd_at)",
                          target=0.05, lower_is_better=True, detail={
                              "metered_s": t_metered, "unmetered_s": t_unmetered,
                              "rounds_metered_s": rounds["metered"],
                              "rounds_unmetered_s": rounds["unmetered"],
                              "method": method, "images": n, **dataclasses.asdict(execution)})
    return throughput, overhead


def autoattack_time(subject: Subject, points: int = 200, target: float = 1.0) -> Figure:
    """Standard AutoAttack on ``points`` test points through ``evaluate_attack`` vs
    pyautoattack's ``run_standard_evaluation`` called directly (once each: minutes)."""
    from bench.attacks import ATTACKS, evaluate_attack

    model = subject.model.eval()
    x, y = subject.test_x[:points], subject.test_y[:points]
    attack = ATTACKS.create("autoattack", norm="Linf", eps=subject.eps)
    t_ours, result = best_of(lambda: evaluate_attack(model, x, y, attack, seed=0,
                                                     batch_size=points), 1, x.device)
    t_direct, direct = best_of(lambda: reference.autoattack_robust(model, x, y, eps=subject.eps,
                                                                    seed=0), 1, x.device)
    return Figure("autoattack", t_ours, "s", reference=t_direct, ratio=t_direct / t_ours,
                  ratio_meaning="pyautoattack direct time / PERBench time", target=target,
                  detail={"points": len(y), "robust_acc": result.robust_acc,
                          "direct_robust_acc": direct.float().mean().item(),
                          "clean_acc": result.clean_acc, "model": subject.name})


# -- the subject: a trained checkpoint of a leaderboard ------------------------------------

def load_subject(board: Path, method: str = "pgd_at", arch: str | None = None,
                 seed: int = 0, run_id: str | None = None,
                 device: torch.device | None = None) -> Subject:
    """A finished run of ``board`` (default: its ``pgd_at`` run, seed 0, first arch) with
    its dataset. Raises ValueError naming what is missing."""
    from bench.grid.spec import load_spec, results_location
    from bench.results import store
    from bench.work.model import build_model, load_dataset

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
        build=lambda: build_model(data, row["arch"]), batch_size=spec.budget.batch_size)


def synthetic_subject(arch: str, device: torch.device, images: int = 1024,
                      shape: tuple[int, int, int] = (3, 32, 32), classes: int = 10,
                      eps: float = 8 / 255, seed: int = 0) -> Subject:
    """Random CIFAR-shaped images and labels and an untrained ``arch``: what training
    throughput needs (FLOPs and time do not depend on pixel values), without a dataset or
    a trained checkpoint. The evaluation figures refuse it (their speed depends on how
    robust the model is)."""
    from bench.archs import ARCHS

    g = torch.Generator().manual_seed(seed)
    x = torch.rand((images, *shape), generator=g)
    y = torch.randint(0, classes, (images,), generator=g)

    def build() -> nn.Module:
        return ARCHS.create(arch, num_classes=classes, in_channels=shape[0],
                            image_size=shape[-1], mean=(0.5,) * shape[0], std=(0.25,) * shape[0])

    return Subject(name=f"synthetic {shape[0]}x{shape[1]}x{shape[2]} · {arch} (untrained)",
                   model=build().to(device).eval(), arch=arch, train_x=x.to(device),
                   train_y=y.to(device), test_x=x[:0].to(device), test_y=y.to(device),
                   eps=eps, build=build, trained=False)


# -- all together ----------------------------------------------------------------------

def check_subject(subject: Subject, figures: tuple[str, ...]) -> None:
    """ValueError when ``figures`` ask for an evaluation figure on an untrained (synthetic)
    subject: attack speed depends on how robust the model is."""
    needs_trained = sorted({"pgd10_eval", "autoattack"} & set(figures))
    if needs_trained and not subject.trained:
        raise ValueError(f"{', '.join(needs_trained)} need a trained checkpoint, not "
                         f"{subject.name}; ask for --figures from matmul_peak, train_erm, "
                         "train_pgd_at, meter_overhead")


def measure(subject: Subject, figures: tuple[str, ...] = DEFAULT_FIGURES, *,
            threads: int = 2, points: int = 1000, images: int = 2048, repeats: int = 3,
            aa_points: int = 200, quickstart: Path | None = None,
            execution: Execution | None = None, batch_size: int | None = None,
            progress: Callable[[str], None] = lambda name: None) -> list[Figure]:
    """The requested figures, in order, at ``threads`` torch threads; the training figures
    run as ``execution`` says, against a matmul peak in its precision."""
    from bench.work.model import threads as with_threads

    unknown = set(figures) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figures {sorted(unknown)}; allowed: {', '.join(FIGURES)}")
    check_subject(subject, figures)
    execution = execution or Execution()
    device = subject.train_x.device
    out: list[Figure] = []
    with with_threads(threads):
        if "matmul_peak" in figures:
            progress("matmul_peak")
            out.append(matmul_peak(device, dtype=torch.bfloat16
                                   if execution.precision == "bf16" else torch.float32))
        if "pgd10_eval" in figures:
            progress("pgd10_eval")
            out.append(pgd10_eval(subject, points=points, repeats=repeats))
        for method in ("erm", "pgd_at"):
            wanted = f"train_{method}" in figures or (method == "pgd_at"
                                                      and "meter_overhead" in figures)
            if not wanted:
                continue
            progress(f"train_{method}")
            fig, overhead = train_throughput(subject, method, images=images,
                                             batch_size=batch_size or subject.batch_size,
                                             repeats=repeats,
                                             execution=execution)
            if f"train_{method}" in figures:
                out.append(fig)
            if overhead is not None and "meter_overhead" in figures:
                out.append(overhead)
        if "autoattack" in figures:
            progress("autoattack")
            out.append(autoattack_time(subject, points=aa_points))
    if "quickstart" in figures:
        progress("quickstart")
        out.append(quickstart_figure(quickstart))
    return out


def rows(figures: list[Figure], *, bench_id: str, threads: int, device: torch.device) -> list[dict]:
    """``speed`` table rows, with what the numbers depend on beside them."""
    import pandas as pd

    from bench.allocator import current_setting
    from bench.hardware import cpu_model_name
    from bench.results.provenance import host, load_avg, versions_json

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else cpu_model_name())
    now = pd.Timestamp.now(tz="UTC")
    allocator = current_setting()  # what this process's malloc does changes CPU timings
    return [{
        "bench_id": bench_id, "figure": f.figure, "value": f.value, "reference": f.reference,
        "unit": f.unit, "ratio": f.ratio, "ratio_meaning": f.ratio_meaning,
        "target": f.target, "target_met": f.target_met,
        "detail": json.dumps({**f.detail, "allocator": allocator}, sort_keys=True, default=str),
        "hardware": f"{device.type}-{threads}t", "device_name": device_name,
        "threads": threads, "host": host(), "versions": versions_json(), "created_at": now,
        "load_avg": load_avg(),
    } for f in figures]
