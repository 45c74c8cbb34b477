"""What every command shares: usage errors (exit code 2) and leaderboard arguments."""
from __future__ import annotations

import argparse
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""

def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value

def leaderboard_dir(path: str) -> Path:
    p = Path(path)
    if p.name == "grid.yaml":
        p = p.parent
    if not p.is_dir():
        raise UsageError(f"{p}: no such leaderboard folder (expected leaderboards/<name>/ "
                         "holding grid.yaml)")
    return p

def results_of(board: Path, spec=None):
    """The board's results location: a folder, or the fsspec URI its grid.yaml names."""
    from bench.results.board import results_location

    return results_location(board, spec)
