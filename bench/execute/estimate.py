"""What ``perbench run`` would still do, and how long it should take, before doing it.

Cells differ by orders of magnitude (an FGSM pass takes a second, AutoAttack on a robust
model half an hour), so a progress bar's per-cell average says little. The plan estimates
each pending cell from the grid's own finished cells of the same kind: training from
finished runs of the same method, arch and dataset (``train_seconds``); an attack or ε
sweep from the same attack or sweep on runs of the same method and arch
(``attack_seconds``). Cells with no such measurement (and corruption, transfer and
latency cells, whose tables record no time) are counted but not estimated, and the plan
says how many. The times were measured under whatever load the machine had then
(``load_avg`` in the tables); they are estimates, not promises.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.grid.cells import Grid
from bench.results import store
from bench.work.kinds import all_kinds


@dataclass
class KindPlan:
    kind: str
    done: int
    to_run: int
    estimated_seconds: float = 0.0
    estimated: int = 0  # of to_run, how many have an estimate
    rough: int = 0  # of those, how many only from a coarser match (see make_plan)
    timed: bool = False  # whether cells of this kind can be estimated at all


@dataclass
class Plan:
    kinds: list[KindPlan]
    # (description, estimated seconds or None, rough) of each training cell still to run
    training: list[tuple[str, float | None, bool]] = field(default_factory=list)

    @property
    def to_run(self) -> int:
        return sum(k.to_run for k in self.kinds)

    @property
    def estimated_seconds(self) -> float:
        return sum(k.estimated_seconds for k in self.kinds)


def _run_alike(cell) -> tuple:
    return (cell.dataset, cell.arch, cell.method.display)


def _run_roughly(cell) -> tuple:
    # the base objective alone (pgd_at for pgd_at+ews_l1): modifiers add to its cost
    return (cell.dataset, cell.arch, cell.method.name.split("+")[0])


def _estimate(done: list, pending: list, seconds: Callable[[object], float | None],
              levels: tuple[Callable[[object], tuple], ...]) -> dict[str, tuple[float, bool]]:
    """Per pending cell: the mean measured seconds of the finished cells alike at the first
    level that has any, and whether that was a coarser level than the first."""
    measured = [defaultdict(list) for _ in levels]
    for cell in done:
        s = seconds(cell)
        if s is not None and not math.isnan(s):  # NaN: not recorded
            for table, like in zip(measured, levels):
                table[like(cell)].append(s)
    estimates = {}
    for cell in pending:
        for depth, (table, like) in enumerate(zip(measured, levels)):
            values = table.get(like(cell))
            if values:
                estimates[cell.key] = (sum(values) / len(values), depth > 0)
                break
    return estimates


def make_plan(grid: Grid, todo: Grid, results: store.Location) -> Plan:
    """Done and pending cells per kind, with estimates: training from runs of the same
    method (else the same base objective) on the same arch and dataset; attacks and
    sweeps from the same attack on runs of the same method (else of any method) there."""
    runs = store.read_table(results, "runs")
    ok = runs[runs["status"] == "ok"]
    train_s = dict(zip(ok["run_id"], ok["train_seconds"]))
    rob = store.read_table(results, "robustness")
    eval_s = rob.groupby("eval_id")["attack_seconds"].sum(min_count=1).to_dict()

    def evaluation(kind):
        return (lambda c: eval_s.get(c.key),
                (lambda c: (*_run_alike(c.train), kind.alike(c), c.n_eval),
                 lambda c: (c.train.dataset, c.train.arch, kind.alike(c), c.n_eval)))

    kinds, training = [], []
    for kind in all_kinds():
        cells, pending = grid[kind.name], todo[kind.name]
        plan = KindPlan(kind.label, len(cells) - len(pending), len(pending))
        if kind.stage == "train":
            timed = (lambda c: train_s.get(c.key), (_run_alike, _run_roughly))
        elif kind.stage == "evaluation" and pending and kind.alike(pending[0]) is not None:
            timed = evaluation(kind)
        else:
            timed = None
        plan.timed = timed is not None
        if timed is not None and pending:
            pending_keys = {c.key for c in pending}
            done = [c for c in cells if c.key not in pending_keys]
            estimates = _estimate(done, pending, *timed)
            plan.estimated = len(estimates)
            plan.estimated_seconds = sum(s for s, _ in estimates.values())
            plan.rough = sum(rough for _, rough in estimates.values())
            if kind.stage == "train":
                training = [(c.describe(), *estimates.get(c.key, (None, False)))
                            for c in pending]
        kinds.append(plan)
    return Plan(kinds, training)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def render(plan: Plan, name: str) -> str:
    from tabulate import tabulate

    total = sum(k.done + k.to_run for k in plan.kinds)
    rows = []
    for k in plan.kinds:
        if not k.to_run:
            est = ""
        elif not k.timed:
            est = "not timed"
        elif not k.estimated:
            est = "no measurement yet"
        else:
            est = hours(k.estimated_seconds)
            notes = []
            if k.estimated < k.to_run:
                notes.append(f"{k.estimated} of {k.to_run} cells")
            if k.rough:
                notes.append(f"{k.rough} rough")
            est += f" ({', '.join(notes)})" if notes else ""
        rows.append([k.kind, f"{k.done}/{k.done + k.to_run}", k.to_run, est])
    header = (f"{name}: {total - plan.to_run} of {total} cells done, {plan.to_run} to run; "
              f"about {hours(plan.estimated_seconds)} for the cells estimated from this "
              "grid's finished ones (rough: from the same base objective, or from other "
              "methods' runs of the same attack)")
    lines = [header,
             tabulate(rows, headers=["kind", "done", "to run", "estimated"],
                      disable_numparse=True)]
    if plan.training:
        lines.append("training still to run:")
        lines += [f"  {desc}: " + ("no measurement yet" if s is None
                                   else hours(s) + (" (rough)" if rough else ""))
                  for desc, s, rough in plan.training]
    return "\n".join(lines)
