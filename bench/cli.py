"""``perbench``: run grids, show and compare leaderboards, list registries, start the app.

Errors a user can cause print one actionable message and exit with code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench.speed import DEFAULT_FIGURES, FIGURES

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _leaderboard_dir(path: str) -> Path:
    p = Path(path)
    if p.name == "grid.yaml":
        p = p.parent
    if not p.is_dir():
        raise UsageError(f"{p}: no such leaderboard folder (expected leaderboards/<name>/ "
                         "holding grid.yaml)")
    return p


def _results(board: Path, spec=None):
    """The board's results location: a folder, or the fsspec URI its grid.yaml names."""
    from bench.spec import results_location

    return results_location(board, spec)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.executor import run_local
    from bench.spec import load_spec

    board = _leaderboard_dir(args.leaderboard)
    spec = load_spec(board / "grid.yaml")
    results = _results(board, spec)
    if args.plan:
        from bench.cells import expand
        from bench.executor import pending
        from bench.plan import make_plan
        from bench.plan import render as render_plan

        grid = expand(spec)
        todo = pending(grid, results, args.retry_failed)
        print(render_plan(make_plan(grid, todo, results), spec.name))
        return 0
    start = time.perf_counter()
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    if args.executor == "ray":
        try:
            from bench.parallel import run_ray
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'perbench[ray]'") from None
        report = run_ray(spec, results, address=args.address,
                         retry_failed=args.retry_failed, show_progress=not args.quiet,
                         max_retries=args.max_retries, gpus_per_cell=args.gpus_per_cell)
    elif args.address is not None:
        raise UsageError("--address is for --executor ray")
    elif args.workers and args.workers > 1:
        from bench.parallel import run_processes

        report = run_processes(spec, results, args.workers,
                               retry_failed=args.retry_failed, show_progress=not args.quiet,
                               max_retries=args.max_retries)
    else:
        report = run_local(spec, results, retry_failed=args.retry_failed,
                           show_progress=not args.quiet)
    took = time.perf_counter() - start
    print(f"{spec.name}: trained {report.trained}, evaluated {report.evaluated}, "
          f"timed {report.timed}, failed {len(report.failed)}, already done {report.skipped} "
          f"cells in {took:.1f}s")
    for line in report.failed:
        print(f"  FAILED {line}")
    if not args.quiet:
        from bench.show import render

        print(render(results, "table", board=board))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from bench.show import render

    board = _leaderboard_dir(args.leaderboard)
    print(render(_results(board), args.format, provenance=args.provenance, board=board))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd
    from tabulate import tabulate

    from bench.compare import compare, paper_table, per_run_metrics
    from bench.leaderboard import load_tables
    from bench.show import mce_reference

    board = _leaderboard_dir(args.leaderboard)
    metrics = per_run_metrics(load_tables(_results(board)), norm=args.norm, eps=args.eps,
                              mce_reference=mce_reference(_results(board), board))
    try:
        table = compare(metrics, args.a, args.b)
    except ValueError as exc:
        raise UsageError(f"{board}: {exc}") from None
    if args.format == "csv":
        print(table.to_csv(index=False), end="")
        return 0
    shown = pd.concat([table[["dataset", "arch"]].reset_index(drop=True),
                       paper_table(table)[["metric", "a", "b"]]], axis=1)
    shown = shown.rename(columns={"a": args.a, "b": args.b})
    print(f"{args.b} against {args.a}: value ± std over seeds (delta); * = the delta exceeds "
          "the seed-to-seed spread (sum of the two stds)")
    print(tabulate(shown, headers="keys", showindex=False, disable_numparse=True))
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from bench.claims import check_names, evaluate, load_claims, render
    from bench.compare import per_run_metrics
    from bench.leaderboard import load_tables
    from bench.show import mce_reference
    from bench.spec import load_spec

    board = _leaderboard_dir(args.leaderboard)
    path = Path(args.file) if args.file else board / "claims.yaml"
    claims = load_claims(path)
    spec = load_spec(board)
    results = _results(board, spec)
    metrics = per_run_metrics(load_tables(results), norm=args.norm, eps=args.eps,
                              mce_reference=mce_reference(results, board))
    check_names(claims, metrics, [m.display for m in spec.methods], path, spec.archs)
    result = evaluate(claims, metrics)
    if args.format == "csv":
        print(result.to_csv(index=False), end="")
        return 0
    print(f"{board.name}: each claim's metrics, baseline and method as mean ± std over seeds "
          "(difference: points for accuracies, relative for costs); verdicts as in "
          "bench/claims.py: beyond the seed-to-seed spread (sum of the two stds) or not")
    print(render(result, args.format))
    counts = result.drop_duplicates("claim_id")["claim_verdict"].value_counts()
    print("claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from bench.spec import load_spec
    from bench.store import read_table
    from bench.transfer_view import render, transfer_long

    board = _leaderboard_dir(args.leaderboard)
    spec = load_spec(board)
    if spec.transfer is None:
        raise UsageError(f"{board / 'grid.yaml'}: the grid has no transfer: section, so no "
                         "transfer matrix (add e.g. transfer: {attack: {name: pgd, norm: Linf, "
                         "eps: 0.1, steps: 20}})")
    results = _results(board, spec)
    runs = read_table(results, "runs")
    datasets = sorted(runs["dataset"].unique()) if not runs.empty else []
    if args.dataset is not None and args.dataset not in datasets:
        raise UsageError(f"--dataset {args.dataset!r}: {board.name} has runs on "
                         f"{', '.join(datasets) or 'no dataset yet'}")
    long = transfer_long(read_table(results, "transfer"), runs, args.value, args.dataset)
    if long.empty:
        print(f"{board.name}: no transfer results yet; `perbench run {board}` crafts them "
              "after the runs they need are trained")
        return 0
    if args.format == "csv":
        print(long.to_csv(index=False), end="")
        return 0
    for dataset, part in long.groupby("dataset", sort=True):
        a = part.iloc[0]
        print(f"{board.name} · {dataset}: target accuracy ({args.value}, %) on {a['attack']} "
              f"ε={a['eps']:g} examples crafted on each source, {int(part['n_examples'].max())} "
              "points; the diagonal is the white-box attack. Flag: another source's examples "
              "fool the target more than its own gradients do (gradient masking).")
        print(render(part, args.value, args.format))
    return 0


def cmd_checks(args: argparse.Namespace) -> int:
    from bench.checks_view import checks_long, render
    from bench.spec import load_spec
    from bench.store import read_table

    board = _leaderboard_dir(args.leaderboard)
    spec = load_spec(board)
    results = _results(board, spec)
    if args.recompute:
        if not spec.checks.enabled:
            raise UsageError(f"{board / 'grid.yaml'}: checks are disabled (checks: {{enabled: "
                             "false}}), so --recompute has nothing to run")
        _recompute_checks(spec, results, quiet=args.quiet)
    long = checks_long(read_table(results, "checks"), read_table(results, "runs"))
    if long.empty:
        print(f"{board.name}: no checks yet; `perbench run {board}` runs them after each "
              "run's evaluations")
        return 0
    if args.format != "csv":
        print(f"{board.name}: reliability checks per run (bench/checks.py); a failed check "
              "marks the run on `perbench show` and in the app")
    print(render(long, args.format))
    return 0


def _recompute_checks(spec, results, quiet: bool = False) -> None:
    """Rewrite every trained run's checks over its robustness rows as they stand: after an
    upgrade of PERBench's checks, or evaluations added by hand. Model-level rows already
    stored are kept (they need the model; the result-level ones need only the table)."""
    from tqdm import tqdm

    from bench import tasks
    from bench.cells import expand
    from bench.executor import robustness_keys

    grid = expand(spec)
    failed = []
    for run in tqdm(grid.train, desc="checks", unit="run", disable=quiet):
        outcome = tasks.check(run, robustness_keys(grid, run.key), results, spec.checks.n_eval)
        failed += outcome.failed
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)


