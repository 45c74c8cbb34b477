"""Reliability checks: each passes on a sound model or evaluation and fails on a broken one.

The broken models wrap the trained digits CNN so that each breaks one thing an attack relies
on (logits, determinism, a non-zero gradient, a gradient that describes the loss), and the
broken evaluations are robustness rows written by hand with the orderings reversed.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from bench.attacks import ATTACKS
from bench.grid.spec import LargeEpsSpec, SpecError, load_spec
from bench.results import store
from bench.results.points import pack
from bench.work.checks import (
    MARGIN_FLOOR,
    cost_checks,
    large_eps_rows,
    large_eps_zero,
    model_checks,
    paired_margin,
    result_checks,
    sign_test_limit,
)

FIXTURE = Path(__file__).parent / "fixtures" / "tiny"
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
    assert failed(expected) == {"blackbox_beats_whitebox"}
    failed_row = robustness(("square", EPS, float("nan"))).assign(status="failed")
    noisy = pd.concat([frame.iloc[::-1], failed_row], ignore_index=True)
    assert result_checks(noisy, num_classes=10) == expected


# --- the table ---------------------------------------------------------------------

def test_rows_fit_the_checks_table(tmp_path, trained_digits_model, points):
    rows = model_checks(trained_digits_model, *points, norm="Linf", eps=EPS)
    rows += result_checks(robustness(("square", EPS, 0.41), ("pgd", EPS, 0.50)), num_classes=10)
    rows += large_eps_rows(trained_digits_model, *points, LargeEpsSpec(), "L2")  # skipped
    now = pd.Timestamp.now(tz="UTC")
    store.write_cell(tmp_path, "checks", "run", [{**r, "run_id": "run", "created_at": now}
                                                 for r in rows])
    table = store.read_cell(tmp_path, "checks", "run")
    assert table["check"].tolist() == [r["check"] for r in rows]
    assert table.loc[table["passed"] == False, "check"].tolist() == ["blackbox_beats_whitebox"]  # noqa: E712
    skipped = table[table["check"] == "large_eps_zero"].iloc[0]
    assert pd.isna(skipped["passed"]) and pd.isna(skipped["value"])  # null, neither way


# --- paired result-level checks (rows with per-point bits) -----------------------------------

def robust_on(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    """n per-point flags, robust on the half-open index ranges given."""
    flags = np.zeros(n, dtype=bool)
    for start, stop in ranges:
        flags[start:stop] = True
    return flags


def evaluated(attack: str, eps: float, robust: np.ndarray, *, steps: int = 10,
              sweep: str | None = None, independent: bool = True) -> dict:
    """One finished robustness row with per-point bits (every point clean-correct); a sweep
    row is marked as evaluated independently unless ``independent`` is False (the nested
    sweeps of before)."""
    config = {"sweep_points": "independent"} if sweep and independent else {}
    return {"run_id": "run", "attack": attack, "norm": "Linf", "eps": eps, "steps": steps,
            "restarts": 1, "n_examples": len(robust), "clean_acc": 1.0,
            "robust_acc": float(robust.mean()), "status": "ok", "sweep": sweep,
            "attack_config": json.dumps(config), "clean_points": pack(np.ones(len(robust))),
            "robust_points": pack(robust)}


def paired(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def unpaired(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows as written before per-point results: no bits."""
    return frame.assign(clean_points=None, robust_points=None)


def test_paired_margin_is_the_exact_sign_test():
    # P(Bin(10, 1/2) >= 9) = 11/1024 <= 0.025 < P(>= 8) = 56/1024: 8 of 10 may be chance
    assert sign_test_limit(10) == 8
    assert sign_test_limit(0) == 0 and sign_test_limit(5) == 5  # 1/32 > 0.025
    assert paired_margin(10, 500) == pytest.approx((2 * 8 - 10) / 500)
    assert paired_margin(20, 500) == pytest.approx(0.016)  # the docstring's example
    assert paired_margin(0, 500) == MARGIN_FLOOR


