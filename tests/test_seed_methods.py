"""CAPER, the random-subset and dropout ablations, AccelAT and the LR schedules.

Each mechanism is checked on a tiny model on digits: what it removes, when it lowers the
LR, what it is charged. EWS and ADMM pruning have their own files.
"""
from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_cnn

from bench.api import Budget, ThreatModel, TrainContext
from bench.attacks import perturb
from bench.plugins import CompositionError, compose
from bench.schedules import SCHEDULES, one_cycle_momentum, schedule_lr
from bench.work.loop import train
from methods._data_pruning import top_scores
from methods.accelat import PlateauRule
from methods.caper import CAPER, instability, project

N_TRAIN, N_VAL = 400, 100


def make_ctx(digits_tensors, epochs=4, batch_size=100, seed=0) -> TrainContext:
    x, y, _, _ = digits_tensors
    torch.manual_seed(seed)
    ctx = TrainContext(
        model=tiny_cnn(), train_x=x[:N_TRAIN], train_y=y[:N_TRAIN],
        val_x=x[N_TRAIN:N_TRAIN + N_VAL], val_y=y[N_TRAIN:N_TRAIN + N_VAL], num_classes=10,
        budget=Budget(epochs, batch_size), threat=ThreatModel("Linf", 0.1),
        device=torch.device("cpu"), seed=seed, generator=torch.Generator().manual_seed(seed),
        attack=perturb,
        # ids as the runner gives them: positions in the dataset's training set
        train_ids=torch.arange(N_TRAIN) + 1000,
    )
    return ctx


def run(name, digits_tensors, config=None, **kw):
    comp = compose(name, config)
    ctx = make_ctx(digits_tensors, **kw)
    return train(comp.base, comp.modifiers, ctx), ctx, comp


# -- CAPER -------------------------------------------------------------------------------

def test_instability_is_channel_minmax_mean():
    delta = torch.tensor([[0.0, 10.0], [1.0, 30.0], [2.0, 20.0]])
    # channel 0 -> 0, .5, 1; channel 1 -> 0, 1, .5
    assert torch.allclose(instability(delta), torch.tensor([0.0, 0.75, 0.75]))
    flat = torch.tensor([[1.0, 5.0], [1.0, 7.0]])  # channel 0 has no spread: contributes 0
    assert torch.allclose(instability(flat), torch.tensor([0.0, 0.5]))


def test_projection_mean_and_l2():
    f = torch.tensor([[[[3.0, 4.0]]]])  # (1, 1, 1, 2)
    assert project(f, "mean").item() == pytest.approx(3.5)
    assert project(f, "l2").item() == pytest.approx(5.0)


def test_class_balanced_selection_takes_from_each_class_in_proportion():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 3)
    scores = torch.arange(12, dtype=torch.float)  # class 2 has every top score
    picked = top_scores(scores, labels, 4, class_balanced=True)
    assert torch.bincount(labels[picked], minlength=3).tolist() == [2, 1, 1]
    assert set(top_scores(scores, labels, 4, class_balanced=False).tolist()) == {8, 9, 10, 11}


def test_caper_removes_exactly_gamma_highest_instability_samples(digits_tensors):
    comp = compose("erm+caper", {"caper": {"tau": 1, "gamma": 40}})
    ctx = make_ctx(digits_tensors, epochs=3)
    caper: CAPER = comp.modifiers[0]
    val_before = (ctx.val_x.clone(), ctx.val_y.clone())

    # Score once with a copy of the generator's state, as CAPER will at epoch τ.
    scored: dict = {}
    original = caper.score

    def spy(ctx_, index):
        state = ctx_.generator.get_state()
        scores = original(ctx_, index)
        ctx_.generator.set_state(state)
        again = original(ctx_, index)  # same draw: the score is deterministic given the seed
        assert torch.equal(scores, again)
        scored["scores"], scored["index"] = scores, index
        return scores

    caper.score = spy
    stats = train(comp.base, comp.modifiers, ctx)
    removed = ctx.tables["removed_samples"]
    assert len(removed) == 40 and int(ctx.train_mask.sum()) == N_TRAIN - 40
    ids = torch.tensor([r["sample_id"] for r in removed])
    assert set(ids.tolist()) <= set(ctx.train_ids.tolist())  # training ids, never validation
    positions = ids - 1000
    assert not ctx.train_mask[positions].any()
    scores = scored["scores"]
    kept = ctx.train_mask[scored["index"]]
    assert scores[~kept].min() >= scores[kept].max()  # the γ largest ξ were removed
    assert [r["score"] for r in removed] == pytest.approx(scores[positions].tolist())
    assert all(r["epoch"] == 1 and r["method"] == "caper" for r in removed)
    assert torch.equal(ctx.val_x, val_before[0]) and torch.equal(ctx.val_y, val_before[1])
    # Samples processed: every sample before τ, the kept ones after.
    assert stats.train_samples == N_TRAIN + 2 * (N_TRAIN - 40)


