"""``perbench run --plan``: the cells still to run, estimated from the grid's own finished
cells, and nothing run."""
from __future__ import annotations

import shutil

import pytest
import yaml
from test_e2e import perbench, rows

from bench.execute.estimate import make_plan
from bench.execute.schedule import pending
from bench.grid.spec import load_spec, results_location
from bench.work.kinds import expand


def plan_of(board):
    spec = load_spec(board)
    grid = expand(spec)
    results = results_location(board, spec)
    return make_plan(grid, pending(grid, results), results), grid


@pytest.fixture
def board(finished, tmp_path):
    dest = tmp_path / "tiny"
    shutil.copytree(finished, dest)
    return dest


def test_a_finished_grid_has_nothing_to_run(finished):
    plan, grid = plan_of(finished)
    assert plan.to_run == 0 and plan.estimated_seconds == 0
    assert {k.kind: k.done for k in plan.kinds}["train"] == len(grid.train) == 2


def test_a_new_seed_is_estimated_from_the_finished_one(board):
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec["seeds"] = [0, 1]
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    plan, _ = plan_of(board)
    kinds = {k.kind: k for k in plan.kinds}
    runs = rows(board, "runs").set_index("method")
    # seed 1 of each method: its seed 0's measured time, exactly (not a rough match)
    assert kinds["train"].to_run == 2 and kinds["train"].rough == 0
    assert kinds["train"].estimated_seconds == pytest.approx(runs["train_seconds"].sum())
    assert [(d.split(" · ")[0], s) for d, s, _ in plan.training] == [
        ("erm", pytest.approx(runs.loc["erm", "train_seconds"])),
        ("fast_at", pytest.approx(runs.loc["fast_at", "train_seconds"]))]
    rob = rows(board, "robustness")
    attacks = rob[rob["sweep"].isna()]
    assert kinds["attacks"].to_run == len(attacks) and kinds["attacks"].rough == 0
    assert kinds["attacks"].estimated_seconds == pytest.approx(attacks["attack_seconds"].sum())
    assert kinds["corruptions"].to_run == 2 and kinds["corruptions"].estimated == 0  # untimed


def test_a_missing_attack_is_estimated_roughly_from_another_method(board):
    rob = rows(board, "robustness")
    runs = rows(board, "runs").set_index("run_id")
    erm_fgsm = rob[(rob["attack"] == "fgsm") & rob["sweep"].isna()
                   & (rob["run_id"].map(runs["method"]) == "erm")]
    (board / "results" / "robustness" / f"{erm_fgsm['eval_id'].item()}.parquet").unlink()
    plan, _ = plan_of(board)
    attacks = {k.kind: k for k in plan.kinds}["attacks"]
    fast_fgsm = rob[(rob["attack"] == "fgsm") & rob["sweep"].isna()
                    & (rob["run_id"].map(runs["method"]) == "fast_at")]
    assert (attacks.to_run, attacks.rough) == (1, 1)
    assert attacks.estimated_seconds == pytest.approx(fast_fgsm["attack_seconds"].item())


def test_cli_plan_runs_nothing(board):
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec["seeds"] = [0, 1]
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    before = sorted(p.name for p in (board / "results").rglob("*") if p.is_file())
    proc = perbench("run", str(board), "--plan")
    assert proc.returncode == 0, proc.stderr
    assert "training still to run:" in proc.stdout
    assert "erm · digits · small_cnn · seed 1" in proc.stdout
    assert sorted(p.name for p in (board / "results").rglob("*") if p.is_file()) == before