def test_blackbox_beats_whitebox_paired_on_shared_points():
    pgd = robust_on(500, (0, 250))
    # Square breaks 15 points PGD did not and none the other way: a 3-point gap the
    # unpaired margin (0.045 at n=500) lets through, but 15 of 15 disagreements is no chance.
    masked = paired(evaluated("square", EPS, robust_on(500, (15, 250))), evaluated("pgd", EPS, pgd))
    row = verdict(masked, "blackbox_beats_whitebox")
    assert not row["passed"] and row["value"] == pytest.approx(0.03)
    assert row["detail"].startswith(
        "square 0.470 < best white-box pgd 0.500 at Linf eps=0.1 (gap 0.030 on the n=500 "
        "points both evaluated: 15 robust only under pgd, 0 only under square; paired margin "
        "0.014)"), row["detail"]
    assert verdict(unpaired(masked), "blackbox_beats_whitebox")["passed"]
    # As many points broken by each attack alone: the same accuracy, no finding.
    even = paired(evaluated("square", EPS, robust_on(500, (10, 260))), evaluated("pgd", EPS, pgd))
    row = verdict(even, "blackbox_beats_whitebox")
    assert row["passed"] and row["value"] == 0.0 and "10 robust only under pgd" in row["detail"]
    # Square weaker than PGD, as on an honest model.
    weaker = paired(evaluated("square", EPS, robust_on(500, (0, 262))), evaluated("pgd", EPS, pgd))
    assert verdict(weaker, "blackbox_beats_whitebox")["passed"]


def test_the_closest_reference_attack_speaks_for_them():
    square = robust_on(500, (15, 250))
    rows = paired(evaluated("square", EPS, square), evaluated("pgd", EPS, robust_on(500, (0, 250))),
                  evaluated("apgd-ce", EPS, robust_on(500, (12, 250))))
    row = verdict(rows, "blackbox_beats_whitebox")
    # APGD broke 12 of Square's 15: 3 disagreements, within chance
    assert row["passed"] and "best white-box apgd-ce 0.476" in row["detail"], row["detail"]


def test_autoattack_gap_paired_on_the_prefix_autoattack_evaluated():
    # PGD on 500 points, AutoAttack on their first 100 (nested subsets).
    pgd = evaluated("pgd", EPS, robust_on(500, (0, 60), (100, 290)))  # 0.50 overall, 0.60 on 100
    far = paired(evaluated("autoattack", EPS, robust_on(100, (12, 60))), pgd)
    row = verdict(far, "autoattack_gap")
    assert not row["passed"] and row["value"] == pytest.approx(0.12)
    assert "autoattack 0.480 < best other attack pgd 0.600" in row["detail"]
    assert "n=100 points both evaluated: 12 robust only under pgd, 0 only under autoattack" \
        in row["detail"]
    # Unpaired, AutoAttack's 0.48 on 100 points is held against PGD's 0.50 on 500: no gap.
    assert verdict(unpaired(far), "autoattack_gap")["passed"]
    near = paired(evaluated("autoattack", EPS, robust_on(100, (3, 60))), pgd)
    assert verdict(near, "autoattack_gap")["passed"]  # 3 points < the 5-point tolerance


def test_one_step_beats_iterative_paired():
    pgd = evaluated("pgd", EPS, robust_on(200, (0, 100)))
    stuck = paired(evaluated("fgsm", EPS, robust_on(200, (20, 100))), pgd)
    assert not verdict(stuck, "one_step_beats_iterative")["passed"]
    sound = paired(evaluated("fgsm", EPS, robust_on(200, (0, 130))), pgd)
    assert verdict(sound, "one_step_beats_iterative")["passed"]


SWEEP = "pgd-10 Linf doubling"


def sweep(*robust: np.ndarray, independent: bool = True, start: float = 0.025) -> list[dict]:
    return [evaluated("pgd", start * 2 ** i, r, sweep=SWEEP, independent=independent)
            for i, r in enumerate(robust)]


def test_eps_monotone_judges_independent_sweeps_point_by_point():
    falls = sweep(robust_on(500, (0, 400)), robust_on(500, (0, 300)), robust_on(500, (0, 100)))
    row = verdict(paired(*falls), "eps_monotone")
    assert row["passed"] and row["value"] < 0
    # At eps=0.1 the attack fails on 30 points it broke at 0.05: it stopped converging.
    rises = sweep(robust_on(500, (0, 400)), robust_on(500, (0, 300)), robust_on(500, (0, 330)))
    row = verdict(paired(*rises), "eps_monotone")
    assert not row["passed"] and row["value"] == pytest.approx(0.06)
    assert row["detail"].startswith(
        "pgd robust acc 0.600 at Linf eps=0.05, 0.660 at eps=0.1 (rise 0.060 on the n=500 "
        "points both evaluated: 30 robust only under eps=0.1, 0 only under eps=0.05"), row["detail"]
    # A randomized attack breaks a few other points at each radius: no rise beyond chance.
    noisy = sweep(robust_on(500, (0, 400)), robust_on(500, (0, 300)), robust_on(500, (3, 306)))
    assert verdict(paired(*noisy), "eps_monotone")["passed"]


