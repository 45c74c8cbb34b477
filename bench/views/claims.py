"""The source papers' qualitative claims, checked against a leaderboard's own numbers.

A leaderboard may carry ``claims.yaml``: each claim sets a method against a baseline (two
method labels of the grid, as in ``perbench compare``) and says, per metric, what the
paper leads one to expect:

- ``higher`` / ``lower``: the method's value is above / below the baseline's;
- ``keep``: it is no worse than the baseline by more than ``tolerance`` (an absolute
  difference for accuracies, default 0.01 = 1 point; a fraction of the baseline's mean for
  costs, default 0.01 = 1%).

Each (claim, dataset, arch, metric) is one test of the difference method − baseline, with
the test its data allow (bench.views.difference: paired bootstrap on shared seeds and
points, unpaired from counts for rows without per-point results, over seeds for timings,
exact for FLOPs and parameter counts), a 95% interval ``[lo, hi]`` and a two-sided
bootstrap p-value. The rule (docs/conventions.md#comparisons-and-claims):

- ``higher`` / ``lower``: ``supported`` when the interval excludes 0 in the expected
  direction, ``contradicted`` when it excludes 0 the other way;
- ``keep`` (non-inferiority, margin ``m`` = the tolerance in the metric's units):
  ``supported`` when the interval lies above ``−m`` on the better side (accuracies:
  ``lo > −m``; costs: ``hi < +m``), ``contradicted`` when it lies wholly beyond the margin
  on the worse side; its p-value tests ``difference = margin``, not 0;
- and in both, ``supported`` / ``contradicted`` also need the Holm-adjusted p-value below
  0.05, Holm's correction taken over every distinct test of the claims file that has a
  p-value and at least two seeds (the percentile interval excludes the null exactly when
  the raw p is below about 0.05, so with a single test the two rules agree; with many,
  Holm's is the stricter);
- otherwise ``within noise``. An exact difference (FLOPs, parameter counts equal across
  seeds) is judged by its sign (for ``keep``: against the margin), with no p-value and
  outside Holm's family. ``one seed``: the test had a single seed (shown, with an interval
  over points only where points exist, but not judged: the seed-to-seed spread is
  unknown); ``no results`` while either method has none.

A claim is ``supported`` when every one of its metrics is, ``not supported`` when any is
contradicted, else ``inconclusive``. A caller that knows a method's mechanism did not act
in its runs (``evaluate``'s ``not_acted``) overrides that: ``mechanism did not act``, with
the reason, whatever the metrics say (their own verdicts are still shown).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.results.board import BoardError, read_yaml_mapping, validation_message
from bench.views.columns import is_metric, is_percent, lower_is_better
from bench.views.compare import format_diff, format_estimate, format_n, format_p
from bench.views.difference import EXACT, LEVEL, N_BOOT, SHORT, difference
from bench.views.evidence import Evidence
from bench.views.stats import holm, verdict

Expectation = Literal["higher", "lower", "keep"]
ALPHA = 0.05
SUPPORTED, CONTRADICTED, WITHIN_NOISE = "supported", "contradicted", "within noise"
ONE_SEED, NO_RESULTS = "one seed", "no results"
NOT_ACTED = "mechanism did not act"


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


def keep_margin(metric: str, tolerance: float, baseline_mean: float) -> float:
    """The tolerance of ``keep`` in the metric's units, as a bound on method − baseline:
    ``−tolerance`` for accuracies (absolute), ``+tolerance · |baseline|`` for costs (lower
    is better, relative)."""
    allowed = tolerance if is_percent(metric) else tolerance * abs(baseline_mean)
    return allowed if lower_is_better(metric) else -allowed


def metric_verdict(row: Mapping | None, alpha: float = ALPHA) -> str:
    """One test (a row of ``evaluate``: expect, metric, diff, lo, hi, margin, test,
    n_seeds, p_adjusted) judged against its expectation; see the module docstring."""
    if row is None or pd.isna(row["diff"]):
        return NO_RESULTS
    exact = row["test"] == EXACT
    if not exact and row["n_seeds"] < 2:
        return ONE_SEED
    p = None if exact else row["p_adjusted"]
    diff, lo, hi = row["diff"], row["lo"], row["hi"]
    if row["expect"] != "keep":
        return verdict(diff, lo, hi, row["expect"], p=p, alpha=alpha)
    if lower_is_better(row["metric"]):  # better = negative: flip so that better is up
        diff, lo, hi = -diff, -hi, -lo
    return verdict(diff, lo, hi, "keep", abs(row["margin"]), p=p, alpha=alpha)


def claim_verdict(verdicts: list[str]) -> str:
    """Every metric supported: ``supported``; any contradicted: ``not supported``; else
    (within noise, one seed, no results) ``inconclusive``."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return "supported"
    if CONTRADICTED in verdicts:
        return "not supported"
    return "inconclusive"


