"""Cell kinds (bench.work.kinds): keys unchanged by the restructuring, and a new evaluation
kind defined here, in this file alone, runs through the tiny grid and resumes like the rest."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import yaml
from conftest import FIXTURE

from bench.execute.estimate import make_plan
from bench.execute.schedule import pending
from bench.execute.sequential import run_local
from bench.grid.cells import EVAL_PROTOCOL, TrainCell, stable_hash
from bench.grid.spec import GridSpec, load_spec, results_location
from bench.results import store
from bench.results.schema import register_table
from bench.work.kinds import KINDS, CellKind, all_kinds, expand
from bench.work.model import evaluation_of, predict
from bench.work.rows import now

# The keys of the fixture grid's cells as the code before bench.work.kinds computed them:
# existing results are found by key, so these must never change by accident.
TINY_KEYS = {
    "train": ["38ca339d3dc538f3e7d2", "615fc7601f537a8ab5fe"],
    "attacks": ["15770cceaf4ac58dcfee", "909fa1f80ed848cdc445", "a642c5d55e70bc30e5fb",
                "eac80ebac72b36ea805e"],
    "sweeps": ["5a012b505e2f810d5ed1", "e6db045d0111c9cb9d5e"],
    "corruptions": ["96ad719eb8aca19ed36a", "c9ee259a1a39a36f1f33"],
    "transfer": ["0cc530c626a9a5a8dafd", "782a0c8ee7fa3339541c", "e79ae808a635af3f3391",
                 "e8fa1843b1683e8255f9"],
    "latency": ["4da8757b9b649a6623ca", "b6b68ed755c6e49709bb"],
}


def test_keys_are_those_of_before():
    grid = expand(load_spec(FIXTURE))
    assert {label: sorted(c.key for c in getattr(grid, label)) for label in TINY_KEYS} \
        == TINY_KEYS


def test_the_grid_is_read_kind_by_kind():
    grid = expand(load_spec(FIXTURE))
    names = [k.name for k in all_kinds()]
    # in schedule order; a new evaluation kind (this file's) goes after the built-in ones
    assert names == ["train", "attack", "sweep", "corruption", "confidence_test", "transfer",
                     "latency"]
    assert grid["attack"] is grid.attacks and grid.count() == 16


# -- a new evaluation kind, entirely here -----------------------------------------------------
# Mean confidence (max softmax) of a run on the evaluation subset. A real kind would be a
# module under bench/work/kinds/, its table in bench/results/schema.py and its grid.yaml
# key in bench/grid/spec.py; here the grid's description switches it on, so the kind stays
# inert for every other grid of this test session.

TABLE = "confidence_test"
register_table(TABLE, pa.schema([
    ("run_id", pa.string()), ("eval_id", pa.string()), ("n_examples", pa.int64()),
    ("mean_confidence", pa.float64()), ("accuracy", pa.float64()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]))


@dataclass(frozen=True)
class ConfidenceCell:
    train: TrainCell
    n_eval: int

    @property
    def key(self) -> str:
        return stable_hash({"protocol": EVAL_PROTOCOL, "train": self.train.key,
                            "confidence": True, "n_eval": self.n_eval})

    def describe(self) -> str:
        return f"confidence on {self.train.describe()}"


@KINDS.register()
class ConfidenceKind(CellKind):
    """Mean max-softmax confidence of a run."""

    name, label = "confidence_test", "confidences"
    tables = (TABLE,)

    def expand(self, spec: GridSpec, runs: list) -> list:
        if "with confidence" not in spec.description:
            return []
        return [ConfidenceCell(t, spec.budget.n_eval) for t in runs]

    def run(self, cell: ConfidenceCell, results: Path, device=None) -> list[dict]:
        with evaluation_of(cell.train, results, cell.n_eval, device) as ev, torch.no_grad():
            confidence = ev.model(ev.x).softmax(dim=1).max(dim=1).values.mean().item()
            accuracy = (predict(ev.model, ev.x) == ev.y).float().mean().item()
        return [{"run_id": cell.train.key, "eval_id": cell.key, "n_examples": len(ev.y),
                 "mean_confidence": confidence, "accuracy": accuracy, "created_at": now()}]


@pytest.fixture
def board(finished, tmp_path) -> Path:
    dest = tmp_path / "tiny"
    shutil.copytree(finished, dest)
    spec = yaml.safe_load((dest / "grid.yaml").read_text())
    spec["description"] = "the tiny grid, with confidence"
    (dest / "grid.yaml").write_text(yaml.safe_dump(spec))
    return dest


def test_a_new_evaluation_kind_runs_and_resumes(board):
    spec = load_spec(board)
    results = results_location(board, spec)
    grid = expand(spec)
    assert len(grid.confidences) == 2 and len(pending(grid, results).confidences) == 2
    plan = {k.kind: k for k in make_plan(grid, pending(grid, results), results).kinds}
    assert (plan["confidences"].to_run, plan["train"].to_run) == (2, 0)

    report = run_local(spec, results, show_progress=False)
    assert (report.trained, report.evaluated, report.failed) == (0, 2, [])
    rows = store.read_table(results, TABLE)
    assert sorted(rows["run_id"]) == sorted(c.key for c in grid.train)
    assert rows["mean_confidence"].between(0.1, 1).all() and (rows["n_examples"] == 100).all()

    before = {p: p.stat().st_mtime_ns for p in (board / "results").rglob("*") if p.is_file()}
    again = run_local(spec, results, show_progress=False)
    assert again.did_work == 0 and again.skipped == grid.count() == 18
    assert before == {p: p.stat().st_mtime_ns for p in (board / "results").rglob("*")
                      if p.is_file()}
