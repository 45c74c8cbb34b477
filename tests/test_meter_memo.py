"""The FLOP meter's step memo: steps a method declares alike are counted once and charged
after, and the totals equal counting every op, for every built-in method and composition."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_cnn
from method_cases import COMPOSITIONS, model_for, train_case

from bench.api import Budget, Modifier, ThreatModel, TrainContext
from bench.attacks import perturb
from bench.measures import FlopMeter, MeterMismatchError
from bench.plugins import compose
from bench.work.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def train_with(name: str, digits_tensors, meter: FlopMeter):
    return train_case(name, digits_tensors, meter=meter)[0]


@pytest.mark.parametrize("name", COMPOSITIONS)
def test_memoized_total_equals_counting_every_op(name, digits_tensors):
    every_op = FlopMeter(memoize=False)
    exact = train_with(name, digits_tensors, every_op).train_flops
    # audit_every=1 recounts every step and compares it with its key's first: a
    # declaration that missed something the cost depends on raises here.
    audited = FlopMeter(audit_every=1)
    assert train_with(name, digits_tensors, audited).train_flops == exact
    memo = FlopMeter()
    assert train_with(name, digits_tensors, memo).train_flops == exact
    assert exact > 0
    assert every_op.steps_charged == 0
    assert memo.steps_charged > 0, "every built-in method declares its step cost"
    assert memo.steps_counted < every_op.steps_counted


def test_first_step_of_each_key_counted_then_charged():
    model, x = tiny_cnn(), torch.rand(4, 1, 8, 8)
    one = FlopMeter()
    with torch.no_grad(), one:
        model(x)
    with torch.no_grad(), FlopMeter(audit_every=3) as meter:
        for i in range(7):
            with meter.step(("a",)):
                model(x)
            with meter.step(("b",)):
                model(x[:2])
    assert meter.total == 7 * one.total + 7 * one.total / 2
    # Steps 1, 4 and 7 of each key are counted op by op (the first and two audits).
    assert (meter.steps_counted, meter.steps_charged) == (6, 8)


def test_charged_step_inside_resumed_or_paused_work_counts_once():
    model, x = tiny_cnn(), torch.rand(4, 1, 8, 8)
    with torch.no_grad(), FlopMeter() as meter:
        for _ in range(3):
            with meter.step(()), meter.resumed():  # resumed inside a charged step: no double
                model(x)
        per_step = meter.total / 3
        with meter.paused(), meter.step(()):
            model(x)  # paused: a step here counts nothing and is not memoized
        assert meter.total == 3 * per_step


def test_a_step_that_pauses_the_meter_is_counted_op_by_op():
    model, x = tiny_cnn(), torch.rand(4, 1, 8, 8)
    with torch.no_grad(), FlopMeter(audit_every=1) as meter:
        for _ in range(3):
            with meter.step(()):
                model(x)
                with meter.paused():
                    model(x)
                model(x)
        assert meter.steps_charged == 0
    one = FlopMeter()
    with torch.no_grad(), one:
        model(x)
    assert meter.total == 6 * one.total


class ExtraPassOnOddSteps(Modifier):
    """A planted wrong declaration: an extra forward on odd steps, yet key ``()``."""

    name = "extra_pass"

    def __init__(self, declare: bool):
        self.declare = declare

    def extra_loss(self, ctx, batch):
        if ctx.step % 2:
            return 0 * ctx.model(batch.x).sum()
        return None

    def step_cost_key(self, ctx, batch):
        return () if self.declare else None


def test_a_wrong_declaration_fails_the_run_at_its_audit(digits_tensors):
    x, y, _, _ = digits_tensors

    def run(declare: bool, meter: FlopMeter) -> float:
        ctx = TrainContext(
            model=model_for("erm"), train_x=x[:400], train_y=y[:400], val_x=x[:0], val_y=y[:0],
            num_classes=10, budget=Budget(1, 100), threat=ThreatModel("Linf", 0.1),
            device=torch.device("cpu"), seed=0, generator=torch.Generator().manual_seed(0),
            attack=perturb, log=lambda **kw: None)
        return train(compose("erm").base, [ExtraPassOnOddSteps(declare)], ctx,
                     meter=meter).train_flops

    with pytest.raises(MeterMismatchError, match="step_cost_key"):
        run(declare=True, meter=FlopMeter(audit_every=3))  # audits the 4th step, an odd one
    # Declaring nothing (None) counts every op: the same total as no memo at all.
    honest = FlopMeter()
    assert run(declare=False, meter=honest) == run(declare=True, meter=FlopMeter(memoize=False))
    assert honest.steps_charged == 0
