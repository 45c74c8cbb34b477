"""The ``transfer`` table read as the thesis' Algorithm 3 reads it: a matrix of each
target's accuracy on examples crafted on each source, and per target whether a transfer
attack beat its own white-box attack.

The diagonal (source = target) is the white-box attack; every cell of a column scores the
same clean points with the same attack settings, so a column's cells compare point for
point. A target that some *other* model's examples fool more often than its own gradients
do has gradients that do not describe it: the classic sign of gradient masking (Athalye et
al. 2018; Carlini et al. 2019, "On Evaluating Adversarial Robustness", §5).
"""
from __future__ import annotations

import pandas as pd

VALUES = ("acc", "robust_acc")  # target accuracy on the adversarial examples; and also clean
# A transfer attack must beat the white-box one by more than this to flag the target:
# 1 point is 5 of the 500 points a fashion-mnist transfer cell scores, beyond the ties that
# two different attacks on the same points produce.
MARGIN = 0.01


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """A readable, unique label per run_id: "method · arch", with the seed where one
    method and arch have several runs."""
    runs = runs.drop_duplicates("run_id")
    base = runs["method"] + " · " + runs["arch"]
    several = base.duplicated(keep=False)
    labels = base.where(~several, base + " · seed " + runs["seed"].astype(str))
    return pd.Series(labels.to_numpy(), index=runs["run_id"].to_numpy())


def transfer_long(transfer: pd.DataFrame, runs: pd.DataFrame, value: str = "acc",
                  dataset: str | None = None) -> pd.DataFrame:
    """One row per (source, target): labels, ``value``, points scored and whether the cell
    is the white-box diagonal. Rows whose runs are gone from ``runs`` are dropped."""
    if value not in VALUES:
        raise ValueError(f"transfer value must be one of {', '.join(VALUES)}, not {value!r}")
    cols = ["source", "target", "source_run", "target_run", "dataset", "attack", "eps", value,
            "n_examples", "white_box"]
    if transfer.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    ok = runs[runs["status"] == "ok"]
    rows = transfer[transfer["source_run"].isin(ok["run_id"])
                    & transfer["target_run"].isin(ok["run_id"])].reset_index(drop=True)
    rows["dataset"] = rows["target_run"].map(ok.drop_duplicates("run_id").set_index("run_id")["dataset"])
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    # Labels need a seed only where a dataset's matrix holds two runs of one method and arch.
    rows = rows.assign(source=None, target=None)
    for _, part in rows.groupby("dataset"):
        labels = run_labels(ok[ok["run_id"].isin(set(part["source_run"]) | set(part["target_run"]))])
        rows.loc[part.index, "source"] = part["source_run"].map(labels)
        rows.loc[part.index, "target"] = part["target_run"].map(labels)
    rows["white_box"] = rows["source_run"] == rows["target_run"]
    # A rerun may append a second row for a cell: keep the latest.
    rows = rows.sort_values("created_at").drop_duplicates(["source_run", "target_run"], keep="last")
    return rows[cols].sort_values(["source", "target"]).reset_index(drop=True)


def transfer_matrix(long: pd.DataFrame, value: str = "acc") -> pd.DataFrame:
    """Sources as rows, targets as columns, in the same (label) order."""
    order = sorted(set(long["source"]) | set(long["target"]))
    wide = long.pivot(index="source", columns="target", values=value)
    return wide.reindex(index=[o for o in order if o in wide.index],
                        columns=[o for o in order if o in wide.columns])


def transfer_summary(long: pd.DataFrame, value: str = "acc", margin: float = MARGIN
                     ) -> pd.DataFrame:
    """Per target: its white-box ``value``, the strongest other source and its ``value``,
    and ``transfer_beats_white_box`` when that is lower by more than ``margin``."""
    out = []
    for target, col in long.groupby("target", sort=True):
        own = col.loc[col["white_box"], value]
        others = col[~col["white_box"]]
        white = float(own.iloc[0]) if len(own) else float("nan")
        best = others.loc[others[value].idxmin()] if len(others) else None
        out.append({
            "target": target, "white_box": white,
            "strongest_source": None if best is None else best["source"],
            "transfer": float("nan") if best is None else float(best[value]),
            "sources": len(others),
            "transfer_beats_white_box": bool(best is not None and len(own)
                                             and best[value] < white - margin),
        })
    return pd.DataFrame(out, columns=["target", "white_box", "strongest_source", "transfer",
                                      "sources", "transfer_beats_white_box"])


def render(long: pd.DataFrame, value: str = "acc", fmt: str = "table") -> str:
    """The matrix with numbered columns (row i's label is column i), accuracies in %, then
    the per-target summary."""
    from tabulate import tabulate

    wide = transfer_matrix(long, value)
    number = {label: i + 1 for i, label in enumerate(sorted(set(wide.index) | set(wide.columns)))}
    tablefmt = "github" if fmt == "markdown" else "simple"
    matrix = [[f"{number[src]} {src}", *("" if pd.isna(v) else f"{100 * v:.1f}" for v in row)]
              for src, row in wide.iterrows()]
    headers = ["source \\ target", *(str(number[t]) for t in wide.columns)]
    summary = transfer_summary(long, value)
    lines = [[r.target, f"{100 * r.white_box:.1f}", r.strongest_source or "",
              "" if pd.isna(r.transfer) else f"{100 * r.transfer:.1f}",
              "TRANSFER BEATS WHITE-BOX" if r.transfer_beats_white_box else ""]
             for r in summary.itertuples()]
    return "\n\n".join([
        tabulate(matrix, headers=headers, tablefmt=tablefmt, disable_numparse=True),
        tabulate(lines, headers=["target", "white-box %", "strongest other source",
                                 "its transfer %", "flag"], tablefmt=tablefmt,
                 disable_numparse=True)])
