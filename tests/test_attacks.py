"""Attacks: registry errors, threat-model bounds, attack-strength orderings, determinism.

Strength orderings (FGSM <= PGD <= AutoAttack) are checked per point, not on averages,
because robust accuracy is a per-point worst case; the digits CNN is small enough that
every check runs on a few hundred points in seconds.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.attacks import ATTACKS, Attack, AttackResult, evaluate_attack, perturb
from bench.attacks.ascent import distances
from bench.attacks.gradient import PGD

ALL = ["apgd-ce", "apgd-t", "autoattack", "cw", "difgsm", "fab-t", "ffgsm", "fgsm", "mifgsm",
       "pgd", "square"]
EPS = {"Linf": 0.15, "L2": 1.0}  # both fool about half the points of the digits CNN
TOL = 1e-5
# Short budgets keep the library attacks fast; the properties checked do not depend on them.
FAST_STEPS = {"apgd-ce": 20, "apgd-t": 10, "fab-t": 10, "square": 200}


@pytest.fixture(scope="module")
def points(digits_tensors):
    """200 test points: enough for attacks to succeed and fail on many of them."""
    _, _, x, y = digits_tensors
    return x[:200], y[:200]


@pytest.fixture(scope="module")
def correct_points(trained_digits_model, points):
    """60 clean-correct points, the inputs ``Attack.run`` is specified for."""
    x, y = points
    with torch.no_grad():
        keep = trained_digits_model(x).argmax(1) == y
    return x[keep][:60], y[keep][:60]


def fast(name: str, **kw) -> Attack:
    steps = None if name == "autoattack" else FAST_STEPS.get(name)
    return ATTACKS.create(name, steps=steps, **kw)


def run(model, attack: Attack, x, y, seed: int = 0) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return attack.run(model, x, y, torch.Generator().manual_seed(seed))


# --- registry and configuration -------------------------------------------------------------

def test_registry_lists_every_attack():
    assert ATTACKS.list() == ALL
    assert ATTACKS.list("apgd-*") == ["apgd-ce", "apgd-t"]


def test_unsupported_norm_names_attack_norm_and_allowed_norms():
    with pytest.raises(ValueError, match=r"'cw'.*'L2'.*Linf"):
        ATTACKS.create("cw", norm="L2", eps=0.5)
    with pytest.raises(ValueError, match=r"'pgd'.*'L1'.*Linf, L2"):
        ATTACKS.create("pgd", norm="L1", eps=0.5)


@pytest.mark.parametrize("name, kwargs, message", [
    ("pgd", {"alpah": 0.1}, "unknown option.*alpah.*allowed: alpha, random_start"),
    ("fgsm", {"steps": 5}, "always takes 1 steps"),
    ("autoattack", {"steps": 20}, "always takes 100 steps"),
    ("fgsm", {"restarts": 3}, "deterministic"),
    ("pgd", {"random_start": None, "restarts": 2}, "deterministic"),
    ("pgd", {"eps": -0.1}, "eps must be"),
    ("pgd", {"steps": 0}, "steps must be >= 1"),
    ("difgsm", {"resize_rate": 1.2}, "resize_rate"),
])
def test_invalid_configurations_are_user_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ATTACKS.create(name, **{"eps": 0.1, **kwargs})


@pytest.mark.parametrize("name", ALL)
def test_config_is_json_and_fully_resolved(name):
    attack = ATTACKS.create(name, norm="Linf", eps=0.1)
    cfg = json.loads(json.dumps(attack.config()))
    assert cfg["name"] == attack.name == name
    assert (cfg["norm"], cfg["eps"], cfg["restarts"]) == ("Linf", 0.1, 1)
    assert cfg["steps"] == attack.default_steps
    assert "Linf" in attack.supported_norms and isinstance(attack.randomized, bool)
    assert all(v is not None for k, v in cfg.items() if k != "random_start")


def test_step_size_defaults_follow_the_papers():
    assert ATTACKS.create("pgd", eps=0.1, steps=20).config()["alpha"] == pytest.approx(0.0125)
    assert ATTACKS.create("ffgsm", eps=0.1).config()["alpha"] == pytest.approx(0.125)
    assert ATTACKS.create("mifgsm", eps=0.1).config()["momentum"] == 1.0
    assert ATTACKS.create("square", eps=0.1, steps=300).config()["steps"] == 300


# --- threat model ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_eps_zero_gives_clean_accuracy(trained_digits_model, points, name):
    res = evaluate_attack(trained_digits_model, *points, ATTACKS.create(name, eps=0.0))
    assert isinstance(res, AttackResult) and res.n_examples == 200
    assert torch.equal(res.robust, res.clean_correct)
    assert res.robust_acc == res.clean_acc > 0.9


# AutoAttack's fixed budget (5,000 Square queries) is too slow to run at eps=0 here;
# its components are covered one by one, and evaluate_attack never runs an eps=0 attack.
@pytest.mark.parametrize("name", [n for n in ALL if n != "autoattack"])
def test_attacks_do_not_move_at_eps_zero(trained_digits_model, correct_points, name):
    x, y = correct_points
    x_adv = run(trained_digits_model, fast(name, eps=0.0), x, y)
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize("name, norm", [(n, norm) for n in ALL if n != "autoattack"
                                        for norm in ATTACKS.get(n).supported_norms])
def test_adversarial_inputs_stay_in_ball_and_box(trained_digits_model, correct_points, name, norm):
    x, y = correct_points
    eps = EPS[norm]
    x_adv = run(trained_digits_model, fast(name, norm=norm, eps=eps), x, y)
    assert x_adv.shape == x.shape
    assert distances(x_adv, x, norm).max() <= eps + TOL
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        fooled = trained_digits_model(x_adv).argmax(1) != y
    assert fooled.any(), f"{name} at {norm} eps={eps} fooled no point: attack does nothing"


# --- strength orderings ---------------------------------------------------------------------

def fooled(res: AttackResult) -> torch.Tensor:
    return res.clean_correct & ~res.robust


def test_pgd_fools_every_point_fgsm_fools(trained_digits_model, points):
    model = trained_digits_model
    fgsm = evaluate_attack(model, *points, ATTACKS.create("fgsm", eps=0.1))
    pgd = evaluate_attack(model, *points, ATTACKS.create("pgd", eps=0.1, restarts=3))
    # PGD never visits FGSM's exact corner x + eps*sign(grad): it starts at a random point
    # and takes 2.5eps/10 steps. On this model one PGD run misses 1-2 of FGSM's points and
    # three restarts miss none; allow 1% of points so the check is not tied to this seed.
    missed = fooled(fgsm) & pgd.robust
    assert missed.sum() <= 0.01 * pgd.n_examples
    assert pgd.robust_acc < fgsm.robust_acc


def test_autoattack_fools_every_point_pgd_fools(trained_digits_model, points):
    model = trained_digits_model
    x, y = points[0][:100], points[1][:100]
    pgd = evaluate_attack(model, x, y, ATTACKS.create("pgd", eps=0.15))
    aa = evaluate_attack(model, x, y, ATTACKS.create("autoattack", eps=0.15))
    # AutoAttack's APGD-CE alone is PGD with 100 adaptive steps; a point PGD-10 fools and all
    # four AutoAttack attacks miss would be a bug. One point (1%) of slack for chance.
    assert (fooled(pgd) & aa.robust).sum() <= 1
    assert aa.robust_acc <= pgd.robust_acc
    assert aa.rejected == 0 and aa.config["version"] == "standard"


def test_restarts_never_increase_robust_accuracy(trained_digits_model, points):
    flags = [evaluate_attack(trained_digits_model, *points,
                             ATTACKS.create("pgd", eps=0.1, steps=5, restarts=r)).robust
             for r in (1, 2, 4)]
    # The same seed replays the first restarts exactly, so more restarts fool a superset.
    assert not (flags[1] & ~flags[0]).any() and not (flags[2] & ~flags[1]).any()
    assert flags[2].sum() < flags[0].sum()


# --- bookkeeping ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw", [("pgd", {"restarts": 2}), ("difgsm", {}), ("ffgsm", {}),
                                      ("apgd-ce", {}), ("square", {})])
def test_same_seed_gives_identical_flags(trained_digits_model, points, name, kw):
    rng = torch.get_rng_state()
    a, b = (evaluate_attack(trained_digits_model, *points, fast(name, eps=0.1, **kw), seed=3)
            for _ in range(2))
    assert torch.equal(a.robust, b.robust) and torch.equal(a.clean_correct, b.clean_correct)
    assert torch.equal(torch.get_rng_state(), rng)  # pyautoattack's reseeding is contained


class SpyPGD(PGD):
    name = "pgd"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def run(self, model, x, y, generator):
        self.batches.append(x.shape[0])
        return super().run(model, x, y, generator)


def test_only_points_still_robust_are_attacked(trained_digits_model, points):
    once = evaluate_attack(trained_digits_model, *points, ATTACKS.create("pgd", eps=0.1),
                           batch_size=64)
    spy = SpyPGD(eps=0.1, restarts=2)
    evaluate_attack(trained_digits_model, *points, spy, batch_size=64)
    n_first = -(-int(once.clean_correct.sum()) // 64)  # batches of the first restart
    first, second = spy.batches[:n_first], spy.batches[n_first:]
    assert sum(first) == int(once.clean_correct.sum()) and max(spy.batches) <= 64
    # The same seed replays restart 1; its survivors are re-packed into full batches.
    assert sum(second) == int(once.robust.sum()) and len(second) == -(-sum(second) // 64)


class OutOfBall(Attack):
    """Cheats: steps to 3 eps, far outside the threat model."""

    name = "out-of-ball"
    default_steps = 1

    def run(self, model, x, y, generator):
        return (x + 3 * self.eps * torch.randn(x.shape, generator=generator).sign()).clamp(0, 1)


def test_fools_from_outside_the_threat_model_are_not_counted(trained_digits_model, points):
    with pytest.warns(RuntimeWarning, match="not counted"):
        res = evaluate_attack(trained_digits_model, *points, OutOfBall(eps=0.1))
    assert torch.equal(res.robust, res.clean_correct) and res.rejected > 0


def test_evaluation_restores_mode_and_leaves_weights_alone(trained_digits_model, points):
    model = copy.deepcopy(trained_digits_model).train()
    x, y = points[0][:40], points[1][:40]
    res = evaluate_attack(model, x, y, fast("fab-t", eps=0.15))  # FAB calls backward()
    assert model.training and res.seconds > 0
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert res.config["seed"] == 0 and res.config["batch_size"] == 500


# --- training-time perturb ------------------------------------------------------------------

def _kl_to(target: torch.Tensor):
    """TRADES' inner loss: KL(p_clean || p_adv), label-free."""
    return lambda logits, _y: F.kl_div(F.log_softmax(logits, 1), F.softmax(target, 1),
                                       reduction="batchmean")


