"""perbench robustbench export / import."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli._common import UsageError, leaderboard_dir, results_of


def cmd_robustbench_export(args: argparse.Namespace) -> int:
    import json

    from bench.interop.robustbench import export_entry
    from bench.views.leaderboard import load_tables

    board = leaderboard_dir(args.leaderboard)
    try:
        entry = export_entry(load_tables(results_of(board)), args.run,
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
    from bench.interop.robustbench import import_entries, reference_key
    from bench.results.store import write_cell

    board = leaderboard_dir(args.leaderboard)
    rows = import_entries(args.path, args.dataset, args.threat_model)
    if not rows:
        raise UsageError(f"{args.path}: no valid RobustBench entries for {args.dataset} "
                         f"{args.threat_model}")
    key = reference_key(args.path, args.dataset, args.threat_model)
    path = write_cell(results_of(board), "reference", key, rows)
    print(f"imported {len(rows)} RobustBench entries ({args.dataset}, {args.threat_model}) "
          f"into {path}")
    return 0


def add_parsers(sub) -> None:
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
