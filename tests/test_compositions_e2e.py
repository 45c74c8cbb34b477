"""Every composition of the seed methods, end to end on digits through the executor.

One tiny grid (300 training images, 4 epochs, 2-step PGD) keeps this to seconds; what is
checked is that each composition runs, writes its tables, and that the mechanisms left
their trace (removed samples, LR drops, charged costs).
"""
from __future__ import annotations

import json

import pytest
import yaml

from bench.execute.sequential import run_local
from bench.grid.spec import load_spec
from bench.results import store

PGD = {"steps": 2}
METHODS = [
    {"name": "erm"},
    {"name": "pgd_at", "config": PGD},
    {"name": "erm+caper", "config": {"caper": {"tau": 1}}},
    {"name": "erm+random_subset", "config": {"random_subset": {"tau": 1}}},
    {"name": "erm+dropout"},
    {"name": "pgd_at+caper", "config": {"pgd_at": PGD, "caper": {"tau": 1}}},
    {"name": "fast_at+caper", "config": {"caper": {"tau": 1}}},
    {"name": "free_at+caper", "config": {"free_at": {"replays": 2}, "caper": {"tau": 1}}},
    # One replay keeps Free-AT at the budget's 4 epochs: with 2 it would train 2, and
    # AccelAT's n = 1 window could then only lower the LR after the last (refused).
    {"name": "free_at+accelat", "config": {"free_at": {"replays": 1},
                                           "accelat": {"n": 1, "val_points": 50, "val_steps": 2}}},
    {"name": "pgd_at+caper+accelat",
     "config": {"pgd_at": PGD, "caper": {"tau": 1},
                "accelat": {"n": 1, "val_points": 50, "val_steps": 2}}},
    {"name": "fast_at", "label": "fast_at (one-cycle)", "config": {"schedule": "one_cycle"}},
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    board = tmp_path_factory.mktemp("compositions")
    grid = {
        "name": "compositions", "datasets": ["digits"], "archs": ["small_cnn"], "methods": METHODS,
        "train_threat": {"norm": "Linf", "eps": 0.1},
        "attacks": [{"name": "fgsm", "norm": "Linf", "eps": 0.1, "n_eval": 50}],
        "seeds": [0], "budget": {"epochs": 4, "batch_size": 100, "val_size": 100, "train_size": 300},
    }
    (board / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    # the methods under test, not the sandbox (tests/test_integrity.py): in this process
    report = run_local(load_spec(board), board / "results", show_progress=False,
                       sandbox=False)
    assert not report.failed, report.failed
    return {t: store.read_table(board / "results", t)
            for t in ("runs", "history", "robustness", "removed_samples", "mechanism")}


def test_every_composition_trains_and_is_evaluated(results):
    runs = results["runs"].set_index("method")
    assert set(runs.index) == {m.get("label", m["name"]) for m in METHODS}
    assert (runs["status"] == "ok").all() and runs["clean_acc"].between(0, 1).all()
    assert (runs["train_size"] == 300).all()
    assert len(results["robustness"]) == len(METHODS)


def test_pruners_write_removed_samples_and_process_fewer(results):
    runs = results["runs"].set_index("method")
    removed = results["removed_samples"]
    for name in ("erm+caper", "erm+random_subset", "pgd_at+caper", "fast_at+caper"):
        run_id = runs.loc[name, "run_id"]
        mine = removed[removed["run_id"] == run_id]
        assert len(mine) == 15  # γ = 5% of 300
        # one full epoch before τ=1, then three epochs without the removed 15
        assert runs.loc[name, "train_samples"] == 300 + 3 * 285
    assert runs.loc["erm", "train_samples"] == 4 * 300
    # PGD-2 training costs 2·2+3 = 7 forwards per sample; CAPER saves 3 epochs × 15 samples
    # of that and pays 2 scoring forwards for each of the 300 samples at τ. (At this tiny
    # scale scoring costs more than it saves; the meter must show exactly that.)
    forward = runs.loc["pgd_at", "train_flops"] / (4 * 300 * 7)
    expected = runs.loc["pgd_at", "train_flops"] - 3 * 15 * 7 * forward + 2 * 300 * forward
    assert runs.loc["pgd_at+caper", "train_flops"] == pytest.approx(expected, rel=0.01)


def test_accelat_monitors_robust_validation_accuracy(results):
    runs, hist = results["runs"], results["history"]
    run_id = runs.loc[runs["method"] == "pgd_at+caper+accelat", "run_id"].item()
    rows = hist[hist["run_id"] == run_id].sort_values("epoch")
    assert rows["val_robust_acc"].notna().all()
    extra = [json.loads(e) for e in rows["extra"]]
    assert all("accelat_monitored" in e for e in extra)
    assert "removed" in extra[1]  # CAPER logged its removal at τ = 1
    # The LR in force each epoch is the one AccelAT announced at the end of the previous one.
    announced = [e["accelat_next_lr"] for e in extra][:-1]
    assert rows["lr"].tolist()[1:] == pytest.approx(announced)


def test_mechanisms_are_recorded_with_the_run(results):
    runs, mech = results["runs"].set_index("method"), results["mechanism"]
    for name, modifier in (("erm+caper", "caper"), ("erm+random_subset", "random_subset"),
                           ("free_at+caper", "caper"), ("pgd_at+caper+accelat", "caper")):
        mine = mech[(mech["run_id"] == runs.loc[name, "run_id"]) & (mech["modifier"] == modifier)]
        assert mine[["event", "epoch", "value"]].values.tolist() == [["removed", 1, 15.0]]
    for name in ("free_at+accelat", "pgd_at+caper+accelat"):
        mine = mech[(mech["run_id"] == runs.loc[name, "run_id"]) & (mech["modifier"] == "accelat")]
        [summary] = mine[mine["event"] == "lr_changes"].to_dict("records")
        assert json.loads(summary["detail"])["epochs"] == 4
        assert summary["value"] == sum(json.loads(d)["applies_from_epoch"] < 4
                                       for d in mine.loc[mine["event"] == "lr_change", "detail"])
    assert set(mech["run_id"]) <= set(runs["run_id"])