def test_caper_saving_shows_in_flops_and_scoring_is_charged(digits_tensors):
    erm, _, _ = run("erm", digits_tensors, epochs=4)
    caper, _, _ = run("erm+caper", digits_tensors, {"caper": {"tau": 1, "gamma": 0.5}}, epochs=4)
    per_sample = erm.train_flops / erm.train_samples  # one ERM step ≈ 3 forwards per sample
    forward = per_sample / 3
    expected = erm.train_flops - 3 * 200 * per_sample + 2 * N_TRAIN * forward  # saving − scoring
    assert caper.train_flops == pytest.approx(expected, rel=0.02)
    assert caper.train_flops < erm.train_flops


def test_caper_rejects_tau_outside_the_run(digits_tensors):
    with pytest.raises(ValueError, match="could not act"):
        run("erm+caper", digits_tensors, {"caper": {"tau": 5}}, epochs=3)
    with pytest.raises(ValueError, match="whole"):
        compose("erm+caper", {"caper": {"gamma": 2.5}})


def test_caper_unknown_layer_lists_modules(digits_tensors):
    with pytest.raises(ValueError, match="allowed: 'last_conv'"):
        run("erm+caper", digits_tensors, {"caper": {"tau": 1, "layer": "nope"}}, epochs=2)


def test_caper_named_layer_and_class_balance(digits_tensors):
    _, ctx, _ = run("erm+caper", digits_tensors,
                    {"caper": {"tau": 1, "gamma": 50, "layer": "2", "class_balanced": True,
                               "projection": "l2", "draws": 2}}, epochs=2)
    labels = torch.tensor([r["label"] for r in ctx.tables["removed_samples"]])
    share = torch.bincount(ctx.train_y, minlength=10).double() * 50 / N_TRAIN
    assert (torch.bincount(labels, minlength=10) - share).abs().max() < 1


def test_random_subset_removes_same_count_at_random(digits_tensors):
    cfg = {"tau": 1, "gamma": 40}
    _, caper_ctx, _ = run("erm+caper", digits_tensors, {"caper": cfg}, epochs=2)
    stats, ctx, _ = run("erm+random_subset", digits_tensors, {"random_subset": cfg}, epochs=2)
    _, again, _ = run("erm+random_subset", digits_tensors, {"random_subset": cfg}, epochs=2)
    ids = {r["sample_id"] for r in ctx.tables["removed_samples"]}
    assert len(ids) == 40 and stats.train_samples == N_TRAIN + N_TRAIN - 40
    assert ids == {r["sample_id"] for r in again.tables["removed_samples"]}  # seeded
    assert ids != {r["sample_id"] for r in caper_ctx.tables["removed_samples"]}


def test_pruners_use_label_smoothing(digits_tensors):
    comp = compose("erm+caper", {"caper": {"label_smoothing": 0.2}})
    crit = comp.modifiers[0].criterion(None)
    logits, y = torch.tensor([[10.0, 0.0]]), torch.tensor([0])
    plain = torch.nn.functional.cross_entropy(logits, y)
    assert crit(logits, y).item() > plain.item() + 0.5  # smoothing penalises confidence


# -- dropout -----------------------------------------------------------------------------

def test_dropout_acts_in_training_only_and_leaves_no_hook(digits_tensors):
    comp = compose("erm+dropout", {"dropout": {"p": 0.5}})
    ctx = make_ctx(digits_tensors, epochs=1)
    mod = comp.modifiers[0]
    mod.on_train_start(ctx)
    x = ctx.train_x[:8]
    ctx.model.train()
    torch.manual_seed(0)
    a = ctx.model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, ctx.model(x))  # stochastic in train mode
    ctx.model.eval()
    assert torch.allclose(ctx.model(x), ctx.model(x))
    mod.on_train_end(ctx)
    ctx.model.train()
    assert torch.allclose(ctx.model(x), ctx.model(x))  # hook removed


# -- AccelAT -----------------------------------------------------------------------------

def test_plateau_rule_drops_exactly_when_the_window_mean_stalls():
    rule = PlateauRule(lr=0.1, n=2, delta_acc=0.01, p=0.5, lr_min=0.02, cooldown=0)
    accs = [0.50, 0.60, 0.70, 0.705, 0.71, 0.80, 0.80, 0.80, 0.80]
    # window means from epoch 1: .55 .65 .7025 .7075 .755 .80 .80 .80
    # rises:                          .10 .0525 .005 .0475 .045  0   0
    drops = [rule.update(a) for a in accs]
    assert drops == [False, False, False, False, True, False, False, True, True]
    assert rule.lr == pytest.approx(0.02)  # 0.1 → .05 → .025 → floor .02


