"""One method's results shaped for charts: robust accuracy per attack, ε sweeps, training
curves, latency per profile, corruption grid, what the method changed (removed samples,
layer sparsity) and its reliability checks. Each function takes the method's finished
runs (``run_id``, ``seed``) and returns a tidy frame, empty when there is nothing."""
from __future__ import annotations

import pandas as pd

CURVES = ("train_loss", "train_acc", "val_acc", "val_robust_acc", "lr")


def _of(table: pd.DataFrame, runs: pd.DataFrame, column: str = "run_id") -> pd.DataFrame:
    """Rows of ``table`` for ``runs``, with each run's seed."""
    return table.merge(runs[["run_id", "seed"]].rename(columns={"run_id": column}), on=column)


def attack_profile(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per attack: mean and std over seeds of robust accuracy (from ``per_run_metrics``)."""
    cols = [c for c in metrics.columns if c.startswith("robust_") and metrics[c].notna().any()]
    if not cols:  # melt would take every column for an empty list
        return pd.DataFrame(columns=["attack", "robust_acc", "std", "seeds"])
    long = metrics.melt(value_vars=cols, var_name="attack", value_name="robust_acc").dropna()
    out = long.groupby("attack")["robust_acc"].agg(robust_acc="mean", std="std", seeds="count")
    out = out.reset_index()
    out["attack"] = out["attack"].str.removeprefix("robust_")
    return out


def sweep_rows(robustness: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The ε-sweep rows (``sweep`` not null) that finished, with the run's seed."""
    rows = _of(robustness, runs)
    rows = rows[rows["sweep"].notna() & rows["robust_acc"].notna() & (rows["status"] != "failed")]
    return rows[["seed", "sweep", "attack", "norm", "eps", "robust_acc"]].sort_values(
        ["sweep", "seed", "eps"]).reset_index(drop=True)


def history_long(history: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Training curves as (seed, epoch, metric, value), one metric per ``CURVES`` entry."""
    rows = _of(history, runs)
    long = rows.melt(id_vars=["seed", "epoch"], value_vars=list(CURVES), var_name="metric")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def latency_profile(latency: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Mean single-image p50 (smallest batch) per hardware profile, and the skip reasons of
    profiles never measured."""
    rows = _of(latency, runs)
    measured = rows[rows["latency_ms_p50"].notna()].sort_values("batch_size", kind="stable")
    measured = measured.drop_duplicates(["run_id", "hardware"])
    means = measured.groupby("hardware")["latency_ms_p50"].mean().reset_index()
    skipped = rows[rows["latency_ms_p50"].isna() & rows["skipped_reason"].notna()
                   & ~rows["hardware"].isin(means["hardware"])]
    reasons = [f"{hw} latency skipped: {why}" for hw, why in
               skipped.drop_duplicates("hardware")[["hardware", "skipped_reason"]].itertuples(
                   index=False)]
    return means, reasons


def corruption_grid(corruption: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over seeds per (corruption, severity)."""
    rows = _of(corruption, runs).dropna(subset=["acc"])
    return rows.groupby(["corruption", "severity"], as_index=False)["acc"].mean()


def removed_per_class(removed: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Samples removed per (seed, label)."""
    rows = _of(removed, runs)
    return rows.groupby(["seed", "label"]).size().rename("removed").reset_index()


def layer_density(sparsity: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per layer, in the order recorded: the fraction of weights left nonzero, mean over seeds."""
    rows = _of(sparsity, runs)
    rows = rows.assign(density=rows["nonzero"] / rows["params"].where(rows["params"] > 0))
    return rows.groupby("layer", as_index=False, sort=False)["density"].mean()


def check_rows(checks: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The reliability checks, per seed: seed, check, passed, detail."""
    rows = _of(checks, runs)
    return rows[["seed", "check", "passed", "detail"]].sort_values(["seed", "check"]
                                                                   ).reset_index(drop=True)