def test_eps_monotone_gives_no_row_for_nested_sweeps():
    # Sweeps of before attacked only the points still robust: monotone by construction,
    # so their rows are no evidence either way, whatever they show.
    rises = sweep(robust_on(500, (0, 400)), robust_on(500, (0, 300)), robust_on(500, (0, 330)),
                  independent=False)
    assert verdict(paired(*rises), "eps_monotone") is None
    assert verdict(unpaired(paired(*rises)), "eps_monotone") is None
    # The grid's own attacks are independent evaluations, each at its ε.
    grid = [evaluated("pgd", eps, robust_on(500, (0, stop)))
            for eps, stop in ((0.1, 300), (0.2, 340))]
    row = verdict(paired(*rises, *grid), "eps_monotone")
    assert not row["passed"] and "0.600 at Linf eps=0.1, 0.680 at eps=0.2" in row["detail"]
    assert "(and" not in row["detail"]  # the nested rows took no part


# --- large_eps_zero: the checks' own attack -------------------------------------------------

class NearestNeighbour(nn.Module):
    """The label of the nearest stored point, as one-hot logits: no input gradient at all
    (the 0 · x term only keeps a graph), so gradient attacks never move, while random
    noise rarely changes the nearest point. Any model falls to the grey image; PGD at
    L∞ 0.5 does not find it here."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__()
        self.register_buffer("x", x.flatten(1))
        self.register_buffer("y", y)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(inputs.flatten(1), self.x).argmin(dim=1)
        return 10 * F.one_hot(self.y[nearest], 10).float() + 0 * inputs.flatten(1).sum(1, True)


class Constant(nn.Module):
    """Class 3 whatever the input: honest (no attack can change it), robust on class 3."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.tensor(3), 10).float() + 0 * inputs.flatten(1).sum(1, True)


PGD_LARGE = dict(name="pgd", norm="Linf", eps=0.5, steps=20)


def large(model: nn.Module, points, **attack) -> dict:
    return large_eps_zero(model, *points, ATTACKS.create(**{**PGD_LARGE, **attack}), seed=0)


def test_large_eps_zero_passes_on_a_trained_model(trained_digits_model, points):
    row = large(trained_digits_model, points)
    assert set(row) == ROW_KEYS and row["passed"] and row["value"] == 0.0
    assert row["detail"].startswith("pgd-20 at Linf eps=0.5 (seed 0) leaves robust acc 0.000 on "
                                    "200 points; allowed: bound 0.1"), row["detail"]
    assert "The grey image lies within eps of all 200 points and is classified" in row["detail"]


def test_large_eps_zero_holds_an_honest_constant_classifier_to_its_class(points):
    row = large(Constant(), points)
    share = float((points[1] == 3).float().mean())
    assert row["passed"] and row["value"] == pytest.approx(share)  # exactly at the bound
    assert f"bound {share:.3f}" in row["detail"] and "classified 3" in row["detail"]


@pytest.mark.parametrize("broken", ["nearest_neighbour", "quantized_at_large_eps"])
def test_large_eps_zero_fails_where_gradients_are_masked(trained_digits_model, points, broken):
    # Quantizing to {0, 0.5, 1} keeps most digits but zeroes every gradient: PGD's random
    # start alone breaks some points, far from all.
    model = (NearestNeighbour(*points) if broken == "nearest_neighbour"
             else Wrapped(trained_digits_model, pre=lambda x: (x * 2).round() / 2))
    row = large(model, points)
    assert not row["passed"] and row["value"] > 0.5, row["detail"]
    assert "the attack fails where any model must break" in row["detail"]


def test_large_eps_zero_bounds_only_points_the_grey_image_reaches(points):
    # At L∞ 0.1 the grey image is out of every digit's reach: nothing is bounded, so even
    # a model no attack moves passes, and the detail says why.
    row = large(NearestNeighbour(*points), points, eps=0.1)
    assert row["passed"] and "within eps of 0 of the 200 points" in row["detail"]