def test_plateau_rule_cooldown_skips_tests_after_a_drop():
    rule = PlateauRule(lr=1.0, n=1, delta_acc=0.01, p=0.5, lr_min=0.0, cooldown=2)
    drops = [rule.update(0.5) for _ in range(7)]
    assert drops == [False, True, False, False, True, False, False]


def test_accelat_lowers_lr_on_plateau_in_training(digits_tensors):
    # A tiny LR keeps accuracy flat: every test after the window fills is a plateau.
    stats, _, _ = run("erm+accelat", digits_tensors,
                      {"accelat": {"n": 1, "delta_acc": 0.5, "p": 0.5, "lr_max": 1e-4}}, epochs=4)
    lrs = [row["lr"] for row in stats.history]
    assert lrs == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])
    assert [row["accelat_dropped"] for row in stats.history] == [False, True, True, True]


def test_accelat_monitors_adversarial_validation_accuracy_and_is_charged(digits_tensors):
    cfg = {"accelat": {"val_points": 50, "val_steps": 2, "n": 2}}
    plain, _, _ = run("fast_at", digits_tensors, epochs=2)
    stats, _, _ = run("fast_at+accelat", digits_tensors, cfg, epochs=2)
    for row in stats.history:
        assert row["accelat_monitored"] == row["val_robust_acc"]
        assert 0 <= row["val_robust_acc"] <= 1
    # Two epochs × 50 points × (2 attack steps + 1 eval forward) more than plain Fast-AT.
    forward = plain.train_flops / plain.train_samples / 5  # FGSM step ≈ 2 + step 3 forwards
    extra = stats.train_flops - plain.train_flops
    assert extra == pytest.approx(2 * 50 * (2 * 2 + 1) * forward, rel=0.1)


def test_accelat_lr_finder_picks_a_decade_below_the_minimum(digits_tensors):
    stats, ctx, _ = run("erm+accelat", digits_tensors,
                        {"accelat": {"lr_finder": True, "finder_steps": 30, "n": 1}}, epochs=1)
    import json

    found = json.loads(stats.history[0]["lr_finder"])
    sweep = found["sweep"]
    best = min(sweep, key=lambda s: s[2])
    assert found["lr_max"] == pytest.approx(best[0] / 10)
    assert stats.history[0]["lr"] == pytest.approx(found["lr_max"])


def test_two_lr_controllers_or_criteria_are_rejected():
    with pytest.raises(CompositionError, match="learning-rate controllers"):
        from bench.api import Modifier
        from bench.plugins import METHODS, register_method

        class OtherLR(Modifier):
            """Test-only LR controller."""
            name = "_test_lr"
            controls_lr = True

        if "_test_lr" not in METHODS:
            register_method(OtherLR)
        compose("pgd_at+accelat+_test_lr")
    with pytest.raises(CompositionError, match="two loss criteria"):
        compose("pgd_at+caper+random_subset")


# -- schedules ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_stay_in_range(name):
    values = [schedule_lr(name, 0.2, p / 100) for p in range(100)]
    assert all(0 <= v <= 0.2 + 1e-12 for v in values)


def test_schedule_shapes():
    assert schedule_lr("step", 1.0, 0.49) == 1.0 and schedule_lr("step", 1.0, 0.6) == pytest.approx(0.1)
    assert schedule_lr("step", 1.0, 0.8) == pytest.approx(0.01)
    assert schedule_lr("one_cycle", 1.0, 0.0) == pytest.approx(0.1)
    assert schedule_lr("one_cycle", 1.0, 0.45) == pytest.approx(1.0)
    assert schedule_lr("one_cycle", 1.0, 0.9) == pytest.approx(0.1)
    assert schedule_lr("one_cycle", 1.0, 0.99999) == pytest.approx(0.001, abs=1e-4)
    assert one_cycle_momentum(0.45) == pytest.approx(0.85)
    assert one_cycle_momentum(0.0) == one_cycle_momentum(0.95) == pytest.approx(0.95)
    peaks = [p / 1000 for p in range(1000) if schedule_lr("cyclical", 1.0, p / 1000) > 0.999]
    assert len(peaks) == 4  # four triangles
    restarts = [p / 700 for p in range(1, 700)
                if schedule_lr("warm_restarts", 1.0, p / 700) > schedule_lr("warm_restarts", 1.0, (p - 1) / 700)]
    assert [round(r * 7) for r in restarts] == [1, 3]  # restarts at 1/7 and 3/7


def test_one_cycle_sets_momentum_in_training(digits_tensors):
    stats, ctx, _ = run("erm", digits_tensors, {"schedule": "one_cycle"}, epochs=2)
    last_progress = (1 + 3 / 4) / 2  # epoch 1, step 3 of 4
    assert ctx.optimizer.param_groups[0]["momentum"] == pytest.approx(one_cycle_momentum(last_progress))
    assert ctx.optimizer.param_groups[0]["momentum"] != pytest.approx(0.9)
    assert not math.isnan(stats.history[-1]["lr"])
