"""RobustBench interoperability on the data side: our runs as its ``model_info`` entries, and
its entries as ``reference`` rows shown beside a leaderboard (never ranked in it).

RobustBench keeps one JSON file per model, ``model_info/<dataset>/<threat_model>/<Entry>.json``,
with accuracies as percent strings ("53.42") and eps as text ("8/255"). We convert at this
boundary only: inside PERBench accuracies stay fractions and eps a float.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bench.formats import format_eps
from bench.results.store import empty_table
from bench.views.leaderboard import (
    STANDARD_ATTACK,
    best_row_per_attack,
    threat_models,
)

SOURCE = "robustbench"
THREAT_MODELS = ("Linf", "L2")
LAYOUT = "a RobustBench clone holding model_info/<dataset>/<threat_model>/*.json, or one such file"
_REQUIRED = ("name", "eps", "clean_acc")
_SHOWN_IDS = 5  # run ids listed in an "unknown run" message


def export_entry(tables: Mapping[str, pd.DataFrame], run_id: str, *,
                 threat_model: str | None = None, eps: float | None = None) -> dict:
    """One finished run as a RobustBench ``model_info`` dict, with our provenance under
    ``perbench``.

    The AutoAttack evaluation is the one at ``threat_model``/``eps`` where given, else at
    the leaderboard's most common threat model the run has; of repeated evaluations, the
    one on most points (then the lowest robust accuracy), as the leaderboard picks.
    ``ValueError`` for an unknown or failed run, or one without such an evaluation.
    """
    run = _finished_run(tables.get("runs", empty_table("runs")), run_id)
    aa = _autoattack_row(tables.get("robustness", empty_table("robustness")), run_id,
                         threat_model, eps, threat_models(tables))
    # the run's clean accuracy is on the whole test set; the attack's only on its points
    clean = run["clean_acc"] if pd.notna(run["clean_acc"]) else aa["clean_acc"]
    robust = _percent(aa["robust_acc"])
    return {
        "name": run["method"], "architecture": run["arch"], "dataset": run["dataset"],
        "threat_model": aa["norm"], "eps": format_eps(float(aa["eps"])),
        "clean_acc": _percent(clean), "reported": robust, "autoattack_acc": robust,
        "additional_data": False, "number_forward_passes": 1,
        "perbench": {
            "run_id": run_id, "leaderboard": _plain(run["leaderboard"]),
            "seed": _plain(run["seed"]), "n_examples": _plain(aa["n_examples"]),
            "n_test": _plain(run["n_test"]), "train_flops": _plain(run["train_flops"]),
            "versions": _json_field(run["versions"]),
            "method_config": _json_field(run["method_config"]),
        },
    }


def import_entries(path: Path | str, dataset: str, threat_model: str) -> list[dict]:
    """``reference`` rows from a RobustBench clone's ``model_info/<dataset>/<threat_model>``
    or from one ``model_info`` JSON file.

    A file that is not valid JSON or lacks a field is skipped with a warning naming it:
    one bad entry must not hide the others. ``FileNotFoundError`` for a missing path.
    """
    if threat_model not in THREAT_MODELS:
        raise ValueError(f"threat model {threat_model!r} has no eps-ball AutoAttack "
                         f"results; allowed: {', '.join(THREAT_MODELS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; expected {LAYOUT}")
    if path.is_file():
        files = [path]
    else:
        folder = path / "model_info" / dataset / threat_model
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder; expected {LAYOUT}")
        files = sorted(folder.glob("*.json"))
    created_at = pd.Timestamp.now(tz="UTC")
    rows = []
    for file in files:
        try:
            entry = json.loads(file.read_text())
            rows.append(_reference_row(file.stem, entry, dataset, threat_model, created_at))
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            warnings.warn(f"skipping RobustBench entry {file}: {exc}", stacklevel=2)
    return rows


def reference_key(path: Path | str, dataset: str, threat_model: str) -> str:
    """The ``reference`` file key of one import: the same source imported again overwrites
    its earlier rows instead of adding duplicates."""
    source = f"{Path(path).resolve()}|{dataset}|{threat_model}"
    return f"{SOURCE}-{hashlib.sha256(source.encode()).hexdigest()[:16]}"


def _finished_run(runs: pd.DataFrame, run_id: str) -> pd.Series:
    match = runs[runs["run_id"] == run_id]
    if match.empty:
        known = sorted(runs["run_id"].unique())
        shown = ", ".join(known[:_SHOWN_IDS]) + (", ..." if len(known) > _SHOWN_IDS else "")
        raise ValueError(f"unknown run {run_id!r}; known runs ({len(known)}): {shown or 'none'}")
    run = match.iloc[0]
    if run["status"] == "failed":
        error = str(run["error"]).strip().splitlines()[0] if isinstance(run["error"], str) else "?"
        raise ValueError(f"run {run_id!r} failed ({error}); only finished runs can be exported")
    return run


def _autoattack_row(rob: pd.DataFrame, run_id: str, threat_model: str | None,
                    eps: float | None, preferred: list[tuple[str, float]]) -> pd.Series:
    """The run's AutoAttack evaluation at the threat model asked for, or the preferred one."""
    mine = rob[(rob["run_id"] == run_id) & (rob["status"] != "failed") & rob["robust_acc"].notna()]
    if "sweep" in mine:  # ε-sweep rows are curves, not the standardized evaluation
        mine = mine[mine["sweep"].isna()]
    aa = mine[mine["attack"] == STANDARD_ATTACK]
    if threat_model is not None:
        aa = aa[aa["norm"] == threat_model]
    if eps is not None:
        aa = aa[(aa["eps"] - eps).abs() < 1e-9]
    if aa.empty:
        wanted = " ".join(p for p in (threat_model, eps is not None and format_eps(eps)) if p)
        has = sorted({f"{a} ({n} {format_eps(e)})"
                      for a, n, e in zip(mine["attack"], mine["norm"], mine["eps"])})
        raise ValueError(f"run {run_id!r} has no finished {STANDARD_ATTACK} result"
                         f"{' at ' + wanted if wanted else ''}; its attacks: "
                         f"{', '.join(has) or 'none'}")
    order = {tm: i for i, tm in enumerate(preferred)}
    first = min(zip(aa["norm"], aa["eps"]), key=lambda tm: order.get(tm, len(order)))
    aa = aa[(aa["norm"] == first[0]) & (aa["eps"] == first[1])]
    return best_row_per_attack(aa).iloc[0]


