"""What "nothing else was touched" is checked against: the sha256 of every file below a
folder (a leaderboard's results), keyed by its path relative to it."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}
