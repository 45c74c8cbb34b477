"""perbench show, compare, checks, transfer, claims: the leaderboard's tables read and rendered."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli._common import UsageError, leaderboard_dir, results_of


def cmd_show(args: argparse.Namespace) -> int:
    from bench.views.render import render

    board = leaderboard_dir(args.leaderboard)
    print(render(results_of(board), args.format, provenance=args.provenance, board=board))
    return 0

def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd
    from tabulate import tabulate

    from bench.results.board import mce_reference
    from bench.views.compare import compare, paper_table, per_run_metrics
    from bench.views.evidence import metric_evidence
    from bench.views.leaderboard import load_tables

    board = leaderboard_dir(args.leaderboard)
    tables = load_tables(results_of(board))
    metrics = per_run_metrics(tables, norm=args.norm, eps=args.eps,
                              mce_reference=mce_reference(results_of(board), board))
    try:
        table = compare(metrics, args.a, args.b,
                        metric_evidence(tables, norm=args.norm, eps=args.eps))
    except ValueError as exc:
        raise UsageError(f"{board}: {exc}") from None
    if args.format == "csv":
        print(table.to_csv(index=False), end="")
        return 0
    shown = pd.concat([table[["dataset", "arch"]].reset_index(drop=True),
                       paper_table(table)[["metric", "a", "b", "difference", "n", "test"]]],
                      axis=1)
    shown = shown.rename(columns={"a": args.a, "b": args.b,
                                  "difference": f"{args.b} − {args.a}"})
    print(f"{args.b} against {args.a}: mean [95% CI] over seeds (and points); the difference "
          "with its 95% CI and two-sided bootstrap p, not corrected for the number of metrics "
          "(accuracies in points, costs relative to the first method). n: seeds×points per "
          "seed. test: paired = same seeds and points; unpaired = no per-point results, from "
          "counts; seeds = bootstrap over seeds; exact = deterministic (FLOPs, params)")
    print(tabulate(shown, headers="keys", showindex=False, disable_numparse=True))
    return 0

def cmd_checks(args: argparse.Namespace) -> int:
    from bench.grid.spec import load_spec
    from bench.results.store import read_table
    from bench.views.checks import checks_long, render
    from bench.views.timing import loaded_timings

    board = leaderboard_dir(args.leaderboard)
    spec = load_spec(board)
    results = results_of(board, spec)
    if args.recompute:
        if not spec.checks.enabled:
            raise UsageError(f"{board / 'grid.yaml'}: checks are disabled (checks: {{enabled: "
                             "false}}), so --recompute has nothing to run")
        _recompute_checks(spec, results, quiet=args.quiet)
    runs = read_table(results, "runs")
    long = checks_long(read_table(results, "checks"), runs)
    if long.empty:
        print(f"{board.name}: no checks yet; `perbench run {board}` runs them after each "
              "run's evaluations")
        return 0
    if args.format != "csv":
        print(f"{board.name}: reliability checks per run (bench/work/checks.py); a failed check "
              "marks the run on `perbench show` and in the app")
    timings = loaded_timings(runs, read_table(results, "robustness"),
                             read_table(results, "latency"))
    print(render(long, args.format, timings))
    return 0

def _recompute_checks(spec, results, quiet: bool = False) -> None:
    from bench.execute.schedule import recompute_checks

    recompute_checks(spec, results, quiet)

def cmd_transfer(args: argparse.Namespace) -> int:
    from bench.grid.spec import load_spec
    from bench.results.store import read_table
    from bench.views.transfer import render, transfer_long

    board = leaderboard_dir(args.leaderboard)
    spec = load_spec(board)
    if spec.transfer is None:
        raise UsageError(f"{board / 'grid.yaml'}: the grid has no transfer: section, so no "
                         "transfer matrix (add e.g. transfer: {attack: {name: pgd, norm: Linf, "
                         "eps: 0.1, steps: 20}})")
    results = results_of(board, spec)
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

def cmd_claims(args: argparse.Namespace) -> int:
    from bench.grid.spec import load_spec
    from bench.results.board import BoardError, mce_reference
    from bench.views.claims import check_names, evaluate, load_claims, render, to_json
    from bench.views.compare import per_run_metrics
    from bench.views.evidence import metric_evidence
    from bench.views.leaderboard import load_tables
    from bench.views.mechanism import not_acted_by_label

    board = leaderboard_dir(args.leaderboard)
    path = Path(args.file) if args.file else board / "claims.yaml"
    try:
        claims = load_claims(path)
    except BoardError as exc:
        raise UsageError(str(exc)) from None
    spec = load_spec(board)  # the CLI validates the whole grid before judging its claims
    results = results_of(board, spec)
    tables = load_tables(results)
    metrics = per_run_metrics(tables, norm=args.norm, eps=args.eps,
                              mce_reference=mce_reference(results, board))
    try:
        check_names(claims, metrics, [m.display for m in spec.methods], path, spec.archs)
    except BoardError as exc:
        raise UsageError(str(exc)) from None
    result = evaluate(claims, metrics, metric_evidence(tables, norm=args.norm, eps=args.eps),
                      not_acted=not_acted_by_label(tables, unrecorded=False))
    if args.format == "csv":
        print(result.to_csv(index=False), end="")
        return 0
    if args.format == "json":
        print(to_json(result))
        return 0
    print(f"{board.name}: each claim's metrics, baseline and method as mean [95% CI] over seeds "
          "(and points); difference method − baseline with its 95% CI (points for accuracies, "
          "relative for costs), raw and Holm-adjusted p over this file's tests. n: seeds×points "
          "per seed; test: paired, unpaired (no per-point results), seeds, exact. Verdicts as "
          "in bench/views/claims.py: supported / contradicted need the CI to exclude 0 (for "
          "'keep': the tolerance) and Holm p < 0.05")
    print(render(result, args.format))
    counts = result.drop_duplicates("claim_id")["claim_verdict"].value_counts()
    print("claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return 0


def add_parsers(sub) -> None:
    show = sub.add_parser("show", help="print a leaderboard ranked by the worst case over attacks "
                                         "(95% intervals, rank ranges, tie groups)")
    show.add_argument("leaderboard")
    show.add_argument("--format", default="table", choices=["table", "csv", "json", "markdown"])
    show.add_argument("--provenance", action="store_true",
                      help="also list each row's source (submission or built-in), code version "
                           "and config (csv and json always carry them)")
    show.set_defaults(fn=cmd_show)
    cmp = sub.add_parser("compare", help="two methods side by side: means, the difference, its "
                                         "95% CI and p-value")
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
    claims.add_argument("--format", default="table", choices=["table", "markdown", "csv", "json"])
    claims.set_defaults(fn=cmd_claims)
