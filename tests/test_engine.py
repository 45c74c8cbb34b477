"""The training loop and its FLOP meter: costs are measured, never declared."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_cnn

from bench.api import Budget, Modifier, ThreatModel, TrainContext
from bench.attacks import perturb
from bench.plugins import compose
from bench.work.loop import NonFiniteLossError, train


def make_ctx(digits_tensors, epochs=1, batch_size=100, n=400, seed=0) -> TrainContext:
    x, y, _, _ = digits_tensors
    torch.manual_seed(seed)
    return TrainContext(
        model=tiny_cnn(), train_x=x[:n], train_y=y[:n], val_x=x[n:n + 100], val_y=y[n:n + 100],
        num_classes=10, budget=Budget(epochs, batch_size), threat=ThreatModel("Linf", 0.1),
        device=torch.device("cpu"), seed=seed, generator=torch.Generator().manual_seed(seed),
        attack=perturb, log=lambda **kw: None,
    )


def run(name, digits_tensors, config=None, **kw):
    comp = compose(name, config)
    return train(comp.base, comp.modifiers, make_ctx(digits_tensors, **kw))


def per_sample(stats):
    return stats.train_flops / stats.train_samples


@pytest.mark.parametrize("k", [1, 3])
def test_pgd_at_step_costs_2k_plus_3_over_3_erm_steps(digits_tensors, k):
    erm = run("erm", digits_tensors)
    pgd = run("pgd_at", digits_tensors, {"steps": k})
    # ERM step = forward + weight grads + input grads of all but the first layer ≈ 3F;
    # an attack step = forward + input grads (first layer included) ≈ 2F. The first
    # layer's extra input gradient makes the measured ratio slightly above (2k+3)/3.
    assert per_sample(pgd) / per_sample(erm) == pytest.approx((2 * k + 3) / 3, rel=0.08)


def test_fast_at_costs_less_than_pgd_at(digits_tensors):
    fast = run("fast_at", digits_tensors)
    pgd = run("pgd_at", digits_tensors)
    assert per_sample(fast) < 0.5 * per_sample(pgd)
    assert fast.train_samples == pgd.train_samples == 400


def test_free_at_charged_for_every_replay(digits_tensors):
    erm = run("erm", digits_tensors, epochs=4)
    free = run("free_at", digits_tensors, {"replays": 4}, epochs=4)
    # Epochs divided by m, each batch replayed m times: same number of optimizer steps.
    assert free.train_samples == erm.train_samples == 1600
    assert len(free.history) == 1 and len(erm.history) == 4
    # One forward and one backward per replay (plus the first layer's input gradient).
    assert per_sample(free) == pytest.approx(per_sample(erm), rel=0.1)
    assert per_sample(free) > per_sample(erm)


def test_history_and_schedule(digits_tensors):
    stats = run("fast_at", digits_tensors, epochs=5)
    lrs = [row["lr"] for row in stats.history]
    assert max(lrs) <= 0.2 and lrs.index(max(lrs)) in (1, 2)  # cyclic: up, then down
    flops = [row["flops_so_far"] for row in stats.history]
    assert flops == sorted(flops) and flops[-1] == pytest.approx(stats.train_flops)
    assert all(0 <= row["val_acc"] <= 1 for row in stats.history)


def test_validation_is_not_charged(digits_tensors):
    small = run("erm", digits_tensors, n=400)
    ctx = make_ctx(digits_tensors, n=400)
    ctx.val_x, ctx.val_y = digits_tensors[0][400:1400], digits_tensors[1][400:1400]
    comp = compose("erm")
    big_val = train(comp.base, comp.modifiers, ctx)
    assert big_val.train_flops == pytest.approx(small.train_flops)


def test_erm_learns(digits_tensors):
    stats = run("erm", digits_tensors, epochs=8, n=1000)
    assert stats.history[-1]["val_acc"] > 0.85


def test_modifier_hooks_run_in_order(digits_tensors):
    calls = []

    class Spy(Modifier):
        name = "spy"

        def on_train_start(self, ctx): calls.append("start")
        def on_epoch_start(self, ctx): calls.append(f"epoch{ctx.epoch}")
        def extra_loss(self, ctx, batch):
            calls.append("extra")
            return batch.logits.new_zeros(())
        def before_step(self, ctx, batch): calls.append("before")
        def after_step(self, ctx, batch): calls.append("after")
        def on_epoch_end(self, ctx, metrics): calls.append("end")
        def on_train_end(self, ctx): calls.append("done")

    comp = compose("erm")
    train(comp.base, [Spy(Spy.Config())], make_ctx(digits_tensors, epochs=2, n=200))
    assert calls[:5] == ["start", "epoch0", "extra", "before", "after"]
    assert calls.count("extra") == 4 and calls[-1] == "done" and calls.count("end") == 2


def test_nan_loss_fails_with_reason(digits_tensors):
    class Nan(Modifier):
        name = "nan"

        def extra_loss(self, ctx, batch):
            return torch.tensor(float("nan"))

    comp = compose("erm")
    with pytest.raises(NonFiniteLossError, match="epoch 0, step 0"):
        train(comp.base, [Nan(Nan.Config())], make_ctx(digits_tensors))


class Probe(Modifier):
    """Records what each step's forward saw: input layout, logits dtype, autocast state."""

    name = "probe"

    def __init__(self):
        super().__init__(self.Config())
        self.seen: list[tuple] = []

    def on_train_start(self, ctx):
        # Digits have one channel, whose layouts coincide: look at the second conv's input.
        def record(_mod, args):
            self.nhwc.append(args[0].is_contiguous(memory_format=torch.channels_last)
                             and not args[0].is_contiguous())
        self.nhwc: list[bool] = []
        ctx.model[2].register_forward_pre_hook(record)

    def extra_loss(self, ctx, batch):
        self.seen.append((all(self.nhwc), batch.logits.dtype, torch.is_autocast_enabled("cpu")))
        self.nhwc.clear()


