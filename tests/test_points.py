"""Per-point results: packing, and rows written before them evaluated again on request."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.results import store
from bench.results.points import pack, unpack


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_pack_round_trips(n):
    flags = np.random.default_rng(n).random(n) < 0.5
    data = pack(flags)
    assert len(data) == (n + 7) // 8
    assert (unpack(data, n) == flags).all()


def test_rows_without_points_read_as_none():
    assert unpack(None, 5) is None
    assert unpack(float("nan"), 5) is None


def test_rows_written_before_points_are_evaluated_again(finished, tmp_path):
    """An attack file from before per-point results (no point columns) is pending; the run
    replaces it with the same aggregate numbers (the attacks are seeded) plus its points."""
    from bench.cli import main
    from bench.execute.schedule import pending
    from bench.grid.spec import load_spec
    from bench.work.kinds import expand

    board = tmp_path / "tiny"
    shutil.copytree(finished, board)
    results = board / "results"
    old = store.read_table(results, "robustness")
    attack_files = sorted((results / "robustness").glob("*.parquet"))
    target = next(p for p in attack_files if pq.read_table(p)["sweep"].null_count > 0)
    table = pq.read_table(target)
    legacy = table.drop_columns(["clean_points", "robust_points"])
    pq.write_table(legacy.replace_schema_metadata(table.schema.metadata), target)

    grid = expand(load_spec(board / "grid.yaml"))
    todo = pending(grid, results)
    assert sum(len(cells) for cells in todo.cells.values()) == 1
    assert main(["run", str(board), "--quiet"]) == 0
    assert sum(len(cells) for cells in pending(grid, results).cells.values()) == 0

    new = store.read_table(results, "robustness")
    assert new["robust_points"].notna().all()
    key = ["eval_id", "eps"]
    merged = old.merge(new, on=key, suffixes=("_old", "_new"))
    assert len(merged) == len(old)
    assert (merged["robust_acc_old"] == merged["robust_acc_new"]).all()
    assert (merged["robust_points_old"] == merged["robust_points_new"]).all()


def _row(run, attack, bits, eps=0.1):
    b = np.array(bits, bool)
    return dict(run_id=run, attack=attack, norm="Linf", eps=eps, n_examples=len(b),
                status="ok", robust_acc=b.mean(), robust_points=pack(b),
                clean_points=pack(np.ones_like(b)))


def test_worst_case_over_attacks_on_the_shared_prefix():
    import pandas as pd

    from bench.views.points import per_run_bits, shared_attacks, worst_case_bits

    rob = pd.DataFrame([_row("r0", "pgd", [1, 1, 0, 1]), _row("r0", "fgsm", [1, 0, 1, 1, 1, 0]),
                        _row("r1", "pgd", [0, 1, 1, 1]), _row("r0", "pgd", [1, 1], eps=0.2)])
    assert per_run_bits(rob, "pgd", norm="Linf", eps=0.1)["r1"].tolist() == [0, 1, 1, 1]
    # r1 has no fgsm row: a worst case over fewer attacks would flatter it, so it is absent
    assert {k: v.tolist() for k, v in worst_case_bits(
        rob, ["pgd", "fgsm"], norm="Linf", eps=0.1).items()} == {"r0": [1, 0, 0, 1]}
    assert shared_attacks(rob, ["r0", "r1"], norm="Linf", eps=0.1) == ["pgd"]
    assert shared_attacks(rob, ["r0"], norm="Linf", eps=0.1, exclude=["pgd"]) == ["fgsm"]
