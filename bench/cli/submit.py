"""perbench submit and eval-model: methods and models from outside the repository."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.cli._common import UsageError, leaderboard_dir, results_of


def cmd_submit(args: argparse.Namespace) -> int:
    import json

    # Here, not at the top: submitting imports torch and the engine; `perbench --help`
    # and the other commands must not pay for it.
    from bench.execute.submission import submit
    from bench.plugins import ENTRY_POINT_PREFIX

    board = leaderboard_dir(args.leaderboard)
    source = args.source
    if not source.endswith(".py") and not Path(source).exists():
        source = ENTRY_POINT_PREFIX + source.removeprefix(ENTRY_POINT_PREFIX)
    try:
        config = json.loads(args.config) if args.config else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config: not valid JSON ({exc}); e.g. --config '{{\"sigma\": 0.1}}'") from None
    start = time.perf_counter()
    report = submit(source, board, label=args.name, method=args.method, on=args.on,
                    config=config, authors=args.authors, link=args.link, license=args.license,
                    timeout=args.timeout, validate_timeout=args.validate_timeout,
                    show_progress=not args.quiet, sandbox=not args.no_sandbox)
    run = report.run
    print(f"submission {report.submission_id} ({report.label} = {report.composition}): trained "
          f"{run.trained}, evaluated {run.evaluated}, timed {run.timed}, failed "
          f"{len(run.failed)}, already done {run.skipped} cells in "
          f"{time.perf_counter() - start:.1f}s")
    for line in run.failed:
        print(f"  FAILED {line}")
    from bench.views.leaderboard import ranks

    for line in ranks(results_of(board), report.label, board):
        print(line)
    print(f"see it: perbench show {board}   or   perbench app {board}")
    return 0


def cmd_eval_model(args: argparse.Namespace) -> int:
    from bench.interop.external import eval_model

    board = leaderboard_dir(args.leaderboard)
    if (args.arch is None) == (args.factory is None):
        raise UsageError("give exactly one of --arch NAME (see `perbench ls archs`) or "
                         "--factory path/to/file.py:function (or module:function)")
    arch = args.arch or f"py:{args.factory}"
    start = time.perf_counter()
    try:
        run, report = eval_model(board, Path(args.checkpoint), arch=arch, label=args.name,
                                 dataset=args.dataset, authors=args.authors, link=args.link,
                                 license=args.license, show_progress=not args.quiet)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"{args.name} (external, run {run.key}): evaluated {report.evaluated}, timed "
          f"{report.timed}, failed {len(report.failed)}, already done {report.skipped} cells "
          f"in {time.perf_counter() - start:.1f}s")
    for line in report.failed:
        print(f"  FAILED {line}")
    from bench.views.leaderboard import ranks

    for line in ranks(results_of(board), args.name, board):
        print(line)
    return 0


def add_parsers(sub) -> None:
    smt = sub.add_parser("submit", help="run a method from a file (or an installed entry "
                                        "point) through a leaderboard's grid")
    smt.add_argument("source", help="path/to/method.py, or the name of a `perbench.methods` "
                                    "entry point of an installed package")
    smt.add_argument("--leaderboard", required=True, help="leaderboards/<name>")
    smt.add_argument("--name", help="its name on the leaderboard (default: the method name)")
    smt.add_argument("--method", help="which method, when the file registers several")
    smt.add_argument("--on", help="the base a modifier runs on, e.g. pgd_at")
    smt.add_argument("--config", help="options as JSON, e.g. '{\"sigma\": 0.1}'")
    smt.add_argument("--authors")
    smt.add_argument("--link", help="paper or code URL")
    smt.add_argument("--license")
    smt.add_argument("--timeout", type=float, default=3 * 3600,
                     help="seconds one training cell may take before it is stopped and "
                          "marked failed (default 3 h)")
    smt.add_argument("--validate-timeout", type=float, default=300,
                     help="seconds for the 2-step trial run (default 300)")
    smt.add_argument("--quiet", action="store_true", help="no progress bars")
    smt.add_argument("--no-sandbox", action="store_true",
                     help="run the method outside the bubblewrap sandbox: only for code you "
                          "trust (recorded in runs.sandbox)")
    smt.set_defaults(fn=cmd_submit)
    evm = sub.add_parser("eval-model", help="evaluate a model trained elsewhere on a "
                                            "leaderboard's attacks, corruptions and latency")
    evm.add_argument("leaderboard", help="leaderboards/<name>")
    evm.add_argument("--checkpoint", required=True,
                     help="a state dict saved with torch.save (loaded with weights_only=True)")
    evm.add_argument("--arch", help="a registry architecture (perbench ls archs), timm:<name> too")
    evm.add_argument("--factory", help="path/to/file.py:function or module:function returning "
                                       "the nn.Module (called with num_classes, in_channels, "
                                       "image_size, mean, std as it accepts them)")
    evm.add_argument("--name", required=True, help="its name on the leaderboard")
    evm.add_argument("--dataset", help="which of the grid's datasets (default: the first)")
    evm.add_argument("--authors")
    evm.add_argument("--link")
    evm.add_argument("--license")
    evm.add_argument("--quiet", action="store_true")
    evm.set_defaults(fn=cmd_eval_model)
