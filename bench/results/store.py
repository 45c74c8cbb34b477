"""Parquet results store: one file per finished cell and table, written atomically.

Layout: ``<results>/<table>/<cell_key>.parquet`` and ``<results>/checkpoints/<train_key>.pt``
(plus ``<results>/resume/<train_key>.pt`` while a training cell is unfinished).
A cell is finished when its *primary* table file exists; secondary tables are written
first, so a crash between files leaves no visible cell and the rerun overwrites them
(same file names, so no duplicate rows).

``results`` is a local folder (``Path`` or a plain string) or any fsspec URI
(``s3://bucket/board``, ``gs://…``, ``memory://…``, ``file:///…``): cluster workers
write to shared storage directly, one object per cell, with no central writer. Local
folders keep the fsync + rename path; on a URI a cell is written under a hidden temp name
and moved into place, so a reader never sees a partial object.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.faults import fault_point
from bench.results.schema import SCHEMA_VERSION, TABLES

log = logging.getLogger(__name__)


Location = Path | str  # a local folder, or an fsspec URI


def is_uri(results: Location) -> bool:
    return isinstance(results, str) and "://" in results


def location(results: Location) -> Location:
    """``results`` normalised: an absolute ``Path`` for a local folder, the URI unchanged."""
    if is_uri(results):
        return str(results).rstrip("/")
    return Path(results).resolve()


def _fs(uri: str):
    import fsspec

    return fsspec.core.url_to_fs(uri)


def join(results: Location, *parts: str) -> Location:
    if is_uri(results):
        return "/".join([str(results).rstrip("/"), *parts])
    return Path(results).joinpath(*parts)


def table_dir(results: Location, table: str) -> Location:
    return join(results, table)


def cell_path(results: Location, table: str, key: str) -> Location:
    return join(results, table, f"{key}.parquet")


def checkpoint_relpath(train_key: str) -> str:
    """A checkpoint's path inside a results location (the runs table's ``checkpoint``)."""
    return f"checkpoints/{train_key}.pt"


def checkpoint_path(results: Location, train_key: str) -> Location:
    return join(results, *checkpoint_relpath(train_key).split("/"))


def resume_path(results: Location, train_key: str) -> Location:
    """The snapshot an interrupted training cell continues from (``bench.work.loop.train``);
    it lives only while the cell is unfinished."""
    return join(results, "resume", f"{train_key}.pt")


def remove(path: Location) -> None:
    """Delete ``path`` if it exists."""
    if is_uri(path):
        fs, p = _fs(path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(p)
        return
    Path(path).unlink(missing_ok=True)


def exists(path: Location) -> bool:
    if is_uri(path):
        fs, p = _fs(path)
        return fs.exists(p)
    return Path(path).exists()


def open_read(path: Location):
    """A binary file object for reading, local or remote (a context manager)."""
    if is_uri(path):
        fs, p = _fs(path)
        return fs.open(p, "rb")
    return open(path, "rb")


def atomic_write_bytes(path: Location, write) -> None:
    """Write via ``write(file_obj)`` to a temp file in the same folder, fsync, rename.

    The temp name starts with '.' so readers globbing ``*.parquet`` never see it.
    """
    if is_uri(path):
        _atomic_write_remote(path, write)
        return
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


def _atomic_write_remote(uri: str, write) -> None:
    """The same promise on an fsspec filesystem: write a hidden temp object, then move it
    to its name (a rename on local and POSIX-like stores; on object stores the final
    object appears whole, since an object PUT is atomic)."""
    import uuid

    fs, path = _fs(uri)
    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp" if parent else f".{name}.tmp"
    if parent:
        fs.makedirs(parent, exist_ok=True)
    try:
        with fs.open(tmp, "wb") as f:
            write(f)
        fault_point("write")
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):  # never written, or already gone
            fs.rm(tmp)
        raise


def _mtime(info: dict) -> float | None:
    """Modification time (epoch seconds) from an fsspec ``info`` dict, whatever the backend
    calls it; None when it says nothing (then the file is never swept)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return value.timestamp()
        try:
            return float(value)
        except (TypeError, ValueError):
            return pd.Timestamp(value).timestamp()
    return None


def sweep_partial(results: Location, older_than_s: float = 600.0) -> list[Location]:
    """Delete temp files a killed writer left behind (``.<name>.<random>.tmp``, invisible to
    readers). Only those older than ``older_than_s``: a fresh one may belong to a writer
    still running beside us (another worker, another driver on a shared folder)."""
    import time

    cutoff = time.time() - older_than_s
    if is_uri(results):
        fs, root = _fs(results)
        removed_uris: list[Location] = []
        if not fs.exists(root):
            return removed_uris
        for path, info in fs.find(root, detail=True).items():
            name = path.rsplit("/", 1)[-1]
            mtime = _mtime(info)
            if name.startswith(".") and name.endswith(".tmp") and mtime is not None \
                    and mtime < cutoff:
                fs.rm(path)
                removed_uris.append(fs.unstrip_protocol(path))
        return removed_uris
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


def write_cell(results: Location, table: str, key: str, rows: list[dict]) -> Location:
    """Atomically write one cell's rows of one table."""
    arrow = _to_arrow(table, rows)
    path = cell_path(results, table, key)
    atomic_write_bytes(path, lambda f: pq.write_table(arrow, f))
    return path


def has_cell(results: Location, table: str, key: str) -> bool:
    return exists(cell_path(results, table, key))


def read_cell(results: Location, table: str, key: str) -> pd.DataFrame:
    return _read_parquet(cell_path(results, table, key)).to_pandas()


def _read_parquet(path: Location) -> pa.Table:
    if is_uri(path):
        with open_read(path) as f:
            return pq.read_table(f)
    return pq.read_table(path)  # by path: pyarrow's native reader, no Python file object


def table_files(results: Location, table: str) -> list[Location]:
    """The finished files of one table, sorted (hidden temp files excluded)."""
    if is_uri(results):
        fs, root = _fs(str(table_dir(results, table)))
        if not fs.exists(root):
            return []
        names = [p for p in fs.glob(f"{root}/*.parquet")
                 if not p.rsplit("/", 1)[-1].startswith(".")]
        return sorted(fs.unstrip_protocol(p) for p in names)
    return sorted(Path(table_dir(results, table)).glob("*.parquet"))


def file_stamps(results: Location) -> tuple[tuple[str, str], ...]:
    """Every finished file with its modification time (on object stores, what the backend
    reports): a cache key that changes whenever the results do."""
    if is_uri(results):
        fs, root = _fs(results)
        if not fs.exists(root):
            return ()
        return tuple(sorted((p, str(_mtime(info) or info.get("size")))
                            for p, info in fs.find(root, detail=True).items()
                            if p.endswith(".parquet")))
    return tuple(sorted((str(p.relative_to(results)), str(p.stat().st_mtime_ns))
                        for p in Path(results).glob("*/*.parquet")))


def empty_table(table: str) -> pd.DataFrame:
    return TABLES[table].empty_table().to_pandas()


def read_table(results: Location, table: str) -> pd.DataFrame:
    """All rows of one table; malformed or foreign files are reported and skipped."""
    frames = []
    for path in table_files(results, table):
        try:
            part = _read_parquet(path)
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


def read_all(results: Location) -> dict[str, pd.DataFrame]:
    return {name: read_table(results, name) for name in TABLES}
