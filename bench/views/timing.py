"""Timings measured beside other work, so that a reader does not compare them with clean ones.

Every ``runs``, ``robustness`` and ``latency`` row records the host's 1-minute load average
as it was written (``load_avg``). A cell runs ``threads`` torch threads; a load above that
means other processes wanted the same cores, so its times (``train_seconds``,
``attack_seconds``, ``latency_ms_*``) read high. Numbers (accuracies, FLOPs) are not
affected: only the timings are marked.

- :func:`under_load`: per row, whether ``load_avg`` exceeded the cell's threads.
- :func:`loaded_timings`: per run, which of its timings were measured under load.
- :func:`load_note`: one line for a screen that shows timings (``perbench checks`` prints
  it with the runs; ``perbench show`` can print it under the leaderboard).
"""
from __future__ import annotations

import pandas as pd

from bench.views.transfer import run_labels

COLUMNS = ["run", "run_id", "train", "attacks", "latency"]


def under_load(frame: pd.DataFrame, threads: pd.Series | None = None) -> pd.Series:
    """Per row of ``frame``: True where its ``load_avg`` exceeded its thread count (the
    ``threads`` column, or ``threads`` aligned on the frame's index for tables without one,
    e.g. the run's threads for robustness rows). False where either was not recorded (rows
    from before ``load_avg`` existed, skipped latency rows): unknown is not marked."""
    if frame.empty or "load_avg" not in frame:
        return pd.Series(False, index=frame.index, dtype=bool)
    cores = frame["threads"] if threads is None else threads
    load = pd.to_numeric(frame["load_avg"], errors="coerce")
    cores = pd.to_numeric(cores, errors="coerce")
    return (load.notna() & cores.notna() & (load > cores)).astype(bool)


def _fmt(load: float, threads: float) -> str:
    n = int(threads)
    return f"load {load:.1f} > {n} thread{'s' * (n != 1)}"


def loaded_timings(runs: pd.DataFrame, robustness: pd.DataFrame | None = None,
                   latency: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per finished run with a timing measured under load: run (label), run_id,
    train (``train_seconds``' load, else empty), attacks (how many of its finished
    robustness rows), latency (the hardware profiles and batch sizes). Runs whose timings
    were all measured at a load within their threads are absent."""
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok = runs[runs["status"] == "ok"].drop_duplicates("run_id", keep="last").set_index("run_id")
    out: dict[str, dict[str, str]] = {}
    loaded = ok[under_load(ok)]
    for run_id, r in loaded.iterrows():
        out.setdefault(run_id, {})["train"] = _fmt(r["load_avg"], r["threads"])
    if robustness is not None and not robustness.empty and "load_avg" in robustness:
        rob = robustness[(robustness["status"] != "failed")
                         & robustness["run_id"].isin(ok.index)]
        marked = under_load(rob, rob["run_id"].map(ok["threads"]))
        for run_id, flags in marked.groupby(rob["run_id"]):
            if flags.any():
                out.setdefault(run_id, {})["attacks"] = f"{int(flags.sum())} of {len(flags)} rows"
    if latency is not None and not latency.empty and "load_avg" in latency:
        lat = latency[latency["run_id"].isin(ok.index)]
        lat = lat[under_load(lat)].sort_values(["hardware", "batch_size"], kind="stable")
        for run_id, group in lat.groupby("run_id", sort=True):
            out.setdefault(run_id, {})["latency"] = ", ".join(
                f"{hw} ({_fmt(rows['load_avg'].max(), rows['threads'].iloc[0])}; batch "
                f"{', '.join(str(b) for b in rows['batch_size'].astype(int).unique())})"
                for hw, rows in group.groupby("hardware", sort=True))
    if not out:
        return pd.DataFrame(columns=COLUMNS)
    labels = run_labels(ok.reset_index())
    frame = pd.DataFrame([{"run": labels.get(run_id, run_id), "run_id": run_id,
                           **{c: parts.get(c, "") for c in ("train", "attacks", "latency")}}
                          for run_id, parts in out.items()], columns=COLUMNS)
    return frame.sort_values("run", kind="stable").reset_index(drop=True)


def load_note(runs: pd.DataFrame, robustness: pd.DataFrame | None = None,
              latency: pd.DataFrame | None = None) -> str | None:
    """One line saying how many runs have timings measured under load, or None."""
    marked = loaded_timings(runs, robustness, latency)
    if marked.empty:
        return None
    n_ok = runs.loc[runs["status"] == "ok", "run_id"].nunique()
    parts = [f"{int((marked[c] != '').sum())} {what}"
             for c, what in (("train", "training times"), ("attacks", "with attack times"),
                             ("latency", "with latencies")) if (marked[c] != "").any()]
    return (f"timings measured under load (1-minute load average above the cell's threads, "
            f"so they read high) in {len(marked)} of {n_ok} runs: " + ", ".join(parts)
            + "; `perbench checks` lists them")
