"""The quickstart's tables reduced to what a result is: no timings, timestamps, host or
load fields, and no measured resource figures (peak memory), sorted by their keys.

``python tests/quickstart_snapshot.py RESULTS OUT.json`` writes one; the slow test
``tests/test_quickstart.py::test_quickstart_tables_match_snapshot`` compares a fresh
quickstart against ``tests/fixtures/quickstart_snapshot/tables.json``: a restructuring
of the engine must not move a single number.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

# Not results: when, where, how fast, under what load, and how much memory the process held.
VOLATILE = {"created_at", "host", "versions", "load_avg", "train_seconds", "seconds_so_far",
            "attack_seconds", "seconds", "latency_ms_p50", "latency_ms_p90",
            "latency_ms_p10", "latency_ms_p25", "latency_ms_p75",
            "throughput_per_s", "device_name", "allocator", "peak_mem_bytes"}
TABLES = ("runs", "history", "robustness", "corruption", "transfer", "checks", "latency")
KEYS = {"runs": ["run_id"], "history": ["run_id", "epoch"],
        "robustness": ["run_id", "eval_id", "eps"], "corruption": ["run_id", "corruption", "severity"],
        "transfer": ["source_run", "target_run"], "checks": ["run_id", "check"],
        "latency": ["run_id", "hardware", "batch_size", "execution"]}


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    return value


def snapshot(read_table, columns: dict[str, list[str]] | None = None) -> dict[str, list[dict]]:
    """{table: rows} with the stable columns (``columns`` given: only those, e.g. the
    stored snapshot's, so columns added since compare as absent rather than different)."""
    out = {}
    for table in TABLES:
        frame: pd.DataFrame = read_table(table)
        keep = [c for c in frame.columns if c not in VOLATILE]
        if columns is not None:
            keep = [c for c in columns[table] if c in frame.columns]
        frame = frame[keep].sort_values([k for k in KEYS[table] if k in keep], kind="stable")
        out[table] = [{c: _plain(v) for c, v in row.items()}
                      for row in frame.to_dict("records")]
    return out


def columns_of(snap: dict[str, list[dict]]) -> dict[str, list[str]]:
    return {t: list(rows[0]) if rows else [] for t, rows in snap.items()}


if __name__ == "__main__":
    from bench.results import store

    results, out = Path(sys.argv[1]), Path(sys.argv[2])
    snap = snapshot(lambda t: store.read_table(results, t))
    out.write_text(json.dumps(snap, indent=0, sort_keys=True, default=str) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{t} {len(r)}" for t, r in snap.items()))