def test_large_eps_rows_follow_the_grid_spec(trained_digits_model, points):
    assert large_eps_rows(trained_digits_model, *points, None, "Linf") == []
    # L2: the radius reaching grey depends on the image size; none is guessed.
    (row,) = large_eps_rows(trained_digits_model, *points, LargeEpsSpec(), "L2")
    assert row["passed"] is None and row["value"] is None
    assert row["detail"].startswith("skipped: no default radius under L2")
    assert "0.5·sqrt(d) = 4 of the grey image here (d = 64)" in row["detail"]
    (row,) = large_eps_rows(trained_digits_model, *points, LargeEpsSpec(norm="Linf", steps=10),
                            "L2")
    assert row["passed"] and row["detail"].startswith("pgd-10 at Linf eps=0.5")


def test_large_eps_is_configured_in_the_grid(tmp_path):
    spec = load_spec(FIXTURE)
    assert spec.checks.large_eps == LargeEpsSpec(name="pgd", eps=None, steps=20)
    assert spec.checks.large_eps.radius("Linf") == ("Linf", 0.5)
    raw = yaml.safe_load((FIXTURE / "grid.yaml").read_text())
    raw["checks"] = {"large_eps": {"name": "nope"}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"checks.large_eps.name: unknown attack 'nope'"):
        load_spec(tmp_path)
    raw["checks"] = {"large_eps": None}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(raw))
    assert load_spec(tmp_path).checks.large_eps is None


def test_the_tiny_grid_runs_both_checks_on_honest_models(finished):
    checks = store.read_table(finished / "results", "checks")
    for check, kind in (("large_eps_zero", "model"), ("eps_monotone", "result")):
        rows = checks[checks["check"] == check]
        assert len(rows) == 2 and (rows["kind"] == kind).all(), check  # erm and fast_at
        assert rows["passed"].all(), rows["detail"].tolist()
    assert checks.loc[checks["check"] == "eps_monotone", "detail"].str.contains(
        "points both evaluated").all()  # the independent sweep, paired
    assert checks.loc[checks["check"] == "large_eps_zero", "detail"].str.startswith(
        "pgd-20 at Linf eps=0.5 (seed 0)").all()


# --- uncounted_work on a synthetic runs table -----------------------------------------------

def runs_table(*runs: dict) -> pd.DataFrame:
    base = {"status": "ok", "sandbox": "bwrap", "dataset": "digits", "arch": "small_cnn",
            "device": "cpu", "threads": 1, "precision": "fp32", "channels_last": False,
            "compiled": False, "submission_id": None, "startup_cpu_seconds": 1.0}
    return pd.DataFrame([{**base, **r} for r in runs])


TRUSTED = {"run_id": "erm", "method_config": json.dumps({"name": "erm"}), "train_flops": 1e10,
           "train_cpu_seconds": 11.0}  # 10 s for 10 GFLOPs after its 1 s start-up


@pytest.mark.parametrize("cpu, passed", [(12.0, True), (15.0, True), (15.1, False), (40.0, False)])
def test_uncounted_work_against_the_trusted_rate(cpu, passed):
    # allowed: start-up 1 s + 1.5 x 1 s/GFLOP x 10 GFLOPs + 0.5 s = 16.5 s of CPU time
    mine = {"run_id": "sub", "method_config": json.dumps({"name": "erm+trick"}),
            "train_flops": 1e10, "train_cpu_seconds": cpu + 1.5, "submission_id": "s1"}
    (row,) = cost_checks("sub", runs_table(TRUSTED, mine))
    assert row["check"] == "uncounted_work" and row["passed"] is passed, row["detail"]
    assert "erm (1 run) ran at most 1 s/GFLOP, so at most 16.5 s is explained" in row["detail"]


def test_uncounted_work_needs_a_sandboxed_run_and_a_trusted_one():
    mine = {"run_id": "sub", "method_config": json.dumps({"name": "erm"}), "train_flops": 1e10,
            "train_cpu_seconds": 99.0, "submission_id": "s1"}
    assert cost_checks("sub", runs_table(TRUSTED, {**mine, "sandbox": "none"})) == []
    assert cost_checks("sub", runs_table({**TRUSTED, "arch": "other"}, mine)) == []
