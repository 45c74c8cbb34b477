"""Two methods side by side: each one's mean with its 95% interval, and the difference with
its interval, p-value and the test behind them (docs/conventions.md#comparisons-and-claims).

``per_run_metrics`` gives one row per finished run with every metric the leaderboard
shows; ``compare`` sets two methods (or a base and the base plus a modifier) against each
other on each (dataset, arch) they share, one metric at a time, with the test its data
allow (bench.views.difference): a paired bootstrap over the same seeds and points where
per-point results exist, an unpaired one from counts where they do not, the exact
difference for FLOPs and parameter counts, a bootstrap over seeds for timings. Its
p-values are raw: ``compare`` tests every metric of a pair, so read a lone small p among
many with care (``perbench claims`` corrects for the number of tests).
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from bench.formats import format_count, format_flops, format_number
from bench.views.columns import column, is_percent, lower_is_better
from bench.views.difference import EXACT, LEVEL, N_BOOT, PAIRED, SHORT, difference
from bench.views.evidence import Evidence, attack_rows, finished_runs, worst_case_evidence
from bench.views.leaderboard import (
    KEYS,
    best_row_per_attack,
    corruption_errors,
    table_or_empty,
)


def per_run_metrics(tables: Mapping[str, pd.DataFrame], *, norm: str | None = None,
                    eps: float | None = None, mce_reference: str = "erm") -> pd.DataFrame:
    """One row per finished run: clean_acc, robust_worst (the worst case over attacks,
    where per-point results exist) and robust_<attack> (at one threat model), costs,
    corruption_acc and mce, and single-image latency per hardware profile. What each
    number was computed from (per-point bits, point counts) is
    ``bench.views.evidence.metric_evidence`` with the same ``norm`` and ``eps``."""
    runs = finished_runs(tables)
    cols = ["run_id", *KEYS, "seed", "clean_acc", "train_flops", "train_seconds",
            "infer_flops", "params", "nonzero_params"]
    out = runs[cols].set_index("run_id")
    rob = attack_rows(tables, runs, norm=norm, eps=eps)
    worst = worst_case_evidence(rob, norm=norm, eps=eps)
    if worst:
        out["robust_worst"] = pd.Series({r: float(b.mean()) for r, b in worst.items()})
    for attack, group in best_row_per_attack(rob).groupby("attack"):
        out[f"robust_{attack}"] = group.set_index("run_id")["robust_acc"]
    cor = corruption_errors(table_or_empty(tables, "corruption"), runs, mce_reference)
    if not cor.empty:
        out = out.join(cor.set_index("run_id")[["corruption_acc", "mce"]])
    lat = table_or_empty(tables, "latency")
    lat = lat[lat["latency_ms_p50"].notna()].sort_values("batch_size", kind="stable")
    if "execution" in lat:
        lat = lat[lat["execution"].fillna("dense") == "dense"]
    for hw, group in lat.drop_duplicates(["run_id", "hardware"]).groupby("hardware"):
        out[f"latency_ms_{hw}"] = group.set_index("run_id")["latency_ms_p50"]
    return out.reset_index()


RESULT_COLUMNS = ["dataset", "arch", "metric", "a", "a_lo", "a_hi", "a_seeds", "b", "b_lo",
                  "b_hi", "b_seeds", "diff", "lo", "hi", "p", "n_seeds", "n_points", "test",
                  "b_better", "beyond_noise"]


def compare(metrics: pd.DataFrame, method_a: str, method_b: str,
            evidence: Evidence | None = None, *, level: float = LEVEL,
            n_boot: int = N_BOOT) -> pd.DataFrame:
    """Rows per (dataset, arch, metric): each method's mean and interval (``a``, ``a_lo``,
    ``a_hi``, and its seeds ``a_seeds``; the same for b), the difference ``diff`` = b − a
    with its interval ``lo``/``hi`` and two-sided p-value ``p`` (NaN for an exact
    difference, or one seed on a side of a bootstrap over seeds), the seeds and points per
    seed the test used (``n_seeds``, ``n_points``; points: the smallest where seeds differ,
    missing for tests over seeds), the ``test``, whether b is better, and whether the
    difference is ``beyond_noise`` (see :func:`beyond_noise`).

    ``evidence`` (``metric_evidence`` of the same tables) makes the accuracy tests paired
    or count-based; without it every metric that varies by seed is compared over seeds.
    """
    missing = [m for m in (method_a, method_b) if m not in set(metrics["method"])]
    if missing:
        raise ValueError(f"no finished runs of {', '.join(map(repr, missing))}; methods with "
                         f"results: {', '.join(sorted(metrics['method'].unique()))}")
    value_cols = [c for c in metrics.columns
                  if c not in ("run_id", *KEYS, "seed", "params") and metrics[c].notna().any()]
    rows = []
    a_all, b_all = (metrics[metrics["method"] == m] for m in (method_a, method_b))
    for (dataset, arch), a in a_all.groupby(["dataset", "arch"]):
        b = b_all[(b_all["dataset"] == dataset) & (b_all["arch"] == arch)]
        if b.empty:
            continue
        for col in value_cols:
            if a[col].isna().all() or b[col].isna().all():
                continue
            res = difference(col, a, b, evidence, level=level, n_boot=n_boot)
            rows.append({"dataset": dataset, "arch": arch, "metric": col, **res,
                         "b_better": better(col, res["diff"]),
                         "beyond_noise": beyond_noise(res)})
    if not rows:
        raise ValueError(f"{method_a!r} and {method_b!r} share no (dataset, arch) with results")
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def beyond_noise(res: Mapping, alpha: float = 0.05) -> bool:
    """The interval excludes 0 (an exact difference: it is not 0) and the raw p-value, where
    there is one, is below ``alpha``."""
    return bool((res["lo"] > 0 or res["hi"] < 0) and not res["p"] >= alpha)


def better(metric: str, diff: float) -> bool:
    """Whether a difference b − a favours b (lower is better for costs and mCE)."""
    return bool(diff < 0 if lower_is_better(metric) else diff > 0)


def _signed(value: float, percent: bool, base: float) -> str:
    if percent:
        return f"{100 * value:+.1f}"
    return f"{value / abs(base):+.1%}" if base else f"{value:+.3g}"


def format_value(value: float, metric: str) -> str:
    """One number of ``metric`` as the leaderboard writes it: percent for accuracies,
    ``10.6 TFLOPs``, ``94.2k`` parameters, 3 significant digits otherwise."""
    col = column(metric)
    fmt = col.format if col is not None else "text"
    if fmt == "percent":
        return f"{100 * value:.1f}"
    if fmt == "flops":
        return format_flops(value)
    if fmt == "count":
        return format_count(round(value))
    return format_number(value)


def format_estimate(mean: float, lo: float, hi: float, metric: str) -> str:
    """``72.4 [71.0, 73.8]`` (accuracies in percent), ``180 [173, 193]`` (seconds); the mean
    alone where there is no interval (an exact value, one seed)."""
    if pd.isna(mean):
        return ""
    if pd.isna(lo) or pd.isna(hi) or lo == hi == mean:
        return format_value(mean, metric)
    return f"{format_value(mean, metric)} [{format_value(lo, metric)}, {format_value(hi, metric)}]"


def format_p(p: float) -> str:
    return "" if pd.isna(p) else f"p={p:.2g}"


def format_diff(row: Mapping, percent: bool, p: float | None = None) -> str:
    """``+1.3 [+0.4, +2.2] (p=0.004)``: points for accuracies, relative to a for costs
    (``-2.8% [...]``); ``(exact)`` for a deterministic difference. ``p`` replaces the row's
    own (an adjusted one)."""
    base = row["a"]
    text = _signed(row["diff"], percent, base)
    if row["test"] == EXACT:
        return f"{text} (exact)"
    if not (pd.isna(row["lo"]) or pd.isna(row["hi"])):
        text += f" [{_signed(row['lo'], percent, base)}, {_signed(row['hi'], percent, base)}]"
    shown = format_p(row["p"] if p is None else p)
    return f"{text} ({shown})" if shown else text


def format_n(row: Mapping) -> str:
    """``3×1000``: seeds × points per seed the test used; ``3`` for tests over seeds;
    ``3/2×500`` where unpaired sides have different seeds."""
    a_seeds, b_seeds = int(row["a_seeds"]), int(row["b_seeds"])
    seeds = (f"{int(row['n_seeds'])}" if row["test"] == PAIRED or a_seeds == b_seeds
             else f"{a_seeds}/{b_seeds}")
    n = row["n_points"]
    return seeds if n is None or pd.isna(n) else f"{seeds}×{int(n)}"


def default_pair(methods: list[str]) -> tuple[str, str]:
    """A base and the same base plus a modifier (``pgd_at`` vs ``pgd_at+caper``) where the
    names allow, else the first two methods; a single method is paired with itself."""
    present = set(methods)
    for method in methods:
        parts = method.split("+")
        for cut in range(len(parts) - 1, 0, -1):  # the longest base present first
            base = "+".join(parts[:cut])
            if base in present:
                return base, method
    return methods[0], methods[1 if len(methods) > 1 else 0]


def paper_table(result: pd.DataFrame) -> pd.DataFrame:
    """One (dataset, arch)'s ``compare`` rows as strings: metric, a and b as
    ``mean [lo, hi]``, ``diff [lo, hi] (p=…)``, n (seeds×points) and the test's short
    name, with ``diff``, ``b_better`` and ``beyond_noise`` kept for colouring."""
    percent = result["metric"].map(is_percent)
    rows = [r for _, r in result.iterrows()]
    return pd.DataFrame({
        "metric": result["metric"].tolist(),
        "a": [format_estimate(r["a"], r["a_lo"], r["a_hi"], r["metric"]) for r in rows],
        "b": [format_estimate(r["b"], r["b_lo"], r["b_hi"], r["metric"]) for r in rows],
        "difference": [format_diff(r, p) for r, p in zip(rows, percent)],
        "n": [format_n(r) for r in rows],
        "test": [SHORT.get(r["test"], r["test"]) for r in rows],
        "diff": result["diff"].tolist(), "b_better": result["b_better"].tolist(),
        "beyond_noise": result["beyond_noise"].tolist(),
    })