def run_with(name, digits_tensors, execution, config=None, epochs=1):
    comp = compose(name, config)
    ctx = make_ctx(digits_tensors, epochs=epochs, n=300)
    ctx.execution = execution
    probe = Probe()
    stats = train(comp.base, [*comp.modifiers, probe], ctx)
    return stats, ctx, probe.seen


@pytest.mark.parametrize("name,config", [("erm", None), ("pgd_at", {"steps": 2})])
def test_bf16_runs_forwards_under_autocast_and_counts_the_same_flops(digits_tensors, name, config):
    from bench.api import Execution

    fp32, _, seen32 = run_with(name, digits_tensors, Execution(), config)
    bf16, ctx, seen16 = run_with(name, digits_tensors, Execution(precision="bf16"), config)
    assert {s[1:] for s in seen32} == {(torch.float32, False)}
    assert {s[1:] for s in seen16} == {(torch.bfloat16, True)}
    assert bf16.train_flops == fp32.train_flops > 0  # same products, fewer bits
    assert all(p.dtype == torch.float32 for p in ctx.model.parameters())  # fp32 master weights
    assert bf16.history[-1]["train_loss"] == pytest.approx(fp32.history[-1]["train_loss"], rel=0.05)


def test_channels_last_feeds_nhwc_and_trains_the_same_model(digits_tensors):
    from bench.api import Execution

    nchw, ctx_a, seen_a = run_with("pgd_at", digits_tensors, Execution(), {"steps": 2}, epochs=2)
    nhwc, ctx_b, seen_b = run_with("pgd_at", digits_tensors, Execution(channels_last=True),
                                   {"steps": 2}, epochs=2)
    assert not any(s[0] for s in seen_a) and all(s[0] for s in seen_b)
    conv = ctx_b.model[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.train_flops == nchw.train_flops
    # Another kernel order, the same arithmetic: equal up to float rounding.
    for a, b in zip(ctx_a.model.parameters(), ctx_b.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name,config", [("erm", None), ("pgd_at", {"steps": 2})])
def test_compiled_steps_count_the_eager_flops_and_leave_the_eager_model(digits_tensors, name,
                                                                         config):
    """pgd_at compiles twice: the attack runs with the weights frozen (its own graph, no
    weight gradients), the training step with them on."""
    from bench.api import Execution
    from bench.measures import FlopMeter

    eager, _, _ = run_with(name, digits_tensors, Execution(), config, epochs=2)
    comp = compose(name, config)
    ctx = make_ctx(digits_tensors, epochs=2, n=300)
    model = ctx.model
    ctx.execution = Execution(compile=True)
    meter = FlopMeter()
    compiled = train(comp.base, comp.modifiers, ctx, meter=meter)
    assert compiled.train_flops == eager.train_flops > 0
    assert meter.steps_charged > 0  # those ran the compiled module
    assert ctx.model is model  # the caller gets the eager module back (checkpoints, eval)
    assert all(p.requires_grad for p in model.parameters())
    assert compiled.history[-1]["train_loss"] == pytest.approx(eager.history[-1]["train_loss"],
                                                               rel=1e-3)
