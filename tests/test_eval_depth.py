"""Evaluation depth on the tiny fixture grid: ε sweeps, corruptions, transfer, checks, show."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import FIXTURE

from bench.grid.spec import SpecError, load_spec
from bench.results import store
from bench.work.kinds import expand


def rows(board, table: str) -> pd.DataFrame:
    return store.read_table(board / "results", table)


def runs_by_method(board) -> dict[str, str]:
    runs = rows(board, "runs")
    return dict(zip(runs["method"], runs["run_id"]))


def test_doubling_sweep_is_independent_and_stops_below_chance_after_three_radii(finished):
    from bench.results.points import unpack
    from bench.work.kinds.sweep import MIN_RADII

    rob = rows(finished, "robustness")
    sweep = rob[rob["sweep"].notna()]
    assert set(sweep["sweep"]) == {"pgd-5 Linf doubling"}
    for run_id, curve in sweep.groupby("run_id"):
        curve = curve.sort_values("eps")
        eps = curve["eps"].tolist()
        assert len(eps) >= MIN_RADII
        assert eps == pytest.approx([0.025 * 2 ** i for i in range(len(eps))])
        acc = curve["robust_acc"].to_numpy()
        # Stops at the first ε below chance (10 classes) from the third on, or at max_eps = 1.
        assert (acc[MIN_RADII - 1:-1] >= 0.1).all()
        assert acc[-1] < 0.1 or eps[-1] * 2 > 1.0
        clean = None
        for row in curve.itertuples():
            assert json.loads(row.attack_config)["sweep_points"] == "independent"
            robust = unpack(row.robust_points, row.n_examples)
            assert robust.sum() == round(row.robust_acc * row.n_examples)
            # every ε starts from every clean-correct point, not the survivors of the last
            now = unpack(row.clean_points, row.n_examples)
            assert clean is None or (now == clean).all()
            clean = now


def test_list_sweep_visits_every_eps(tmp_path):
    from bench.grid.spec import SweepSpec
    from bench.work.kinds.sweep import run_sweep_cell

    board = tmp_path / "tiny"
    shutil.copytree(FIXTURE, board)
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec.update(methods=["erm"], attacks=[], eps_sweeps=[], corruptions=None, transfer=None,
                hardware=[], checks={"enabled": False})
    (board / "grid.yaml").write_text(yaml.safe_dump(spec))
    from bench.cli import main

    assert main(["run", str(board), "--quiet"]) == 0
    train = expand(load_spec(board)).train[0]
    from bench.grid.cells import SweepCell

    sweep = SweepSpec(name="fgsm", eps=[0.0, "1/255", 0.3])
    out = run_sweep_cell(SweepCell(train, sweep, 50), board / "results")
    assert [r["eps"] for r in out] == pytest.approx([0.0, 1 / 255, 0.3])
    assert out[0]["robust_acc"] == out[0]["clean_acc"]  # the ball of radius 0 is x itself
    assert {r["sweep"] for r in out} == {"fgsm Linf list"}


@pytest.mark.parametrize("bad,needle", [
    ({"name": "pgd"}, "exactly one of eps"),
    ({"name": "pgd", "eps": [0.1, 0.05]}, "ascending"),
    ({"name": "pgd", "eps": [0.1], "doubling_from": 0.01}, "exactly one of eps"),
    ({"name": "pgdd", "eps": [0.1]}, "unknown attack 'pgdd'"),
])
def test_bad_sweeps_fail_validation(tmp_path, bad, needle):
    spec = yaml.safe_load((FIXTURE / "grid.yaml").read_text())
    spec["eps_sweeps"] = [bad]
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="eps_sweeps") as info:
        load_spec(tmp_path)
    assert needle in str(info.value)


def test_bad_corruption_and_transfer_specs_name_what_is_allowed(tmp_path):
    spec = yaml.safe_load((FIXTURE / "grid.yaml").read_text())
    spec["corruptions"] = {"names": ["gaussian_noize"], "reference": "sgd"}
    spec["transfer"] = {"attack": {"name": "pgdx", "eps": 0.1}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    msg = str(info.value)
    assert "corruptions.names[0]" in msg and "gaussian_noise" in msg
    assert "corruptions.reference" in msg and "erm, fast_at" in msg
    assert "transfer.attack.name" in msg and "pgdx" in msg


def test_corruption_rows_and_mce(finished):
    cor = rows(finished, "corruption")
    ids = runs_by_method(finished)
    assert len(cor) == 2 * 3 * 3  # runs × corruptions × severities
    assert set(cor["source"]) == {"generated"} and (cor["n_examples"] == 100).all()
    assert cor["acc"].between(0, 1).all()
    # Every run sees the very same corrupted images: their clean accuracies are on one subset.
    assert cor.groupby("run_id")["clean_acc"].nunique().eq(1).all()
    from bench.views.leaderboard import corruption_errors

    runs = rows(finished, "runs").assign(_failed=False)
    per_run = corruption_errors(cor, runs, "erm").set_index("run_id")
    assert per_run.loc[ids["erm"], "mce"] == pytest.approx(1.0)  # the reference against itself
    mine = cor[cor["run_id"] == ids["fast_at"]].assign(err=lambda f: 1 - f["acc"])
    ref = cor[cor["run_id"] == ids["erm"]].assign(err=lambda f: 1 - f["acc"])
    by_c = mine.groupby("corruption")["err"].sum() / ref.groupby("corruption")["err"].sum()
    assert per_run.loc[ids["fast_at"], "mce"] == pytest.approx(by_c.mean())
    assert per_run.loc[ids["fast_at"], "corruption_acc"] == pytest.approx(mine["acc"].mean())


def test_same_seed_same_corruptions():
    from bench.corruptions import corrupt

    x = torch.rand(4, 1, 8, 8)
    a = corrupt(x, "gaussian_noise", 3, torch.Generator().manual_seed(5))
    b = corrupt(x, "gaussian_noise", 3, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_transfer_matrix_and_self_transfer_reproduces_white_box(finished):
    tr = rows(finished, "transfer")
    ids = runs_by_method(finished)
    assert len(tr) == 4  # 2 sources × 2 targets
    assert set(zip(tr["source_run"], tr["target_run"])) == {
        (s, t) for s in ids.values() for t in ids.values()}
    rob = rows(finished, "robustness")
    white = rob[(rob["attack"] == "pgd") & rob["sweep"].isna()].set_index("run_id")
    for run_id in ids.values():
        self_row = tr[(tr["source_run"] == run_id) & (tr["target_run"] == run_id)].iloc[0]
        # Same attack, seed and points: the source's own score is its white-box evaluation.
        assert self_row["robust_acc"] == pytest.approx(white.loc[run_id, "robust_acc"])
        assert self_row["source_robust_acc"] == pytest.approx(white.loc[run_id, "robust_acc"])
        assert self_row["clean_acc"] == pytest.approx(white.loc[run_id, "clean_acc"])
    assert (tr["robust_acc"] <= tr[["acc", "clean_acc"]].min(axis=1) + 1e-9).all()


def test_checks_written_per_run_with_model_and_result_rows(finished):
    checks = rows(finished, "checks")
    ids = runs_by_method(finished)
    assert set(checks["run_id"]) == set(ids.values())
    assert {"model", "result"} <= set(checks["kind"])
    model = checks[checks["kind"] == "model"]
    assert {"zero_gradients", "randomized_outputs", "softmax_outputs",
            "loss_along_gradient"} <= set(model["check"])
    # Ordinary trained models trip none of the model-level checks.
    assert model["passed"].all(), model[~model["passed"]][["check", "detail"]].to_string()
    assert checks["detail"].notna().all()


def test_show_has_corruption_mce_and_flag_columns(finished):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "show", str(finished)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "corrupt %" in proc.stdout and "mCE %" in proc.stdout
    out = subprocess.run([sys.executable, "-m", "bench.cli", "show", str(finished), "--format",
                          "csv"], capture_output=True, text=True).stdout
    from io import StringIO

    frame = pd.read_csv(StringIO(out)).set_index("method")
    assert frame.loc["erm", "mce"] == pytest.approx(1.0)
    assert "flags" in frame.columns


def test_a_failed_check_flags_its_method_on_show(finished, tmp_path):
    board = tmp_path / "tiny"
    shutil.copytree(finished, board)
    ids = runs_by_method(board)
    checks = store.read_cell(board / "results", "checks", ids["fast_at"])
    planted = {"run_id": ids["fast_at"], "check": "blackbox_beats_whitebox", "passed": False,
               "detail": "square 0.30 < best white-box pgd 0.50", "value": 0.2, "kind": "result",
               "created_at": pd.Timestamp.now(tz="UTC")}
    store.write_cell(board / "results", "checks", ids["fast_at"],
                     [*checks.to_dict("records"), planted])
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "show", str(board)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    flagged = [line for line in proc.stdout.splitlines() if "⚠" in line]
    assert len(flagged) == 1 and "fast_at" in flagged[0]
    assert "blackbox_beats_whitebox (1/1 seeds)" in flagged[0]


def test_official_files_of_another_dataset_are_refused_by_name(finished, tmp_path):
    """CIFAR-10-C files (32×32 RGB) against a digits model: the cell names the folder."""
    from bench.grid.cells import CorruptionCell
    from bench.grid.spec import CorruptionSpec
    from bench.work.kinds.corruption import run_corruption_cell

    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    np.save(root / "contrast.npy", np.zeros((5 * 4, 32, 32, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.zeros(5 * 4, dtype=np.int64))
    train = expand(load_spec(finished)).train[0]
    cell = CorruptionCell(train, CorruptionSpec(names=["contrast"], severities=[2],
                                                files=str(root)), 4)
    with pytest.raises(ValueError, match=r"CIFAR-10-C.*\(3, 32, 32\).*\(1, 8, 8\)"):
        run_corruption_cell(cell, finished / "results")
