"""Reliability checks: each passes on a sound model or evaluation and fails on a broken one.

The broken models wrap the trained digits CNN so that each breaks one thing an attack relies
on (logits, determinism, a non-zero gradient, a gradient that describes the loss), and the
broken evaluations are robustness rows written by hand with the orderings reversed.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.results import store
from bench.work.checks import model_checks, result_checks

MODEL_CHECKS = ["randomized_outputs", "softmax_outputs", "zero_gradients", "loss_along_gradient"]
ROW_KEYS = {"check", "passed", "detail", "value"}
EPS = 0.1


class Wrapped(nn.Module):
    """``post(model(pre(x)))``: the trained CNN with something bolted on."""

    def __init__(self, model: nn.Module, pre: Callable | None = None, post: Callable | None = None):
        super().__init__()
        self.model, self.pre, self.post = model, pre or (lambda x: x), post or (lambda o: o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.model(self.pre(x)))


class _ConstantGradient(torch.autograd.Function):
    """Identity forward; backward returns the same fixed gradient whatever the model does."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.ones_like(grad) * 1e-3


# Each broken model: (the check it must fail, checks it may fail as well, the wrapping).
BROKEN = {
    "softmax": ("softmax_outputs", set(), dict(post=lambda o: o.softmax(dim=1))),
    "log_softmax": ("softmax_outputs", set(), dict(post=lambda o: o.log_softmax(dim=1))),
    # Random in eval mode: dropout forced on, or a noise layer. Random forward passes also
    # scramble the loss seen along the gradient.
    "dropout_in_eval": ("randomized_outputs", {"loss_along_gradient"},
                        dict(pre=lambda x: F.dropout(x, p=0.2, training=True))),
    "noise_layer": ("randomized_outputs", {"loss_along_gradient"},
                    dict(pre=lambda x: x + 0.05 * torch.randn_like(x))),
    # Digits pixels are multiples of 1/16, so this quantizer keeps every prediction and
    # zeroes every gradient; a gradient of zero also moves no loss.
    "quantized_input": ("zero_gradients", {"loss_along_gradient"},
                        dict(pre=lambda x: (x * 16).round() / 16)),
    # Logits scaled so that float32 softmax saturates to one-hot: CE gradients underflow.
    "saturated_logits": ("zero_gradients", {"loss_along_gradient"}, dict(post=lambda o: 1000 * o)),
    # A high-frequency input transform barely changes the input (|0.02 sin| <= 0.02) but
    # dominates its gradient (20 cos(1000 x)): shattered gradients, Athalye et al. 2018.
    "shattered": ("loss_along_gradient", set(),
                  dict(pre=lambda x: x + 0.02 * torch.sin(1000 * x))),
    # A backward pass that returns a constant: gradients that do not describe the model.
    "constant_gradient": ("loss_along_gradient", set(), dict(pre=_ConstantGradient.apply)),
}


@pytest.fixture(scope="module")
def points(digits_tensors):
    _, _, x, y = digits_tensors
    return x[:200], y[:200]


def by_check(rows: list[dict]) -> dict[str, dict]:
    assert all(set(r) == ROW_KEYS for r in rows)
    assert len({r["check"] for r in rows}) == len(rows), "one row per check"
    return {r["check"]: r for r in rows}


def failed(rows: list[dict]) -> set[str]:
    return {r["check"] for r in rows if not r["passed"]}


# --- model-level checks ----------------------------------------------------------------------

@pytest.mark.parametrize("norm, eps", [("Linf", EPS), ("L2", 1.0)])
def test_model_checks_pass_on_a_trained_model(trained_digits_model, points, norm, eps):
    rows = by_check(model_checks(trained_digits_model, *points, norm=norm, eps=eps))
    assert list(rows) == MODEL_CHECKS
    for row in rows.values():
        assert row["passed"] is True, row["detail"]
        assert isinstance(row["detail"], str) and isinstance(row["value"], float)
    assert rows["randomized_outputs"]["value"] == 0.0
    assert rows["zero_gradients"]["value"] == 0.0
    assert rows["loss_along_gradient"]["value"] < 0.1  # the gradient beats random directions


@pytest.mark.parametrize("name", list(BROKEN))
def test_model_check_fails_on_a_broken_model(trained_digits_model, points, name):
    check, may_also_fail, wrapping = BROKEN[name]
    rows = model_checks(Wrapped(trained_digits_model, **wrapping), *points, norm="Linf", eps=EPS)
    assert check in failed(rows), by_check(rows)[check]["detail"]
    assert failed(rows) <= {check} | may_also_fail, [r["detail"] for r in rows if not r["passed"]]


def test_failed_model_checks_say_what_they_saw(trained_digits_model, points):
    rows = by_check(model_checks(Wrapped(trained_digits_model, pre=lambda x: (x * 16).round() / 16),
                                 *points, norm="Linf", eps=EPS))
    zero = rows["zero_gradients"]
    assert zero["value"] == 1.0
    with torch.no_grad():
        n = int((trained_digits_model(points[0]).argmax(1) == points[1]).sum())
    assert f"{n} of {n} clean-correct points (100.0%)" in zero["detail"]
    rows = by_check(model_checks(Wrapped(trained_digits_model, post=lambda o: o.softmax(dim=1)),
                                 *points, norm="Linf", eps=EPS))
    assert "probabilities" in rows["softmax_outputs"]["detail"]
    assert rows["softmax_outputs"]["value"] < 1e-4