def _reference_row(entry: str, info: object, dataset: str, threat_model: str,
                   created_at: pd.Timestamp) -> dict:
    """One ``reference`` row; ``ValueError`` saying what is wrong with the entry."""
    if not isinstance(info, dict):
        raise ValueError(f"expected a JSON object, found {type(info).__name__}")
    missing = [k for k in _REQUIRED if info.get(k) in (None, "")]
    if missing:
        raise ValueError(f"missing fields {missing}")
    # the standardized number where the entry has one, else the paper's own claim
    if info.get("autoattack_acc") not in (None, ""):
        robust, attack = _fraction(info, "autoattack_acc"), STANDARD_ATTACK
    elif info.get("reported") not in (None, ""):
        robust, attack = _fraction(info, "reported"), "reported"
    else:
        raise ValueError("missing fields ['autoattack_acc'] (and no 'reported' to fall back on)")
    return {
        "source": SOURCE, "entry": entry, "name": str(info["name"]),
        "architecture": _text(info.get("architecture")), "dataset": dataset,
        "threat_model": threat_model, "eps": _parse_eps(info["eps"]),
        "clean_acc": _fraction(info, "clean_acc"), "robust_acc": robust,
        "robust_attack": attack, "venue": _text(info.get("venue")),
        "link": _text(info.get("link")), "additional_data": _flag(info.get("additional_data")),
        "unreliable": _flag(info.get("unreliable")), "reported_elsewhere": True,
        "created_at": created_at,
    }


def _parse_eps(value: object) -> float:
    """``"8/255"`` -> 0.0314; ``"0.5"`` or 0.5 -> 0.5."""
    try:
        if isinstance(value, str) and "/" in value:
            num, den = value.split("/")
            return float(num) / float(den)
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"eps={value!r} is neither a number nor a fraction like '8/255'") from None


def _fraction(info: dict, field: str) -> float:
    """A RobustBench percent (string or number) as a fraction in [0, 1]."""
    try:
        percent = float(info[field])
    except (TypeError, ValueError):
        percent = math.nan
    if not 0 <= percent <= 100:  # also rejects NaN
        raise ValueError(f"{field}={info[field]!r} is not a percentage in [0, 100]")
    return percent / 100


def _percent(fraction: float) -> str:
    """RobustBench stores accuracies as percent strings with two decimals."""
    return f"{100 * float(fraction):.2f}"


def _text(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _plain(value: object) -> object:
    """A JSON-safe scalar: numpy numbers as Python ones, NaN and NA as None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _json_field(text: object) -> object:
    """A JSON column (versions, method_config) as an object; kept as text if not JSON."""
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
