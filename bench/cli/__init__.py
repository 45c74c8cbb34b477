"""``perbench``: run grids, show and compare leaderboards, list registries, start the app.

Errors a user can cause print one actionable message and exit with code 2. Each command
group lives in its own module here and adds its own subparsers.
"""
from __future__ import annotations

import argparse
import os
import sys

from bench.cli import browse, interop, run, speed, submit, tables
from bench.cli._common import EXIT_USAGE, UsageError

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # the order `perbench --help` lists them in
    for group in (run, speed, tables, interop, submit, browse):
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench.allocator import keep_freed_memory
    from bench.errors import SubmissionError
    from bench.grid.spec import SpecError
    from bench.registry import UnknownNameError
    from bench.sandbox import SandboxUnavailable

    args = build_parser().parse_args(argv)
    keep_freed_memory()  # every command that trains, attacks or times runs in this process
    try:
        return args.fn(args)
    except (UsageError, SpecError, SubmissionError, UnknownNameError, FileNotFoundError,
            SandboxUnavailable) as exc:
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
