"""The ``checks`` table read as a reviewer reads it: per check, how many runs it judged and
failed and its closest call, and the failing rows themselves with the words that explain
them.

A leaderboard with no flag is only reassuring if the checks had something to judge, so the
summary counts the runs each check looked at (a check whose inputs are missing writes no
row, ``bench.work.checks``) and quotes the row nearest to failing, for a reader to weigh.
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
    rows["passed"] = rows["passed"].astype(bool)
    return rows[cols].sort_values(["check", "run"]).reset_index(drop=True)


def checks_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Per check: runs judged, runs failed, and the detail of its worst row (a failing one
    where there is one, else the closest call)."""
    out = []
    for check, group in long.groupby("check", sort=True):
        worst_first = group.sort_values(["passed", "value"],
                                        ascending=[True, check in WORSE_WHEN_LOWER])
        worst = worst_first.iloc[0]
        out.append({"check": check, "kind": worst["kind"], "runs": group["run_id"].nunique(),
                    "failed": int((~group["passed"]).sum()),
                    "worst": f"{worst['run']}: {worst['detail']}"})
    return pd.DataFrame(out, columns=["check", "kind", "runs", "failed", "worst"])


def render(long: pd.DataFrame, fmt: str = "table") -> str:
    """The summary, then every failing row (or a line saying there is none)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "csv":
        return long.to_csv(index=False)
    tablefmt = "github" if fmt == "markdown" else "simple"
    wrap = None if fmt == "markdown" else 110  # a line break would end a markdown row
    summary = checks_summary(long)
    text = [tabulate(summary.to_numpy().tolist(), headers=list(summary.columns),
                     tablefmt=tablefmt, disable_numparse=True, maxcolwidths=[None] * 4 + [wrap])]
    failing = long[~long["passed"]]
    n_runs = long["run_id"].nunique()
    if failing.empty:
        text.append(f"\nno run flagged: {len(long)} checks on {n_runs} runs passed")
    else:
        text.append(f"\n{failing['run_id'].nunique()} of {n_runs} runs flagged:")
        text.append(tabulate(failing[["run", "check", "detail"]].to_numpy().tolist(),
                             headers=["run", "check", "what it saw"], tablefmt=tablefmt,
                             disable_numparse=True, maxcolwidths=[None, None, wrap]))
    return "\n".join(text)
