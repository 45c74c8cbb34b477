"""What each modifier's mechanism did: the rows it records in the ``mechanism`` table, the
grid validation that refuses a configuration whose mechanism could not act before
training ends, and the view that says, per method label, whether it acted."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from method_cases import context, train_case

from bench.api import Budget, Modifier
from bench.grid.spec import SpecError, load_spec
from bench.plugins import METHODS, compose, register_method
from bench.views.mechanism import NOT_RECORDED, mechanism_not_acted, not_acted_by_label
from bench.work.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def events(ctx, modifier: str, event: str) -> list[dict]:
    rows = [r for r in ctx.tables.get("mechanism", [])
            if r["modifier"] == modifier and r["event"] == event]
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


# -- 1. each modifier records what its mechanism did --------------------------------------

@pytest.mark.parametrize("name,modifier", [("erm+caper", "caper"),
                                           ("erm+random_subset", "random_subset")])
def test_sample_pruners_record_their_removal(digits_tensors, name, modifier):
    stats, ctx = train_case(name, digits_tensors)  # τ = 1 of 3 epochs, γ = 5% of 250
    [row] = events(ctx, modifier, "removed")
    removed = ctx.tables["removed_samples"]
    assert row["epoch"] == 1 and row["value"] == len(removed) == 12
    assert row["detail"]["kept"] == 250 - 12 == int(ctx.train_mask.sum())


def test_accelat_records_each_lr_change_and_which_took_effect(digits_tensors):
    # A tiny LR keeps validation accuracy flat: the rule (n = 1) drops the LR at the end of
    # epochs 1 and 2; the second drop follows the last epoch and trains nothing.
    ctx = context("erm", digits_tensors)
    comp = compose("erm+accelat", {"accelat": {"n": 1, "delta_acc": 0.5, "p": 0.5,
                                               "lr_max": 1e-4}})
    stats = train(comp.base, comp.modifiers, ctx)
    assert [r["lr"] for r in stats.history] == pytest.approx([1e-4, 1e-4, 5e-5])
    changes = events(ctx, "accelat", "lr_change")
    assert [r["epoch"] for r in changes] == [1, 2]
    assert [r["detail"]["applies_from_epoch"] for r in changes] == [2, 3]
    assert changes[0]["detail"]["old_lr"] == pytest.approx(1e-4)
    assert changes[0]["detail"]["new_lr"] == pytest.approx(5e-5) == changes[0]["value"]
    [summary] = events(ctx, "accelat", "lr_changes")
    assert summary["value"] == 1 and summary["detail"]["fired"] == 2


def test_admm_records_its_hard_prune_and_the_sparsity_reached(digits_tensors):
    _, ctx = train_case("pgd_at+admm_prune", digits_tensors)  # ADMM for 2 of 3 epochs
    [prune] = events(ctx, "admm_prune", "hard_prune")
    assert prune["epoch"] == 2 and prune["detail"]["epochs"] == 3
    assert prune["value"] == pytest.approx(0.5, abs=0.01)  # keep 0.5
    assert prune["detail"]["zu_updates"] == 2
    [reached] = events(ctx, "admm_prune", "sparsity")
    assert reached["value"] == pytest.approx(ctx.run_fields["sparsity"])


@pytest.mark.parametrize("name,modifier", [("pgd_at+ews", "ews"), ("pgd_at+ews_l1", "ews_l1")])
def test_ews_records_its_subnet_choices_per_epoch(digits_tensors, name, modifier):
    _, ctx = train_case(name, digits_tensors)
    rows = events(ctx, modifier, "subnets")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for row in rows:
        d = row["detail"]
        assert d["draws"] == 3  # one subnet per step: 250 points in batches of 100
        assert row["value"] == d["distinct"] and 1 <= d["distinct"] <= d["draws"]
        assert d["most_drawn"] * d["distinct"] >= d["draws"]
        # every draw keeps `kept` channels in each block
        assert [sum(c) for c in d["channel_counts"]] == [k * d["draws"] for k in d["kept"]]
    if modifier == "ews":  # controller updates every 2 steps: steps 0, 2 | 4 | 6, 8
        assert [r["detail"]["controller_updates"] for r in rows] == [2, 1, 2]


def test_record_mechanism_rows_go_to_the_mechanism_table(digits_tensors):
    ctx = context("erm", digits_tensors)
    ctx.epoch = 4
    ctx.record_mechanism("mine", "acted", 3, note="x")
    ctx.record_mechanism("mine", "later", epoch=7)
    assert ctx.tables["mechanism"] == [
        {"modifier": "mine", "event": "acted", "epoch": 4, "value": 3.0,
         "detail": '{"note": "x"}'},
        {"modifier": "mine", "event": "later", "epoch": 7, "value": None, "detail": "{}"}]


# -- 2. validation refuses what cannot act -------------------------------------------------

GRID = {"name": "t", "datasets": ["digits"], "archs": ["small_cnn"], "seeds": [0],
        "train_threat": {"norm": "Linf", "eps": 0.1}, "budget": {"epochs": 6, "batch_size": 32}}


def board(tmp_path, *methods, epochs=6):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(
        {**GRID, "methods": list(methods), "budget": {"epochs": epochs, "batch_size": 32}}))
    return tmp_path


def refusal(tmp_path, *methods, epochs=6) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(board(tmp_path, *methods, epochs=epochs))
    return str(info.value)


def test_free_at_epochs_are_the_budget_over_replays():
    comp = compose("free_at+accelat", {"free_at": {"replays": 3}})
    assert comp.epochs(Budget(12, 128)) == 4
    assert compose("pgd_at+accelat").epochs(Budget(12, 128)) == 12


def test_accelat_window_that_leaves_no_epoch_is_refused(tmp_path):
    # Free-AT with 3 replays turns 6 epochs into 2; n = 1 tests first at the end of epoch 2.
    msg = refusal(tmp_path, {"name": "free_at+accelat",
                             "config": {"free_at": {"replays": 3}, "accelat": {"n": 1}}})
    for needle in ("methods[0] (free_at+accelat)", "accelat: n=1", "2-epoch run",
                   "could not act", "free_at turns the budget's 6 epochs into 2"):
        assert needle in msg, f"{needle!r} not in {msg!r}"
    # with 2 replays the run has 3 epochs: a drop after epoch 2 trains epoch 3
    load_spec(board(tmp_path, {"name": "free_at+accelat",
                               "config": {"free_at": {"replays": 2}, "accelat": {"n": 1}}}))
    msg = refusal(tmp_path, {"name": "pgd_at+caper+accelat", "label": "both",
                             "config": {"accelat": {"n": 5}}})
    assert "methods[0] (both): accelat: n=5" in msg and "use n <= 4" in msg


def test_caper_tau_at_or_after_the_last_epoch_is_refused(tmp_path):
    msg = refusal(tmp_path, {"name": "erm+caper", "config": {"caper": {"tau": 6}}})
    assert "caper: tau=6 gives removal epoch 6, outside 1..5 of this 6-epoch run" in msg
    msg = refusal(tmp_path, {"name": "free_at+random_subset",
                             "config": {"free_at": {"replays": 3}, "random_subset": {"tau": 0.9}}})
    assert "random_subset: tau=0.9 gives removal epoch 2, outside 1..1" in msg


def test_admm_phase_that_swallows_the_retraining_is_refused(tmp_path):
    msg = refusal(tmp_path, {"name": "pgd_at+admm_prune",
                             "config": {"admm_prune": {"admm_fraction": 0.95}}}, epochs=3)
    assert "admm_prune: admm_fraction=0.95 of this 3-epoch run rounds to 3 ADMM epochs" in msg
    # pruning at the end on purpose is allowed
    load_spec(board(tmp_path, {"name": "pgd_at+admm_prune",
                               "config": {"admm_prune": {"admm_fraction": 1}}}, epochs=3))


def test_a_submitted_modifier_refuses_through_the_same_hook(tmp_path):
    class LateTrick(Modifier):
        """Test-only modifier that acts at epoch 10."""
        name = "_test_late"

        def check_budget(self, epochs: int) -> str | None:
            return None if epochs > 10 else f"acts at epoch 10, the run has {epochs}"

    if "_test_late" not in METHODS:
        register_method(LateTrick)
    msg = refusal(tmp_path, "erm+_test_late")
    assert "methods[0] (erm+_test_late): acts at epoch 10, the run has 6" in msg
    load_spec(board(tmp_path, "erm+_test_late", epochs=11))


def test_cli_exits_2_on_a_mechanism_that_cannot_act(tmp_path):
    path = board(tmp_path, {"name": "erm+caper", "config": {"caper": {"tau": 7}}})
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "caper: tau=7" in proc.stderr and "could not act" in proc.stderr
    assert "Traceback" not in proc.stderr and not (path / "results").exists()


# -- 3. the view: did it act? ---------------------------------------------------------------

def runs_of(label: str, name: str, seeds=(0, 1, 2), status="ok", **extra) -> pd.DataFrame:
    config = json.dumps({"name": name})
    return pd.DataFrame([{"run_id": f"{label}-{s}", "method": label, "seed": s,
                          "method_config": config, "status": status, **extra} for s in seeds])


def history(runs: pd.DataFrame, lrs: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": f"{runs['method'].iloc[0]}-{seed}", "epoch": e, "lr": lr}
                         for seed, per_epoch in lrs.items() for e, lr in enumerate(per_epoch)])


def test_accelat_from_history_when_no_mechanism_rows():
    runs = runs_of("f+a", "free_at+accelat")
    flat = {0: [0.1] * 4, 1: [0.1] * 4, 2: [0.1, 0.1, 0.1, 0.09]}
    assert mechanism_not_acted({"runs": runs, "history": history(runs, flat)}, runs) == (
        "accelat: no LR change before the last epoch in seeds 0, 1 of 3")
    dropped = {s: [0.1, 0.1, 0.09, 0.09] for s in range(3)}
    assert mechanism_not_acted({"runs": runs, "history": history(runs, dropped)}, runs) is None


def test_accelat_mechanism_rows_decide_over_history():
    runs = runs_of("f+a", "free_at+accelat", seeds=(0, 1))

    def change(seed, applies):
        return {"run_id": f"f+a-{seed}", "modifier": "accelat", "epoch": applies - 1,
                "event": "lr_change", "value": 0.09,
                "detail": json.dumps({"applies_from_epoch": applies, "epochs": 4})}

    hist = history(runs, {0: [0.1] * 4, 1: [0.1] * 4})
    late = pd.DataFrame([change(0, 4), change(1, 2)])  # seed 0's drop followed the last epoch
    tables = {"runs": runs, "history": hist, "mechanism": late}
    assert mechanism_not_acted(tables, runs) == (
        "accelat: no LR change before the last epoch in seeds 0 of 2")
    tables["mechanism"] = pd.DataFrame([change(0, 3), change(1, 2)])
    assert mechanism_not_acted(tables, runs) is None


def test_caper_admm_and_ews_both_ways():
    caper = runs_of("c", "erm+caper")
    def removed(seeds):
        return {"removed_samples": pd.DataFrame([{"run_id": f"c-{s}", "method": "caper",
                                                  "epoch": 3} for s in seeds])}

    assert mechanism_not_acted(removed((0, 1)), caper) == (
        "caper: no samples removed in seeds 2 of 3")
    assert mechanism_not_acted(removed((0, 1, 2)), caper) is None

    admm = runs_of("a", "pgd_at+admm_prune", seeds=(0, 1))
    admm["sparsity"] = [0.5, 0.0]
    assert mechanism_not_acted({}, admm) == "admm_prune: no weights pruned in seeds 1 of 2"
    admm["sparsity"] = [0.5, 0.9]
    assert mechanism_not_acted({}, admm) is None

    ews = runs_of("e", "pgd_at+ews")
    reason = mechanism_not_acted({}, ews)
    assert reason == (f"ews: subnet choices {NOT_RECORDED} (seeds 0, 1, 2 of 3 predate "
                      "the mechanism table)")
    rows = pd.DataFrame([{"run_id": f"e-{s}", "modifier": "ews", "epoch": 0, "event": "subnets",
                          "value": 3, "detail": json.dumps({"draws": 3})} for s in range(3)])
    assert mechanism_not_acted({"mechanism": rows}, ews) is None


def test_bases_plain_modifiers_and_failed_runs_are_not_reported():
    assert mechanism_not_acted({}, runs_of("b", "pgd_at")) is None
    assert mechanism_not_acted({}, runs_of("d", "erm+dropout")) is None
    failed = runs_of("x", "erm+caper", status="failed")
    assert mechanism_not_acted({}, failed) is None
    both = pd.concat([runs_of("p", "pgd_at"), runs_of("x", "erm+caper", seeds=(0,))])
    assert not_acted_by_label({"runs": both}) == {"x": "caper: no samples removed in seeds 0 of 1"}


def test_claims_replace_a_verdict_only_where_a_mechanism_is_known_to_have_stayed_idle():
    """Runs from before the mechanism table are judged on their numbers (a reason of "not
    recorded" is not evidence the mechanism stayed idle); an idle AccelAT is."""
    ews, accel = runs_of("e", "pgd_at+ews"), runs_of("f+a", "free_at+accelat")
    flat = {0: [0.1] * 4, 1: [0.1] * 4, 2: [0.1, 0.1, 0.09, 0.09]}
    tables = {"runs": pd.concat([ews, accel]), "history": history(accel, flat)}
    assert set(not_acted_by_label(tables)) == {"e", "f+a"}
    assert not_acted_by_label(tables, unrecorded=False) == {
        "f+a": "accelat: no LR change before the last epoch in seeds 0, 1 of 3"}