def test_model_checks_are_deterministic_and_leave_no_trace(trained_digits_model, points):
    model = Wrapped(trained_digits_model, pre=lambda x: F.dropout(x, p=0.2, training=True))
    model.train()
    rng = torch.get_rng_state()
    first = model_checks(model, *points, norm="Linf", eps=EPS, seed=3)
    assert model_checks(model, *points, norm="Linf", eps=EPS, seed=3) == first
    assert model_checks(model, *points, norm="Linf", eps=EPS, seed=4) != first  # seed matters
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_gradient_checks_need_a_clean_correct_point(trained_digits_model, points):
    x, _ = points
    with torch.no_grad():
        wrong = (trained_digits_model(x).argmax(1) + 1) % 10
    rows = model_checks(trained_digits_model, x, wrong, norm="Linf", eps=EPS)
    assert [r["check"] for r in rows] == ["randomized_outputs", "softmax_outputs"]


# --- result-level checks ---------------------------------------------------------------------

def robustness(*evals: tuple, norm: str = "Linf", n: int = 500) -> pd.DataFrame:
    """Robustness rows from (attack, eps, robust_acc[, n_examples[, steps]]) tuples."""
    rows = []
    for attack, eps, acc, *rest in evals:
        n_examples, steps = (list(rest) + [n, 10][len(rest):])[:2]
        rows.append({"run_id": "run", "attack": attack, "norm": norm, "eps": eps, "steps": steps,
                     "restarts": 1, "n_examples": n_examples, "clean_acc": 0.95,
                     "robust_acc": acc, "status": "ok"})
    return pd.DataFrame(rows)


def verdict(frame: pd.DataFrame, check: str, **kw) -> dict | None:
    return by_check(result_checks(frame, num_classes=10, **kw)).get(check)


def test_result_checks_give_no_row_without_something_to_compare():
    assert result_checks(robustness(("pgd", EPS, 0.4)), num_classes=10) == []
    # Square and PGD at different ε, or under different norms, are not compared.
    assert result_checks(robustness(("square", 0.2, 0.3), ("pgd", EPS, 0.4)), num_classes=10) == []
    mixed = pd.concat([robustness(("square", EPS, 0.1)), robustness(("pgd", EPS, 0.4), norm="L2")])
    assert verdict(mixed, "blackbox_beats_whitebox") is None


def test_blackbox_beats_whitebox():
    sound = robustness(("square", EPS, 0.52), ("apgd-ce", EPS, 0.50), ("pgd", EPS, 0.55))
    row = verdict(sound, "blackbox_beats_whitebox")
    assert row["passed"] and row["value"] == pytest.approx(-0.02)
    masked = robustness(("square", EPS, 0.412), ("apgd-ce", EPS, 0.503), ("pgd", EPS, 0.55))
    row = verdict(masked, "blackbox_beats_whitebox")
    assert not row["passed"] and row["value"] == pytest.approx(0.091)
    assert row["detail"].startswith("square 0.412 < best white-box apgd-ce 0.503 at Linf eps=0.1 "
                                    "(gap 0.091, n=500, margin 0.045)")


def test_one_step_beats_iterative():
    assert verdict(robustness(("fgsm", EPS, 0.50), ("pgd", EPS, 0.45)),
                   "one_step_beats_iterative")["passed"]
    row = verdict(robustness(("fgsm", EPS, 0.30), ("ffgsm", EPS, 0.35), ("pgd", EPS, 0.45),
                             ("apgd-ce", EPS, 0.44)), "one_step_beats_iterative")
    assert not row["passed"]
    assert "one-step fgsm 0.300 < best iterative apgd-ce 0.440" in row["detail"]


def test_autoattack_gap_is_configurable():
    far = robustness(("autoattack", EPS, 0.30), ("pgd", EPS, 0.40), ("square", EPS, 0.45))
    row = verdict(far, "autoattack_gap")
    assert not row["passed"] and row["value"] == pytest.approx(0.10)
    assert "gap 0.100" in row["detail"] and "overestimate" in row["detail"]
    near = robustness(("autoattack", EPS, 0.37, 5000), ("pgd", EPS, 0.40, 5000))
    assert verdict(near, "autoattack_gap")["passed"]  # 3 points < the 5-point default
    assert not verdict(near, "autoattack_gap", autoattack_gap=0.01)["passed"]


