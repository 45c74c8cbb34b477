"""Whether a method's modifier did what it is there to do: CAPER removed samples, AccelAT
lowered the learning rate while training still used it, ADMM pruned weights, EWS distilled
into subnets. A claim about a modifier says nothing when its mechanism never acted (a
4-epoch run whose AccelAT drop fired after the last epoch trained exactly as its base).

The ``mechanism`` table (``TrainContext.record_mechanism``) says it directly. Runs trained
before that table existed are read from what they did record: ``history.lr`` per epoch
(AccelAT), ``removed_samples`` (CAPER, ``random_subset``), ``runs.sparsity`` and
``layer_sparsity`` (ADMM). EWS left no trace of its subnet choices there, so for those runs
the answer is "not recorded", never a guess.

:func:`mechanism_not_acted` answers for one method label's runs; :func:`not_acted_by_label`
for every label of a board.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

NOT_RECORDED = "not recorded"  # in a reason when the runs predate the mechanism table


@dataclass(frozen=True)
class _Mechanism:
    """How to tell whether one modifier acted in one run: True, False, or None when the
    run recorded nothing that says."""

    missing: str  # what did not happen, as the reason says it
    acted: Callable[[Mapping[str, pd.DataFrame], str, pd.DataFrame], bool | None]
    recorded: str = ""  # what was not recorded, for runs that predate the table


def _rows(tables: Mapping[str, pd.DataFrame], table: str, run_id: str) -> pd.DataFrame:
    frame = tables.get(table)
    if frame is None or frame.empty or "run_id" not in frame:
        return pd.DataFrame()
    return frame[frame["run_id"] == run_id]


def _events(tables: Mapping[str, pd.DataFrame], run_id: str, modifier: str) -> pd.DataFrame:
    rows = _rows(tables, "mechanism", run_id)
    return rows[rows["modifier"] == modifier] if not rows.empty else rows


def _detail(row) -> dict:
    try:
        detail = json.loads(row["detail"]) if isinstance(row["detail"], str) else {}
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _removal(name: str):
    def acted(tables, run_id, _run) -> bool | None:
        events = _events(tables, run_id, name)
        removed = events[events["event"] == "removed"] if not events.empty else events
        if not removed.empty:
            return bool((removed["value"] > 0).any())
        # runs before the mechanism table: the removed samples themselves
        rows = _rows(tables, "removed_samples", run_id)
        return not rows.empty and bool((rows["method"] == name).any())
    return acted


def _lr_lowered(tables, run_id, _run) -> bool | None:
    events = _events(tables, run_id, "accelat")
    if not events.empty:
        changes = events[events["event"] == "lr_change"]
        # a drop at the end of the last epoch fired, but no step trained at its LR
        return any(d.get("applies_from_epoch", 0) < d.get("epochs", 0)
                   for d in map(_detail, changes.to_dict("records")))
    history = _rows(tables, "history", run_id)
    if history.empty:
        return None
    lrs = history.sort_values("epoch")["lr"].dropna().tolist()
    # AccelAT sets the whole epoch's LR, so history.lr is the rule's LR of each epoch.
    return any(lr < lrs[0] * (1 - 1e-9) for lr in lrs[1:])


def _pruned(tables, run_id, run) -> bool | None:
    events = _events(tables, run_id, "admm_prune")
    if not events.empty:
        return bool((events["value"] > 0).any())
    sparsity = run.get("sparsity")
    if sparsity is not None and pd.notna(sparsity):
        return bool(sparsity > 0)
    layers = _rows(tables, "layer_sparsity", run_id)
    if layers.empty:
        return None
    return bool((layers["nonzero"] < layers["params"]).any())


def _distilled(name: str):
    def acted(tables, run_id, _run) -> bool | None:
        events = _events(tables, run_id, name)
        subnets = events[events["event"] == "subnets"] if not events.empty else events
        if subnets.empty:
            return None  # EWS's choices were never recorded before the mechanism table
        return any(d.get("draws", 0) > 0 for d in map(_detail, subnets.to_dict("records")))
    return acted


MECHANISMS: dict[str, _Mechanism] = {
    "caper": _Mechanism("no samples removed", _removal("caper")),
    "random_subset": _Mechanism("no samples removed", _removal("random_subset")),
    "accelat": _Mechanism("no LR change before the last epoch", _lr_lowered),
    "admm_prune": _Mechanism("no weights pruned", _pruned),
    **{name: _Mechanism("no subnet distilled", _distilled(name), "subnet choices")
       for name in ("ews", "ews_random", "ews_l1")},
}


def modifiers_of(method_config: str) -> list[str]:
    """The modifiers a run's ``method_config`` (JSON keyed by part, with the composition's
    ``name``) names, in order; [] for a base alone or an unreadable config."""
    try:
        config = json.loads(method_config)
    except (TypeError, ValueError):
        return []
    if not isinstance(config, dict):
        return []
    parts = str(config.get("name", "")).split("+")
    return [p.strip() for p in parts[1:] if p.strip()]


def _seeds(seeds: list) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


def mechanism_not_acted(tables: Mapping[str, pd.DataFrame], runs: pd.DataFrame, *,
                        unrecorded: bool = True) -> str | None:
    """Why the mechanism of a method label's modifiers did not act, from its ``runs`` (rows
    of the ``runs`` table, one label): e.g. ``"accelat: no LR change before the last
    epoch in seeds 0, 1 of 3"``, or ``"ews: subnet choices not recorded (seeds 0, 1, 2
    of 3 predate the mechanism table)"``; reasons of several modifiers are joined by
    "; ". None when every mechanism acted in every finished seed, or when the method has
    no modifier with a known mechanism (a base, dropout). Failed runs are left out.
    ``unrecorded=False`` leaves out the "not recorded" reasons: only mechanisms known to
    have stayed idle speak."""
    if runs.empty:
        return None
    done = runs[runs["status"] == "ok"] if "status" in runs else runs
    if done.empty:
        return None
    modifiers: list[str] = []
    for config in done["method_config"]:
        modifiers += [m for m in modifiers_of(config) if m not in modifiers]
    reasons = []
    for name in modifiers:
        mechanism = MECHANISMS.get(name)
        if mechanism is None:
            continue
        idle, unknown = [], []
        for run in done.to_dict("records"):
            acted = mechanism.acted(tables, run["run_id"], run)
            if acted is None:
                unknown.append(run["seed"])
            elif not acted:
                idle.append(run["seed"])
        total = len(done)
        if idle:
            reasons.append(f"{name}: {mechanism.missing} in seeds {_seeds(idle)} of {total}")
        elif unknown and unrecorded:
            what = mechanism.recorded or "what it did"
            reasons.append(f"{name}: {what} {NOT_RECORDED} (seeds {_seeds(unknown)} of "
                           f"{total} predate the mechanism table)")
    return "; ".join(reasons) or None


def not_acted_by_label(tables: Mapping[str, pd.DataFrame], *, unrecorded: bool = True
                       ) -> dict[str, str]:
    """Every method label of a board whose modifier's mechanism did not act (or, with
    ``unrecorded``, left no record), with the reason :func:`mechanism_not_acted` gives.
    Claims pass ``unrecorded=False``: a run from before the mechanism table is judged on
    its numbers, and only a mechanism known to have stayed idle replaces the verdict."""
    runs = tables.get("runs")
    if runs is None or runs.empty:
        return {}
    out = {}
    for label, group in runs.groupby("method", sort=True):
        reason = mechanism_not_acted(tables, group, unrecorded=unrecorded)
        if reason is not None:
            out[str(label)] = reason
    return out