@pytest.mark.parametrize("kind, norm, start", [("pgd", "Linf", "uniform"), ("pgd", "L2", "uniform"),
                                               ("pgd", "Linf", "normal"), ("fgsm", "Linf", "uniform"),
                                               ("fgsm", "L2", None)])
def test_perturb_counts_flops_and_leaves_weights_alone(trained_digits_model, points, kind, norm,
                                                        start):
    model = copy.deepcopy(trained_digits_model).train()
    x, y = points[0][:64], points[1][:64]
    eps = EPS[norm]
    with FlopCounterMode(display=False) as meter:
        x_adv = perturb(model, x, y, kind=kind, norm=norm, eps=eps, alpha=eps / 4, steps=3,
                        random_start=start, generator=torch.Generator().manual_seed(0))
    assert meter.get_total_flops() > 0
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # the caller owns the mode
    assert not x_adv.requires_grad and x_adv.shape == x.shape
    dist = distances(x_adv, x, norm)
    assert dist.max() <= eps + TOL and (dist > 0).all()  # whole batch perturbed, no early stop
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_training_attack_runs_with_weights_frozen_and_restores_them(trained_digits_model, points):
    """A compiled model's backward computes every gradient its inputs require, so the
    attack freezes the weights it does not differentiate; the flags come back afterwards,
    also when the attack raises, and a weight frozen before stays frozen."""
    model = copy.deepcopy(trained_digits_model).train()
    frozen_before = next(model.parameters())
    frozen_before.requires_grad_(False)
    seen = []
    hook = model.register_forward_pre_hook(
        lambda m, _inp: seen.append(any(p.requires_grad for p in m.parameters())))
    x, y = points[0][:16], points[1][:16]
    flags = [p.requires_grad for p in model.parameters()]
    perturb(model, x, y, eps=0.1, alpha=0.02, steps=2, generator=torch.Generator().manual_seed(0))
    assert seen == [False, False]
    assert [p.requires_grad for p in model.parameters()] == flags and not frozen_before.requires_grad

    def failing_loss(logits, _y):
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError, match="loss failed"):
        perturb(model, x, y, eps=0.1, steps=2, loss_fn=failing_loss)
    assert [p.requires_grad for p in model.parameters()] == flags
    hook.remove()


