"""perbench bench: PERBench's speed against plain PyTorch loops, stored with the leaderboard."""
from __future__ import annotations

import argparse
import os
import sys
import time

from bench.cli._common import UsageError, leaderboard_dir, positive_int, results_of
from bench.speed import DEFAULT_FIGURES, FIGURES


def cmd_bench(args: argparse.Namespace) -> int:
    import hashlib

    import torch
    from tabulate import tabulate
    from tqdm.auto import tqdm

    from bench.formats import format_number as _num
    from bench.results import store
    from bench.speed import figures as speed

    board = leaderboard_dir(args.leaderboard)
    figures = tuple(f.strip() for f in args.figures.split(",") if f.strip())
    if args.quickstart and "quickstart" not in figures:
        figures += ("quickstart",)
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise UsageError(f"--figures: unknown {', '.join(unknown)}; allowed: "
                         f"{', '.join(FIGURES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    device = torch.device(args.device)
    from bench.api import Execution

    execution = Execution(precision=args.precision, channels_last=args.channels_last,
                          compile=args.compile)
    try:
        if args.synthetic:
            from bench.archs import ARCHS

            if args.synthetic not in ARCHS.list():
                raise ValueError(f"--synthetic: unknown arch {args.synthetic!r}; allowed: "
                                 f"{', '.join(ARCHS.list())}")
            subject = speed.synthetic_subject(args.synthetic, device, images=args.images)
        else:
            subject = speed.load_subject(board, method=args.method, arch=args.arch,
                                         seed=args.seed, run_id=args.run, device=device)
        speed.check_subject(subject, figures)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"measuring {', '.join(figures)} on {subject.name}, {args.threads} threads, "
          f"{device.type}, training {execution.precision}"
          f"{', channels_last' if execution.channels_last else ''}"
          f"{', compiled' if execution.compile else ''}", file=sys.stderr)
    bar = tqdm(total=len(figures), desc="bench", unit="figure", disable=args.quiet)
    started: list[str] = []

    def progress(name: str) -> None:  # called as each figure starts
        if started:
            bar.update(1)
        started.append(name)
        bar.set_postfix_str(name)

    figs = speed.measure(subject, figures, threads=args.threads, points=args.points,
                         images=args.images, repeats=args.repeats, aa_points=args.aa_points,
                         execution=execution, batch_size=args.batch_size, progress=progress)
    bar.update(len(figures) - bar.n)
    bar.close()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    bench_id = hashlib.sha1(f"{stamp}{os.uname().nodename}{os.getpid()}".encode()).hexdigest()[:16]
    rows = speed.rows(figs, bench_id=bench_id, threads=args.threads, device=device)
    table = [[f.figure, _num(f.value), _num(f.reference), f.unit, _num(f.ratio), f.ratio_meaning,
              "" if f.target is None else ("<= " if f.lower_is_better else ">= ") + _num(f.target),
              {True: "yes", False: "NO", None: ""}[f.target_met]] for f in figs]
    print(tabulate(table, headers=["figure", "PERBench", "reference", "unit", "ratio",
                                   "ratio is", "target", "met"], disable_numparse=True))
    print(f"machine: {rows[0]['device_name']}, {args.threads} threads, host {rows[0]['host']}")
    if not args.no_save:
        path = store.write_cell(results_of(board), "speed", bench_id, rows)
        print(f"saved to {path}")
    return 0


def add_parsers(sub) -> None:
    bench = sub.add_parser("bench", help="measure PERBench's speed against plain PyTorch loops "
                                         "in the same run; store it with the leaderboard")
    bench.add_argument("leaderboard", nargs="?", default="leaderboards/fashion-mnist",
                       help="the leaderboard whose trained checkpoint the figures use "
                            "(default: leaderboards/fashion-mnist)")
    bench.add_argument("--method", default="pgd_at", help="the run's method (default pgd_at)")
    bench.add_argument("--arch", help="the run's arch (default: the grid's first)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--run", help="a run_id instead of --method/--arch/--seed")
    bench.add_argument("--figures", default=",".join(DEFAULT_FIGURES),
                       help="comma-separated, from: " + ", ".join(FIGURES))
    bench.add_argument("--quickstart", action="store_true",
                       help="also run the quickstart from scratch (minutes; py-spy for its "
                            "compute share)")
    bench.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--points", type=positive_int, default=1000, help="PGD-10 evaluation points")
    bench.add_argument("--images", type=positive_int, default=2048,
                       help="training images per timed epoch (default 2048)")
    bench.add_argument("--aa-points", type=positive_int, default=200, help="AutoAttack points")
    bench.add_argument("--batch-size", type=positive_int,
                       help="training figures' batch size (default: the leaderboard's; 128 "
                            "with --synthetic)")
    bench.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                       help="training figures: bf16 autocast (and a bf16 matmul peak)")
    bench.add_argument("--channels-last", action="store_true",
                       help="training figures: NHWC model and batches")
    bench.add_argument("--compile", action="store_true",
                       help="training figures: torch.compile (warm-up excluded)")
    bench.add_argument("--synthetic", metavar="ARCH",
                       help="train ARCH (untrained) on random 3x32x32 images instead of the "
                            "leaderboard's checkpoint: throughput figures only")
    bench.add_argument("--repeats", type=positive_int, default=3, help="best of N, interleaved")
    bench.add_argument("--no-save", action="store_true", help="print only; write no speed row")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(fn=cmd_bench)
