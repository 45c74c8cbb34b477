"""Parquet results store: one file per finished cell and table, written atomically.

Layout: ``<results>/<table>/<cell_key>.parquet`` and ``<results>/checkpoints/<train_key>.pt``.
A cell is finished when its *primary* table file exists; secondary tables are written
first, so a crash between files leaves no visible cell and the rerun overwrites them
(same file names, so no duplicate rows).
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.faults import fault_point
from bench.schema import SCHEMA_VERSION, TABLES

log = logging.getLogger(__name__)


def table_dir(results: Path, table: str) -> Path:
    return Path(results) / table


def cell_path(results: Path, table: str, key: str) -> Path:
    return table_dir(results, table) / f"{key}.parquet"


def checkpoint_path(results: Path, train_key: str) -> Path:
    return Path(results) / "checkpoints" / f"{train_key}.pt"


def atomic_write_bytes(path: Path, write) -> None:
    """Write via ``write(file_obj)`` to a temp file in the same folder, fsync, rename.

    The temp name starts with '.' so readers globbing ``*.parquet`` never see it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        fault_point("write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep_partial(results: Path, older_than_s: float = 600.0) -> list[Path]:
    """Delete temp files a killed writer left behind (``.<name>.<random>.tmp``, invisible to
    readers). Only those older than ``older_than_s``: a fresh one may belong to a writer
    still running beside us (another worker, another driver on a shared folder)."""
    import time

    cutoff = time.time() - older_than_s
    removed = []
    for path in Path(results).rglob(".*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another sweeper got there first
            continue
    return removed


def _to_arrow(table: str, rows: list[dict]) -> pa.Table:
    schema = TABLES[table]
    frame = pd.DataFrame(rows)
    for name in schema.names:
        if name not in frame:
            frame[name] = None
    extra = [c for c in frame.columns if c not in schema.names]
    if extra:
        raise ValueError(f"table {table!r} has no columns {extra}; allowed: {schema.names}")
    arrow = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    return arrow.replace_schema_metadata({"schema_version": SCHEMA_VERSION, "table": table})


def write_cell(results: Path, table: str, key: str, rows: list[dict]) -> Path:
    """Atomically write one cell's rows of one table."""
    arrow = _to_arrow(table, rows)
    path = cell_path(results, table, key)
    atomic_write_bytes(path, lambda f: pq.write_table(arrow, f))
    return path


def has_cell(results: Path, table: str, key: str) -> bool:
    return cell_path(results, table, key).exists()


def read_cell(results: Path, table: str, key: str) -> pd.DataFrame:
    return pq.read_table(cell_path(results, table, key)).to_pandas()


def empty_table(table: str) -> pd.DataFrame:
    return TABLES[table].empty_table().to_pandas()


def read_table(results: Path, table: str) -> pd.DataFrame:
    """All rows of one table; malformed or foreign files are reported and skipped."""
    frames = []
    for path in sorted(table_dir(results, table).glob("*.parquet")):
        try:
            part = pq.read_table(path)
            meta = part.schema.metadata or {}
            if meta.get(b"table", table.encode()) != table.encode():
                raise ValueError(f"file belongs to table {meta.get(b'table')!r}")
            frames.append(part.to_pandas())
        except Exception as exc:  # a foreign or truncated file must never be fatal
            warnings.warn(f"skipping unreadable results file {path}: {exc}", stacklevel=2)
    if not frames:
        return empty_table(table)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_table(table)
    return pd.concat(frames, ignore_index=True)


def read_all(results: Path) -> dict[str, pd.DataFrame]:
    return {name: read_table(results, name) for name in TABLES}
