"""The source papers' qualitative claims, checked against a leaderboard's own numbers.

A leaderboard may carry ``claims.yaml``: each claim sets a method against a baseline (two
method labels of the grid, as in ``perbench compare``) and says, per metric, what the
paper leads one to expect:

- ``higher`` / ``lower``: the method's mean over seeds is above / below the baseline's;
- ``keep``: it is no worse than the baseline by more than ``tolerance`` (an absolute
  difference for accuracies, default 0.01 = 1 point; a fraction of the baseline for costs,
  default 0.01 = 1%).

Verdicts, per (dataset, arch, metric), use the same seed-to-seed spread as ``compare``
(the sum of the two standard deviations): ``supported`` when the difference points the
expected way and is larger than the spread (for ``keep``: within the tolerance, or
better); ``contradicted`` when it points the other way by more than the spread (for
``keep``: worse than the tolerance by more than the spread); ``within noise`` otherwise;
``one seed`` when either side has a single seed, so there is no spread to judge by; and
``no results`` while either method has none. A claim is ``supported`` when every one of
its metrics is, ``not supported`` when any is contradicted, else ``inconclusive``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.formats import format_value
from bench.results.board import BoardError, read_yaml_mapping, validation_message
from bench.views.columns import is_metric, is_percent, lower_is_better
from bench.views.compare import compare

Expectation = Literal["higher", "lower", "keep"]


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paper: str = Field(description="the source, e.g. 'CAPER (BMVC 2023)'")
    claim: str = Field(description="the claim in words, as the paper makes it")
    baseline: str = Field(description="method label the claim is measured against")
    method: str = Field(description="method label the claim is about")
    expect: dict[str, Expectation] = Field(
        min_length=1, description="metric -> higher | lower | keep (see bench.views.claims)")
    tolerance: float = Field(0.01, ge=0, description="what 'keep' allows; see bench.views.claims")
    archs: list[str] | None = Field(None, description="only these archs (default: all shared)")
    note: str | None = Field(None, description="how the claim was adapted to this grid")


class ClaimsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claims: list[Claim] = Field(min_length=1)


def load_claims(path: str | Path) -> list[Claim]:
    """Read and validate a claims file (or a leaderboard folder holding ``claims.yaml``)."""
    path, raw = read_yaml_mapping(path, "claims.yaml", ClaimsFile, "claims file")
    try:
        return ClaimsFile.model_validate(raw).claims
    except ValidationError as exc:
        raise BoardError(validation_message(path, exc, ClaimsFile, "claims file")) from None


def check_names(claims: list[Claim], metrics: pd.DataFrame, methods: list[str],
                where: Path | str, archs: list[str] | None = None) -> None:
    """Every method label (and arch, when ``archs`` is given) is in the grid and every
    metric is one the leaderboard can have."""
    known = [c for c in metrics.columns if c not in ("run_id", "dataset", "arch", "method",
                                                       "seed", "params")]
    for i, claim in enumerate(claims):
        for key in ("baseline", "method"):
            label = getattr(claim, key)
            if label not in methods:
                raise BoardError(f"{where}: claims[{i}].{key}: unknown method {label!r}; the "
                                f"grid's methods: {', '.join(methods)}")
        unknown = [a for a in claim.archs or () if archs is not None and a not in archs]
        if unknown:
            raise BoardError(f"{where}: claims[{i}].archs: unknown arch {unknown[0]!r}; the "
                            f"grid's archs: {', '.join(archs)}")
        for metric in claim.expect:
            if metric not in known and not _may_appear(metric):
                raise BoardError(f"{where}: claims[{i}].expect: unknown metric {metric!r}; "
                                f"metrics: {', '.join(known)}")


def _may_appear(metric: str) -> bool:
    # Columns that exist once their evaluations have run (robust_<attack>, latency_ms_<hw>,
    # corruption metrics): a claim may name any declared metric before the grid has
    # produced it.
    return is_metric(metric)


def metric_verdict(expect: Expectation, row: pd.Series | None, tolerance: float) -> str:
    """One (dataset, arch, metric) row of ``compare`` judged against an expectation."""
    if row is None:
        return "no results"
    if row["a_seeds"] < 2 or row["b_seeds"] < 2:
        return "one seed"
    delta, spread = row["delta"], row["a_std"] + row["b_std"]
    if expect == "keep":
        # Signed so that positive = better, whichever way the metric is read.
        gain = -delta if lower_is_better(row["metric"]) else delta
        allowed = tolerance if is_percent(row["metric"]) else tolerance * abs(row["a"])
        if gain >= -allowed:
            return "supported"
        return "contradicted" if -gain > allowed + spread else "within noise"
    toward = delta > 0 if expect == "higher" else delta < 0
    if abs(delta) <= spread or delta == 0:
        return "within noise"
    return "supported" if toward else "contradicted"


def claim_verdict(verdicts: list[str]) -> str:
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    if "contradicted" in verdicts:
        return "not supported"
    return "inconclusive"


def evaluate(claims: list[Claim], metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, dataset, arch, metric): both sides as mean ± std over seeds, the
    difference, the metric's verdict and its claim's overall verdict."""
    rows = []
    for i, claim in enumerate(claims):
        try:
            result = compare(metrics, claim.baseline, claim.method)
        except ValueError:  # a side has no finished runs yet
            result = pd.DataFrame(columns=["dataset", "arch", "metric"])
        if claim.archs is not None:
            result = result[result["arch"].isin(claim.archs)]
        places = result[["dataset", "arch"]].drop_duplicates().itertuples(index=False)
        places = list(places) or [(None, None)]
        claim_rows = []
        for dataset, arch in places:
            here = result[(result["dataset"] == dataset) & (result["arch"] == arch)]
            for metric, expect in claim.expect.items():
                match = here[here["metric"] == metric]
                row = None if match.empty else match.iloc[0]
                claim_rows.append({
                    "claim_id": i, "paper": claim.paper, "claim": claim.claim,
                    "baseline": claim.baseline, "method": claim.method, "dataset": dataset,
                    "arch": arch, "metric": metric, "expect": expect,
                    **_sides(row, metric),
                    "verdict": metric_verdict(expect, row, claim.tolerance),
                    "note": claim.note,
                })
        overall = claim_verdict([r["verdict"] for r in claim_rows])
        rows += [{**r, "claim_verdict": overall} for r in claim_rows]
    return pd.DataFrame(rows)


