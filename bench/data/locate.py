"""Where dataset files are looked for, in order, and the error that lists every place looked.

Order (docs/conventions.md#dataset-lookup): the ``data_root`` argument (``--data-root``),
``$PERBENCH_DATA``, system folders such as Debian's ``/usr/share/datasets``, then our download
cache (``$XDG_CACHE_HOME/perbench/data``), which is also where downloads go when neither a
data root nor ``$PERBENCH_DATA`` is given.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

ENV_VAR = "PERBENCH_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is in none of the places looked and could not be downloaded."""

    def __init__(self, name: str, looked: Sequence[str], download_note: str, how_to: Sequence[str]):
        self.name, self.looked = name, list(looked)
        lines = [f"dataset {name!r} not found. Looked in:"]
        lines += [f"  {place}" for place in looked]
        lines.append(f"Download: {download_note}")
        lines.append("To provide it:")
        lines += [f"  - {step}" for step in how_to]
        super().__init__("\n".join(lines))

    def __str__(self) -> str:  # OSError would otherwise prefix errno fields
        return self.args[0]


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "perbench" / "data"


def user_roots(data_root: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """(root, why it is looked at) for the roots a user names: argument, then environment."""
    roots = []
    if data_root:
        roots.append((Path(data_root).expanduser(), "data_root"))
    if os.environ.get(ENV_VAR):
        roots.append((Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"))
    return roots


def download_root(data_root: str | os.PathLike | None) -> Path:
    """Where a download goes: the first user root, else the cache."""
    roots = user_roots(data_root)
    return roots[0][0] if roots else cache_root()


def find_dataset_dir(
    name: str,
    *,
    data_root: str | os.PathLike | None,
    subdirs: Sequence[str],
    is_complete: Callable[[Path], bool],
    system_dirs: Sequence[tuple[Path, str]] = (),
    download: Callable[[Path], None] | None = None,
    how_to: Sequence[str] = (),
) -> tuple[Path, str]:
    """The first folder holding a complete copy of ``name`` and a description of it.

    Each root is tried with each of ``subdirs`` ("" is the root itself). If none is
    complete and ``download`` is given, it is called with `download_root` and that root is
    searched again. Raises `DatasetNotFoundError` listing every folder tried.
    """
    looked: list[str] = []

    def search(candidates: Sequence[tuple[Path, str]]) -> tuple[Path, str] | None:
        for folder, why in candidates:
            looked.append(f"{folder} ({why})")
            if is_complete(folder):
                return folder, f"{folder} ({why})"
        return None

    def expand(root: Path, why: str) -> list[tuple[Path, str]]:
        return [(root / sub if sub else root, why) for sub in subdirs]

    roots = user_roots(data_root)
    candidates = [c for root, why in roots for c in expand(root, why)]
    candidates += list(system_dirs)
    if not roots:
        candidates += expand(cache_root(), "download cache")
    found = search(candidates)
    if found:
        return found
    if download is None:
        note = "not attempted (download=False)"
    else:
        dest = download_root(data_root)
        try:
            download(dest)
        except Exception as exc:  # no network, a mirror down, a full disk: all end the same way
            note = f"failed into {dest}: {type(exc).__name__}: {exc}"
        else:
            found = search(expand(dest, "after download"))
            if found:
                return found
            note = f"finished into {dest} but left no complete copy there"
    steps = list(how_to) + [
        f"put the files in a folder and pass it as data_root (--data-root) or set {ENV_VAR}",
        "or allow download=True on a machine with network access",
    ]
    raise DatasetNotFoundError(name, looked, note, steps)
