"""Row builders shared by cell bodies: the timestamp every row carries, and the one shape
of a ``robustness`` row (attacks and ε sweeps both write them, ok or failed)."""
from __future__ import annotations

import json

import pandas as pd

from bench.results.points import pack
from bench.results.provenance import load_avg


def now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def robustness_row(run_id: str, eval_id: str, *, attack: str, norm: str, eps: float,
                   steps: int | None, restarts: int, n_examples: int, result=None,
                   error: str | None = None, sweep: str | None = None) -> dict:
    """One ``robustness`` row: measured from ``result`` (a bench.attacks AttackResult), or
    failed with ``error`` when there is no result. ``sweep``: the ε sweep's label."""
    row = {"run_id": run_id, "eval_id": eval_id, "attack": attack, "norm": norm, "eps": eps,
           "steps": steps, "restarts": restarts, "n_examples": n_examples}
    if result is None:
        row.update(status="failed", error=error, created_at=now())
    else:
        row.update(n_examples=result.n_examples, clean_acc=result.clean_acc,
                   robust_acc=result.robust_acc, attack_seconds=result.seconds,
                   attack_config=json.dumps(result.config, sort_keys=True, default=str),
                   status="ok", error=None, created_at=now(), load_avg=load_avg(),
                   clean_points=pack(result.clean_correct), robust_points=pack(result.robust))
    if sweep is not None:
        row["sweep"] = sweep
    return row
