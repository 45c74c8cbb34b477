"""perbench run: fill in the missing cells of a grid, or estimate them (--plan)."""
from __future__ import annotations

import argparse
import time

from bench.cli._common import UsageError, leaderboard_dir, results_of


def cmd_run(args: argparse.Namespace) -> int:
    from bench.execute.sequential import run_local
    from bench.grid.spec import load_spec

    board = leaderboard_dir(args.leaderboard)
    spec = load_spec(board / "grid.yaml")
    results = results_of(board, spec)
    if args.plan:
        from bench.execute.estimate import make_plan
        from bench.execute.estimate import render as render_plan
        from bench.execute.schedule import pending
        from bench.work.kinds import expand

        grid = expand(spec)
        todo = pending(grid, results, args.retry_failed)
        print(render_plan(make_plan(grid, todo, results), spec.name))
        return 0
    start = time.perf_counter()
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    if args.executor == "ray":
        try:
            from bench.execute.ray_cluster import run_ray
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'perbench[ray]'") from None
        report = run_ray(spec, results, address=args.address,
                         retry_failed=args.retry_failed, show_progress=not args.quiet,
                         max_retries=args.max_retries, gpus_per_cell=args.gpus_per_cell,
                         sandbox=not args.no_sandbox)
    elif args.address is not None:
        raise UsageError("--address is for --executor ray")
    elif args.workers and args.workers > 1:
        from bench.execute.processes import run_processes

        report = run_processes(spec, results, args.workers,
                               retry_failed=args.retry_failed, show_progress=not args.quiet,
                               max_retries=args.max_retries, sandbox=not args.no_sandbox)
    else:
        report = run_local(spec, results, retry_failed=args.retry_failed,
                           show_progress=not args.quiet, sandbox=not args.no_sandbox)
    took = time.perf_counter() - start
    print(f"{spec.name}: trained {report.trained}, evaluated {report.evaluated}, "
          f"timed {report.timed}, failed {len(report.failed)}, already done {report.skipped} "
          f"cells in {took:.1f}s")
    for line in report.failed:
        print(f"  FAILED {line}")
    if not args.quiet:
        from bench.views.render import render

        print(render(results, "table", board=board))
    return 0


def add_parsers(sub) -> None:
    run = sub.add_parser("run", help="fill in the missing cells of a leaderboard's grid")
    run.add_argument("leaderboard", help="leaderboards/<name> (holding grid.yaml)")
    run.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    run.add_argument("--quiet", action="store_true", help="no progress bars or final table")
    run.add_argument("--no-sandbox", action="store_true",
                     help="train in this process instead of the bubblewrap sandbox: for "
                          "trusted code only (recorded in runs.sandbox)")
    run.add_argument("--plan", action="store_true",
                     help="run nothing: list the cells still to run, with times estimated "
                          "from this grid's finished cells")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local (default) or ray: cells as tasks on a Ray cluster")
    run.add_argument("--address", help="Ray cluster address: auto (the cluster this machine "
                                       "joined) or HOST:PORT; default: start a local Ray")
    run.add_argument("--workers", type=int, help="local executor: run cells in N processes")
    run.add_argument("--gpus-per-cell", type=float, default=0.0,
                     help="--executor ray: GPUs each cell's task asks for (e.g. 1, or 0.5 to "
                          "share one GPU between two cells)")
    run.add_argument("--max-retries", type=int, default=2,
                     help="parallel executors: times a cell is retried when its worker dies")
    run.set_defaults(fn=cmd_run)