def test_perturb_is_seeded_and_accepts_a_label_free_loss(trained_digits_model, points):
    model = trained_digits_model
    x, y = points[0][:64], points[1][:64]
    with torch.no_grad():
        target = model(x)

    def attack(seed):
        return perturb(model, x, y, kind="pgd", eps=0.1, alpha=0.02, steps=5,
                       random_start="normal", loss_fn=_kl_to(target),
                       generator=torch.Generator().manual_seed(seed))

    assert torch.equal(attack(0), attack(0)) and not torch.equal(attack(0), attack(1))
    with torch.no_grad():
        assert (model(attack(0)).argmax(1) != model(x).argmax(1)).any()


def test_pgd_training_attack_is_stronger_than_fgsm(trained_digits_model, points):
    x, y = points
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        acc = {kind: (trained_digits_model(
            perturb(trained_digits_model, x, y, kind=kind, eps=0.1, alpha=0.1 if kind == "fgsm"
                    else 0.025, random_start=None if kind == "fgsm" else "uniform", generator=g)
        ).argmax(1) == y).float().mean() for kind in ("fgsm", "pgd")}
    assert acc["pgd"] < acc["fgsm"] < 0.9


def test_perturb_rejects_unknown_kind(trained_digits_model, points):
    with pytest.raises(ValueError, match="'pgd' or 'fgsm'"):
        perturb(trained_digits_model, *points, kind="cw")


def test_evaluation_batches_are_large_on_a_gpu_and_unchanged_on_cpu():
    from bench.attacks.evaluate import eval_batch_size

    assert eval_batch_size(torch.device("cpu")) == 500  # keeps CPU results as they were
    assert eval_batch_size(torch.device("cuda")) > 500
