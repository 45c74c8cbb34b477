"""perbench ls and app: the registries, and the Streamlit app."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.cli._common import leaderboard_dir


def cmd_ls(args: argparse.Namespace) -> int:
    registry = _registries()[args.what]
    for name in registry.list(args.pattern):
        doc = registry.describe(name)
        print(f"{name:24s} {doc}" if doc else name)
    return 0

def _registries() -> dict:
    from bench.archs import ARCHS
    from bench.attacks import ATTACKS
    from bench.data.datasets import DATASETS
    from bench.hardware import HARDWARE
    from bench.plugins import METHODS, load_builtin_methods

    load_builtin_methods()
    return {"methods": METHODS, "datasets": DATASETS, "archs": ARCHS, "attacks": ATTACKS,
            "hardware": HARDWARE}

def cmd_app(args: argparse.Namespace) -> int:
    app = Path(__file__).resolve().parents[2] / "app" / "Leaderboard.py"
    env = dict(os.environ)
    if args.leaderboard:
        env["PERBENCH_LEADERBOARD"] = str(leaderboard_dir(args.leaderboard).resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
           "--server.port", str(args.port), "--browser.gatherUsageStats", "false"]
    # Become the server (exec, not a child): a signal to `perbench app` (Ctrl-C, a test's
    # terminate) then reaches streamlit itself instead of orphaning it.
    os.execve(sys.executable, cmd, env)


def add_parsers(sub) -> None:
    ls = sub.add_parser("ls", help="list a registry")
    ls.add_argument("what", choices=["methods", "datasets", "archs", "attacks", "hardware"])
    ls.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. 'resnet*'")
    ls.set_defaults(fn=cmd_ls)
    app = sub.add_parser("app", help="start the Streamlit leaderboard app")
    app.add_argument("leaderboard", nargs="?")
    app.add_argument("--port", type=int, default=8501)
    app.set_defaults(fn=cmd_app)