def test_eps_monotone():
    sweep = [("pgd", 0.05, 0.60), ("pgd", 0.1, 0.40), ("pgd", 0.2, 0.20)]
    row = verdict(robustness(*sweep), "eps_monotone")
    assert row["passed"] and row["value"] < 0
    row = verdict(robustness(*sweep, ("pgd", 0.4, 0.55)), "eps_monotone")
    assert not row["passed"] and row["value"] == pytest.approx(0.35)  # 0.20 at 0.2 -> 0.55
    assert "pgd robust acc 0.200 at Linf eps=0.2, 0.550 at eps=0.4" in row["detail"]
    assert "(and 1 more failing)" in row["detail"]  # 0.40 at 0.1 is beaten too
    # A stronger setting (more steps) at a larger ε is another attack, not a rise.
    settings = robustness(("pgd", 0.1, 0.30, 500, 50), ("pgd", 0.2, 0.35, 500, 10))
    assert verdict(settings, "eps_monotone") is None


def test_large_eps_zero():
    assert verdict(robustness(("pgd", 0.5, 0.08)), "large_eps_zero")["passed"]
    row = verdict(robustness(("pgd", 0.5, 0.30), ("fgsm", 0.5, 0.50)), "large_eps_zero")
    assert not row["passed"] and row["value"] == pytest.approx(0.30)
    assert "best attack pgd leaves robust acc 0.300 at Linf eps=0.5" in row["detail"]
    # 0.3 is MNIST's standard ε, where robust models keep most points: not large by default.
    assert verdict(robustness(("pgd", 0.3, 0.30)), "large_eps_zero") is None
    assert not verdict(robustness(("pgd", 0.3, 0.30)), "large_eps_zero",
                       large_eps={"Linf": 0.3})["passed"]
    # At L∞ ε = 1 every image is reachable: chance is not enough, robust accuracy must be ~0.
    assert not verdict(robustness(("pgd", 1.0, 0.05)), "large_eps_zero")["passed"]
    assert verdict(robustness(("pgd", 1.0, 0.0)), "large_eps_zero")["passed"]
    assert verdict(robustness(("pgd", 100.0, 0.3), norm="L2"), "large_eps_zero") is None
    # A sweep that stopped below chance at a smaller ε has shown it: larger balls hold it.
    row = verdict(robustness(("pgd", 0.1, 0.5), ("pgd", 0.2, 0.04)), "large_eps_zero")
    assert row["passed"] and row["value"] == pytest.approx(0.04)
    assert "robust acc 0.040 at Linf eps=0.2; allowed: chance 0.100" in row["detail"]
    assert "already below the large eps=0.5" in row["detail"]


@pytest.mark.parametrize("evals", [
    [("square", EPS, 0.52, 100), ("pgd", EPS, 0.53, 100)],
    [("square", EPS, 0.00, 100), ("pgd", EPS, 0.01, 100)],
    [("fgsm", EPS, 0.99, 100), ("pgd", EPS, 1.00, 100)],
    [("pgd", 0.1, 0.52, 100), ("pgd", 0.2, 0.53, 100)],
], ids=["mid", "near-zero", "near-one", "eps"])
def test_one_point_on_a_hundred_is_not_a_failure(evals):
    rows = result_checks(robustness(*evals), num_classes=10)
    assert rows and all(r["passed"] for r in rows), [r["detail"] for r in rows]


def test_margin_follows_the_smaller_evaluation():
    def square_vs_pgd(n_square: int, n_pgd: int) -> dict:
        frame = robustness(("square", EPS, 0.45, n_square), ("pgd", EPS, 0.50, n_pgd))
        return verdict(frame, "blackbox_beats_whitebox")

    assert not square_vs_pgd(10_000, 10_000)["passed"]  # margin 0.010: a 5-point gap is real
    assert square_vs_pgd(100, 10_000)["passed"]  # Square on a 100-point subset: margin 0.100
    assert "(gap 0.050, n=100/10000, margin 0.100)" in square_vs_pgd(100, 10_000)["detail"]


def test_result_checks_skip_failed_rows_and_ignore_row_order():
    frame = robustness(("square", EPS, 0.41), ("pgd", EPS, 0.50), ("fgsm", EPS, 0.47),
                       ("autoattack", EPS, 0.40), ("pgd", 0.5, 0.2))
    expected = result_checks(frame, num_classes=10)
    assert failed(expected) == {"blackbox_beats_whitebox", "large_eps_zero"}
    failed_row = robustness(("square", EPS, float("nan"))).assign(status="failed")
    noisy = pd.concat([frame.iloc[::-1], failed_row], ignore_index=True)
    assert result_checks(noisy, num_classes=10) == expected


# --- the table ---------------------------------------------------------------------

def test_rows_fit_the_checks_table(tmp_path, trained_digits_model, points):
    rows = model_checks(trained_digits_model, *points, norm="Linf", eps=EPS)
    rows += result_checks(robustness(("square", EPS, 0.41), ("pgd", EPS, 0.50)), num_classes=10)
    now = pd.Timestamp.now(tz="UTC")
    store.write_cell(tmp_path, "checks", "run", [{**r, "run_id": "run", "created_at": now}
                                                 for r in rows])
    table = store.read_cell(tmp_path, "checks", "run")
    assert table["check"].tolist() == [r["check"] for r in rows]
    assert table.loc[~table["passed"], "check"].tolist() == ["blackbox_beats_whitebox"]