def _sides(row: pd.Series | None, metric: str) -> dict:
    if row is None:
        return {"baseline_value": "", "method_value": "", "delta": math.nan,
                "seeds": ""}
    percent = is_percent(metric)
    delta = f"{100 * row['delta']:+.1f}" if percent else f"{row['delta'] / row['a']:+.1%}"
    return {
        "baseline_value": format_value(row["a"], row["a_std"], percent),
        "method_value": f"{format_value(row['b'], row['b_std'], percent)} ({delta})",
        "delta": row["delta"], "seeds": f"{row['a_seeds']}/{row['b_seeds']}",
    }


def render(result: pd.DataFrame, fmt: str = "table") -> str:
    """The claims as a table, one line per metric: a claim's paper, words, two methods and
    overall verdict on its first line. ``markdown`` folds them into one column (to paste
    into notes and papers: the plain table is wide)."""
    from tabulate import tabulate

    table = []
    for _, group in result.groupby("claim_id", sort=True):
        for k, (_, r) in enumerate(group.iterrows()):
            arch = r["arch"] if isinstance(r["arch"], str) else ""
            metric = f"{r['metric']} ({r['expect']})"
            values = [r["baseline_value"], r["method_value"], r["seeds"], r["verdict"]]
            if fmt == "markdown":
                claim = (f"**{r['paper']}**: {r['claim']} (`{r['method']}` vs "
                         f"`{r['baseline']}`) → **{r['claim_verdict']}**")
                table.append([claim if k == 0 else "", arch, metric, *values])
            else:
                claim = (f"{r['claim']} ({r['method']} vs {r['baseline']}): "
                         f"{r['claim_verdict'].upper()}")
                table.append([r["paper"] if k == 0 else "", claim if k == 0 else "", arch,
                              metric, *values])
    tail = ["metric (expected)", "baseline", "method", "seeds", "verdict"]
    if fmt == "markdown":
        return tabulate(table, headers=["claim", "arch", *tail], tablefmt="github",
                        disable_numparse=True)
    return tabulate(table, headers=["paper", "claim", "arch", *tail], disable_numparse=True)