COLUMNS = ["claim_id", "paper", "claim", "baseline", "method", "dataset", "arch", "metric",
           "expect", "tolerance", "margin", "baseline_mean", "baseline_lo", "baseline_hi",
           "baseline_seeds", "method_mean", "method_lo", "method_hi", "method_seeds", "diff",
           "lo", "hi", "p", "p_adjusted", "n_seeds", "n_points", "test", "verdict", "note",
           "claim_verdict", "claim_reason"]


def evaluate(claims: list[Claim], metrics: pd.DataFrame, evidence: Evidence | None = None, *,
             not_acted: Mapping[str, str] | None = None, alpha: float = ALPHA,
             level: float = LEVEL, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per (claim, dataset, arch, metric): both sides' means and intervals, the
    difference method − baseline with its interval, raw and Holm-adjusted p-values, the
    seeds and points the test used, the test, the metric's verdict and its claim's.

    ``metrics``: ``per_run_metrics``; ``evidence``: ``metric_evidence`` of the same tables
    (without it accuracies are compared over seeds only). ``not_acted``: method label →
    why its mechanism did not act in its runs; a claim about that method gets the verdict
    ``mechanism did not act`` and the reason in ``claim_reason``.
    """
    rows = []
    done: dict[tuple, dict] = {}  # claims often repeat a comparison: test it once
    for i, claim in enumerate(claims):
        base = {"claim_id": i, "paper": claim.paper, "claim": claim.claim,
                "baseline": claim.baseline, "method": claim.method,
                "tolerance": claim.tolerance, "note": claim.note}
        a_all = metrics[metrics["method"] == claim.baseline]
        b_all = metrics[metrics["method"] == claim.method]
        places = sorted(set(zip(a_all["dataset"], a_all["arch"]))
                        & set(zip(b_all["dataset"], b_all["arch"])))
        if claim.archs is not None:
            places = [p for p in places if p[1] in claim.archs]
        for dataset, arch in places or [(None, None)]:
            a = a_all[(a_all["dataset"] == dataset) & (a_all["arch"] == arch)]
            b = b_all[(b_all["dataset"] == dataset) & (b_all["arch"] == arch)]
            for metric, expect in claim.expect.items():
                here = {**base, "dataset": dataset, "arch": arch, "metric": metric,
                        "expect": expect}
                key = (claim.baseline, claim.method, dataset, arch, metric, expect,
                       claim.tolerance)
                if key not in done:
                    done[key] = _test(metric, expect, claim.tolerance, a, b, evidence,
                                      level=level, n_boot=n_boot)
                rows.append({**here, **done[key], "_key": key})
    result = pd.DataFrame(rows, columns=[*(c for c in COLUMNS if c not in (
        "p_adjusted", "verdict", "claim_verdict", "claim_reason")), "_key"])
    # Holm over every distinct test that can decide a verdict (a p-value and two seeds or
    # more); a comparison two claims share counts once.
    family = result[result["p"].notna() & (result["n_seeds"].fillna(0) >= 2)]
    distinct = family.drop_duplicates("_key")
    adjusted = dict(zip(distinct["_key"], holm(distinct["p"].astype(float))))
    result["p_adjusted"] = [adjusted.get(k, np.nan) for k in result["_key"]]
    result["verdict"] = [metric_verdict(r, alpha) for _, r in result.iterrows()]
    overall = {i: claim_verdict(list(g["verdict"])) for i, g in result.groupby("claim_id")}
    reason: dict[int, str | None] = {i: None for i in overall}
    # The one place a claim's verdict is overridden: its method's mechanism did not act.
    for i, claim in enumerate(claims):
        if not_acted and claim.method in not_acted:
            overall[i], reason[i] = NOT_ACTED, not_acted[claim.method]
    result["claim_verdict"] = result["claim_id"].map(overall)
    result["claim_reason"] = result["claim_id"].map(reason)
    return result[COLUMNS]


def _test(metric: str, expect: str, tolerance: float, a: pd.DataFrame, b: pd.DataFrame,
          evidence: Evidence | None, **kw) -> dict:
    """The numbers of one (claim, place, metric); NaN ones where a side has no results."""
    empty = {k: math.nan for k in ("margin", "baseline_mean", "baseline_lo", "baseline_hi",
                                   "method_mean", "method_lo", "method_hi", "diff", "lo", "hi",
                                   "p", "n_seeds", "n_points")}
    empty.update(test=None, baseline_seeds=0, method_seeds=0)
    if metric not in a or metric not in b or a[metric].isna().all() or b[metric].isna().all():
        return {**empty, "baseline_seeds": int(a.get(metric, pd.Series()).notna().sum()),
                "method_seeds": int(b.get(metric, pd.Series()).notna().sum())}
    margin = (keep_margin(metric, tolerance, a[metric].mean()) if expect == "keep" else 0.0)
    res = difference(metric, a, b, evidence, null=margin, **kw)
    return {"margin": margin, "baseline_mean": res["a"], "baseline_lo": res["a_lo"],
            "baseline_hi": res["a_hi"], "baseline_seeds": res["a_seeds"],
            "method_mean": res["b"], "method_lo": res["b_lo"], "method_hi": res["b_hi"],
            "method_seeds": res["b_seeds"], "diff": res["diff"], "lo": res["lo"],
            "hi": res["hi"], "p": res["p"], "n_seeds": res["n_seeds"],
            "n_points": math.nan if res["n_points"] is None else res["n_points"],
            "test": res["test"]}


def _as_compare(r: pd.Series) -> dict:
    """A claims row in ``compare``'s names, for its formatters."""
    return {"a": r["baseline_mean"], "diff": r["diff"], "lo": r["lo"], "hi": r["hi"],
            "p": r["p"], "test": r["test"], "n_seeds": r["n_seeds"],
            "n_points": r["n_points"], "a_seeds": r["baseline_seeds"],
            "b_seeds": r["method_seeds"]}


def formatted(result: pd.DataFrame) -> pd.DataFrame:
    """``evaluate``'s numbers as text, one row per row: ``baseline`` and ``method`` as
    ``mean [lo, hi]``, ``difference`` as ``diff [lo, hi]`` (points for accuracies, relative
    to the baseline for costs), ``p`` raw and ``p (Holm)`` adjusted, ``n`` (seeds×points
    per seed), ``test`` (short name)."""
    out = []
    for _, r in result.iterrows():
        if pd.isna(r["diff"]):
            out.append({"baseline": "", "method": "", "difference": "", "p": "",
                        "p (Holm)": "", "n": "", "test": ""})
            continue
        percent = is_percent(r["metric"])
        row = _as_compare(r)
        out.append({
            "baseline": format_estimate(r["baseline_mean"], r["baseline_lo"], r["baseline_hi"],
                                        r["metric"]),
            "method": format_estimate(r["method_mean"], r["method_lo"], r["method_hi"],
                                      r["metric"]),
            "difference": format_diff({**row, "p": math.nan}, percent),
            "p": format_p(r["p"]).removeprefix("p="),
            "p (Holm)": format_p(r["p_adjusted"]).removeprefix("p="),
            "n": format_n(row), "test": SHORT.get(r["test"], r["test"])})
    return pd.DataFrame(out, index=result.index,
                        columns=["baseline", "method", "difference", "p", "p (Holm)", "n",
                                 "test"])


def _number(v) -> float | int | None:
    """A JSON number: None for a missing value, int for a count, float otherwise."""
    if v is None or pd.isna(v):
        return None
    return int(v) if isinstance(v, (int, np.integer)) else float(v)


def to_json(result: pd.DataFrame) -> str:
    """The claims as JSON: a list of claims (paper, claim, baseline, method, verdict,
    reason, note), each with its tests (dataset, arch, metric, expect, both sides' mean and
    interval, diff, lo, hi, margin, p, p_adjusted, n_seeds, n_points, test, verdict)."""
    claims = []
    for _, group in result.groupby("claim_id", sort=True):
        first = group.iloc[0]
        tests = []
        for _, r in group.iterrows():
            tests.append({
                "dataset": _text(r["dataset"]), "arch": _text(r["arch"]), "metric": r["metric"],
                "expect": r["expect"],
                **{k: _number(r[k]) for k in (
                    "baseline_mean", "baseline_lo", "baseline_hi", "baseline_seeds",
                    "method_mean", "method_lo", "method_hi", "method_seeds", "diff", "lo",
                    "hi", "margin", "p", "p_adjusted")},
                "n_seeds": None if pd.isna(r["n_seeds"]) else int(r["n_seeds"]),
                "n_points": None if pd.isna(r["n_points"]) else int(r["n_points"]),
                "test": _text(r["test"]), "verdict": r["verdict"]})
        claims.append({"paper": first["paper"], "claim": first["claim"],
                       "baseline": first["baseline"], "method": first["method"],
                       "verdict": first["claim_verdict"], "reason": _text(first["claim_reason"]),
                       "note": _text(first["note"]), "tolerance": float(first["tolerance"]),
                       "metrics": tests})
    return json.dumps(claims, indent=2, ensure_ascii=False, allow_nan=False)


def _text(v) -> str | None:
    return v if isinstance(v, str) else None


def render(result: pd.DataFrame, fmt: str = "table") -> str:
    """The claims as a table, one line per metric: a claim's paper, words, two methods and
    overall verdict on its first line. ``markdown`` folds them into one column (to paste
    into notes and papers: the plain table is wide)."""
    from tabulate import tabulate

    text = formatted(result)
    table = []
    for _, group in result.groupby("claim_id", sort=True):
        for k, (idx, r) in enumerate(group.iterrows()):
            arch = r["arch"] if isinstance(r["arch"], str) else ""
            metric = f"{r['metric']} ({r['expect']})"
            t = text.loc[idx]
            values = [t["baseline"], t["method"], t["difference"], t["p"], t["p (Holm)"],
                      t["n"], t["test"], r["verdict"]]
            overall = r["claim_verdict"]
            if isinstance(r["claim_reason"], str):
                overall = f"{overall} ({r['claim_reason']})"
            if fmt == "markdown":
                claim = (f"**{r['paper']}**: {r['claim']} (`{r['method']}` vs "
                         f"`{r['baseline']}`) → **{overall}**")
                table.append([claim if k == 0 else "", arch, metric, *values])
            else:
                claim = f"{r['claim']} ({r['method']} vs {r['baseline']}): {overall.upper()}"
                table.append([r["paper"] if k == 0 else "", claim if k == 0 else "", arch,
                              metric, *values])
    tail = ["metric (expected)", "baseline", "method", "difference", "p", "p (Holm)", "n",
            "test", "verdict"]
    if fmt == "markdown":
        return tabulate(table, headers=["claim", "arch", *tail], tablefmt="github",
                        disable_numparse=True)
    return tabulate(table, headers=["paper", "claim", "arch", *tail], disable_numparse=True)
