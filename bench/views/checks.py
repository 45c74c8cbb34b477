"""The ``checks`` table read as a reviewer reads it: per check, how many runs it judged and
failed and its closest call, and the failing rows themselves with the words that explain
them.

A leaderboard with no flag is only reassuring if the checks had something to judge, so the
summary counts the runs each check looked at (a check whose inputs are missing writes no
row, ``bench.work.checks``; one that could not run as configured writes a skipped row,
``passed`` null, counted apart) and quotes the row nearest to failing, for a reader to
weigh. Below them, the runs whose timings were measured under load
(:mod:`bench.views.timing`).
"""
from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from bench.views.transfer import run_labels

FORMATS = ("table", "markdown", "csv")
# Each check's ``value`` grows as the run looks worse, except the softmax check's: its value
# is the distance of the outputs from probabilities, so the smallest is the closest call.
WORSE_WHEN_LOWER = frozenset({"softmax_outputs"})


def checks_long(checks: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, check) of the runs that finished: run label, method, arch, seed,
    check, kind, passed, value, detail."""
    cols = ["run", "method", "arch", "seed", "run_id", "check", "kind", "passed", "value", "detail"]
    if checks.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    ok = runs[runs["status"] == "ok"].drop_duplicates("run_id")
    rows = (checks.sort_values("created_at").drop_duplicates(["run_id", "check"], keep="last")
            .merge(ok[["run_id", "method", "arch", "seed"]], on="run_id"))
    rows["run"] = rows["run_id"].map(run_labels(ok))
    # null: skipped (the check could not run as configured; its detail says why)
    rows["passed"] = rows["passed"].astype("boolean")
    return rows[cols].sort_values(["check", "run"]).reset_index(drop=True)


def failing(long: pd.DataFrame) -> pd.Series:
    """Rows that failed (skipped rows did not)."""
    return long["passed"].eq(False).fillna(False).astype(bool)


def checks_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Per check: runs judged, runs failed, and the detail of its worst row (a failing one
    where there is one, else the closest call; for a check skipped on every run, why)."""
    out = []
    for check, group in long.groupby("check", sort=True):
        judged = group[group["passed"].notna()]
        if judged.empty:
            first, k = group.iloc[0], group["run_id"].nunique()
            out.append({"check": check, "kind": first["kind"], "runs": 0, "failed": 0,
                        "worst": f"skipped on {k} run{'s' * (k != 1)}, e.g. {first['run']}: "
                                 f"{first['detail']}"})
            continue
        worst_first = judged.assign(passed=judged["passed"].astype(bool)).sort_values(
            ["passed", "value"], ascending=[True, check in WORSE_WHEN_LOWER])
        worst = worst_first.iloc[0]
        out.append({"check": check, "kind": worst["kind"], "runs": judged["run_id"].nunique(),
                    "failed": int(failing(judged).sum()),
                    "worst": f"{worst['run']}: {worst['detail']}"})
    return pd.DataFrame(out, columns=["check", "kind", "runs", "failed", "worst"])


def render(long: pd.DataFrame, fmt: str = "table", timings: pd.DataFrame | None = None) -> str:
    """The summary, then every failing row (or a line saying there is none), then the runs
    whose timings were measured under load (``timings``: bench.views.timing's
    ``loaded_timings``; not in csv, which is the checks alone)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "csv":
        return long.to_csv(index=False)
    tablefmt = "github" if fmt == "markdown" else "simple"
    wrap = None if fmt == "markdown" else 110  # a line break would end a markdown row
    summary = checks_summary(long)
    text = [tabulate(summary.to_numpy().tolist(), headers=list(summary.columns),
                     tablefmt=tablefmt, disable_numparse=True, maxcolwidths=[None] * 4 + [wrap])]
    failed = long[failing(long)]
    n_runs = long["run_id"].nunique()
    n_skipped = int(long["passed"].isna().sum())
    if failed.empty:
        judged = len(long) - n_skipped
        text.append(f"\nno run flagged: {judged} checks on {n_runs} runs passed"
                    + (f" ({n_skipped} skipped)" if n_skipped else ""))
    else:
        text.append(f"\n{failed['run_id'].nunique()} of {n_runs} runs flagged:")
        text.append(tabulate(failed[["run", "check", "detail"]].to_numpy().tolist(),
                             headers=["run", "check", "what it saw"], tablefmt=tablefmt,
                             disable_numparse=True, maxcolwidths=[None, None, wrap]))
    if timings is not None and not timings.empty:
        k = len(timings)
        text.append(f"\ntimings measured under load in {k} run{'s' * (k != 1)} (the host's "
                    "1-minute load average above the cell's threads: other work shared its "
                    "cores, so these times read high; accuracies are unaffected):")
        shown = timings[["run", "train", "attacks", "latency"]]
        text.append(tabulate(shown.to_numpy().tolist(),
                             headers=["run", "train_seconds", "attack_seconds", "latency"],
                             tablefmt=tablefmt, disable_numparse=True,
                             maxcolwidths=[None, None, None, wrap]))
    return "\n".join(text)