def cmd_robustbench_export(args: argparse.Namespace) -> int:
    import json

    from bench.leaderboard import load_tables
    from bench.robustbench import export_entry

    board = _leaderboard_dir(args.leaderboard)
    try:
        entry = export_entry(load_tables(_results(board)), args.run,
                             threat_model=args.threat_model, eps=args.eps)
    except ValueError as exc:
        raise UsageError(f"{board}: {exc}") from None
    text = json.dumps(entry, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def cmd_robustbench_import(args: argparse.Namespace) -> int:
    from bench.robustbench import import_entries, reference_key
    from bench.store import write_cell

    board = _leaderboard_dir(args.leaderboard)
    rows = import_entries(args.path, args.dataset, args.threat_model)
    if not rows:
        raise UsageError(f"{args.path}: no valid RobustBench entries for {args.dataset} "
                         f"{args.threat_model}")
    key = reference_key(args.path, args.dataset, args.threat_model)
    path = write_cell(_results(board), "reference", key, rows)
    print(f"imported {len(rows)} RobustBench entries ({args.dataset}, {args.threat_model}) "
          f"into {path}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    import json

    from bench.submission import ENTRY_POINT_PREFIX, submit

    board = _leaderboard_dir(args.leaderboard)
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
                    show_progress=not args.quiet)
    run = report.run
    print(f"submission {report.submission_id} ({report.label} = {report.composition}): trained "
          f"{run.trained}, evaluated {run.evaluated}, timed {run.timed}, failed "
          f"{len(run.failed)}, already done {run.skipped} cells in "
          f"{time.perf_counter() - start:.1f}s")
    for line in run.failed:
        print(f"  FAILED {line}")
    for line in report.ranks:
        print(line)
    print(f"see it: perbench show {board}   or   perbench app {board}")
    return 0


def cmd_eval_model(args: argparse.Namespace) -> int:
    from bench.external import eval_model

    board = _leaderboard_dir(args.leaderboard)
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
    from bench.submission import ranks

    for line in ranks(_results(board), args.name, board):
        print(line)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    registry = _registries()[args.what]
    for name in registry.list(args.pattern):
        doc = registry.describe(name)
        print(f"{name:24s} {doc}" if doc else name)
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    app = Path(__file__).resolve().parent.parent / "app" / "Leaderboard.py"
    env = dict(os.environ)
    if args.leaderboard:
        env["PERBENCH_LEADERBOARD"] = str(_leaderboard_dir(args.leaderboard).resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
           "--server.port", str(args.port), "--browser.gatherUsageStats", "false"]
    # Become the server (exec, not a child): a signal to `perbench app` (Ctrl-C, a test's
    # terminate) then reaches streamlit itself instead of orphaning it.
    os.execve(sys.executable, cmd, env)


def _registries() -> dict:
    from bench.archs import ARCHS
    from bench.attacks import ATTACKS
    from bench.datasets import DATASETS
    from bench.hardware import HARDWARE
    from bench.plugins import METHODS, load_builtin_methods

    load_builtin_methods()
    return {"methods": METHODS, "datasets": DATASETS, "archs": ARCHS, "attacks": ATTACKS,
            "hardware": HARDWARE}


def cmd_bench(args: argparse.Namespace) -> int:
    import hashlib

    import torch
    from tabulate import tabulate
    from tqdm.auto import tqdm

    from bench import store
    from bench.show import format_number as _num
    from bench.speed import figures as speed

    board = _leaderboard_dir(args.leaderboard)
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
        path = store.write_cell(_results(board), "speed", bench_id, rows)
        print(f"saved to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fill in the missing cells of a leaderboard's grid")
    run.add_argument("leaderboard", help="leaderboards/<name> (holding grid.yaml)")
    run.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    run.add_argument("--quiet", action="store_true", help="no progress bars or final table")
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
    bench.add_argument("--threads", type=_positive_int, default=2, help="torch threads (default 2)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--points", type=_positive_int, default=1000, help="PGD-10 evaluation points")
    bench.add_argument("--images", type=_positive_int, default=2048,
                       help="training images per timed epoch (default 2048)")
    bench.add_argument("--aa-points", type=_positive_int, default=200, help="AutoAttack points")
    bench.add_argument("--batch-size", type=_positive_int,
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
    bench.add_argument("--repeats", type=_positive_int, default=3, help="best of N, interleaved")
    bench.add_argument("--no-save", action="store_true", help="print only; write no speed row")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(fn=cmd_bench)
    show = sub.add_parser("show", help="print a leaderboard ranked by AutoAttack robust accuracy")
    show.add_argument("leaderboard")
    show.add_argument("--format", default="table", choices=["table", "csv", "json", "markdown"])
    show.add_argument("--provenance", action="store_true",
                      help="also list each row's source (submission or built-in), code version "
                           "and config (csv and json always carry them)")
    show.set_defaults(fn=cmd_show)
    cmp = sub.add_parser("compare", help="two methods side by side: value ± std (delta)")
    cmp.add_argument("leaderboard")
    cmp.add_argument("a", help="the reference method (label), e.g. pgd_at")
    cmp.add_argument("b", help="the method set against it, e.g. pgd_at+caper")
    cmp.add_argument("--norm", choices=["Linf", "L2"], help="threat model of the robust columns")
    cmp.add_argument("--eps", type=float, help="ε of the robust columns")
    cmp.add_argument("--format", default="table", choices=["table", "csv"])
    cmp.set_defaults(fn=cmd_compare)
    checks = sub.add_parser("checks", help="the reliability checks: per check, runs judged and "
                                           "failed; every flagged run with what it saw")
    checks.add_argument("leaderboard")
    checks.add_argument("--recompute", action="store_true",
                        help="first rewrite every trained run's checks over its current results "
                             "(after upgrading PERBench, or adding evaluations by hand)")
    checks.add_argument("--format", default="table", choices=["table", "markdown", "csv"])
    checks.add_argument("--quiet", action="store_true", help="no progress bar")
    checks.set_defaults(fn=cmd_checks)
    transfer = sub.add_parser("transfer", help="the transfer matrix: each target's accuracy on "
                                               "examples crafted on each source")
    transfer.add_argument("leaderboard")
    transfer.add_argument("--value", default="acc", choices=["acc", "robust_acc"],
                          help="acc: target accuracy on the adversarial examples; robust_acc: "
                               "correct on both the clean point and its adversarial example")
    transfer.add_argument("--dataset", help="one dataset of the grid (default: each)")
    transfer.add_argument("--format", default="table", choices=["table", "markdown", "csv"])
    transfer.set_defaults(fn=cmd_transfer)
    claims = sub.add_parser("claims", help="the source papers' claims checked against the "
                                           "leaderboard's numbers (claims.yaml)")
    claims.add_argument("leaderboard")
    claims.add_argument("--file", help="claims file (default <leaderboard>/claims.yaml)")
    claims.add_argument("--norm", choices=["Linf", "L2"], help="threat model of the robust metrics")
    claims.add_argument("--eps", type=float, help="ε of the robust metrics")
    claims.add_argument("--format", default="table", choices=["table", "markdown", "csv"])
    claims.set_defaults(fn=cmd_claims)
    rb = sub.add_parser("robustbench", help="export runs to / import entries from RobustBench")
    rb_sub = rb.add_subparsers(dest="action", required=True)
    export = rb_sub.add_parser("export", help="one run as a RobustBench model_info JSON entry")
    export.add_argument("leaderboard")
    export.add_argument("--run", required=True, help="the run_id, e.g. trades-s0")
    export.add_argument("--threat-model", choices=["Linf", "L2"],
                        help="of the AutoAttack result (default: the most common one)")
    export.add_argument("--eps", type=float, help="ε of the AutoAttack result")
    export.add_argument("-o", "--output", help="write the JSON here instead of printing it")
    export.set_defaults(fn=cmd_robustbench_export)
    imp = rb_sub.add_parser("import", help="RobustBench entries as reference rows of a "
                                           "leaderboard (shown, never ranked)")
    imp.add_argument("leaderboard")
    imp.add_argument("path", help="a RobustBench clone (holding model_info/) or one JSON file")
    imp.add_argument("--dataset", required=True, help="e.g. cifar10")
    imp.add_argument("--threat-model", required=True, choices=["Linf", "L2"])
    imp.set_defaults(fn=cmd_robustbench_import)
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
    ls = sub.add_parser("ls", help="list a registry")
    ls.add_argument("what", choices=["methods", "datasets", "archs", "attacks", "hardware"])
    ls.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. 'resnet*'")
    ls.set_defaults(fn=cmd_ls)
    app = sub.add_parser("app", help="start the Streamlit leaderboard app")
    app.add_argument("leaderboard", nargs="?")
    app.add_argument("--port", type=int, default=8501)
    app.set_defaults(fn=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench.allocator import keep_freed_memory
    from bench.registry import UnknownNameError
    from bench.spec import SpecError
    from bench.submission import SubmissionError

    args = build_parser().parse_args(argv)
    keep_freed_memory()  # every command that trains, attacks or times runs in this process
    try:
        return args.fn(args)
    except (UsageError, SpecError, SubmissionError, UnknownNameError, FileNotFoundError) as exc:
        print(f"perbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("perbench: interrupted; finished cells are saved, run the same command to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `perbench show … | head`: the reader has what it wanted. Point stdout at devnull
        # so the interpreter's final flush does not raise again (Python docs, SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
