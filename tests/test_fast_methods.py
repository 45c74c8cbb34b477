"""The fast adversarial-training baselines (FGSM, N-FGSM, GradAlign, ATAS), MART and AWP:
each one's defining mechanism on a tiny model, the loop's ``after_attack`` hook AWP uses,
and (slow) a digits grid through the executor. Each also trains for three short epochs in
tests/test_meter_memo.py and tests/test_resume.py (tests/method_cases.py): its FLOP
declaration audited and its resume checked bit for bit."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import tiny_cnn

from bench.api import Batch, Budget, Modifier, ThreatModel, TrainContext
from bench.archs.preact_resnet import PreActResNet
from bench.attacks import perturb
from bench.execute.sequential import run_local
from bench.grid.spec import load_spec
from bench.plugins import compose
from bench.results import store
from bench.work.loop import train
from methods.atas import adaptive_steps
from methods.awp import perturbed_parameters, weight_perturbation
from methods.gradalign import alignment_penalty, input_gradient
from methods.mart import mart_loss
from methods.n_fgsm import noise_fgsm

pytestmark = pytest.mark.usefixtures("one_thread")
EPS = 0.1


def make_ctx(digits_tensors, *, n=200, epochs=1, batch_size=100, model=None, seed=0) -> TrainContext:
    x, y, _, _ = digits_tensors
    torch.manual_seed(seed)
    return TrainContext(
        model=model if model is not None else tiny_cnn(), train_x=x[:n], train_y=y[:n],
        val_x=x[n:n + 100], val_y=y[n:n + 100], num_classes=10,
        budget=Budget(epochs, batch_size), threat=ThreatModel("Linf", EPS),
        device=torch.device("cpu"), seed=seed, generator=torch.Generator().manual_seed(seed),
        attack=perturb, log=lambda **kw: None)


def run(name, digits_tensors, config=None, **kw):
    comp = compose(name, config)
    ctx = make_ctx(digits_tensors, **kw)
    return train(comp.base, comp.modifiers, ctx), ctx, comp


def preact(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return PreActResNet((1, 1), (8, 16), 8, in_channels=1, num_classes=10)


def batch_of(ctx: TrainContext, n: int = 32) -> Batch:
    return Batch(x=ctx.train_x[:n], y=ctx.train_y[:n], index=torch.arange(n))


# -- fgsm ---------------------------------------------------------------------------------

def test_fgsm_has_zero_init_and_steps_to_the_eps_corner(digits_tensors):
    base = compose("fgsm").base
    ctx = make_ctx(digits_tensors)
    first, second = batch_of(ctx), batch_of(ctx)
    base.loss(ctx, first)
    torch.rand(5, generator=ctx.generator)  # another generator state: nothing random is used
    base.loss(ctx, second)
    assert torch.equal(first.x_adv, second.x_adv)
    # x_adv = clip(x + ε·sign ∇ℓ(x)): ±ε wherever the box does not cut it
    grad = input_gradient(ctx.model, first.x, first.y, torch.zeros_like(first.x), create_graph=False)
    assert torch.equal(first.x_adv, (first.x + EPS * grad.sign()).clamp(0, 1))
    # Fast-AT's random start gives two different examples
    fast = compose("fast_at").base
    a, b = batch_of(ctx), batch_of(ctx)
    fast.loss(ctx, a)
    fast.loss(ctx, b)
    assert not torch.equal(a.x_adv, b.x_adv)


def test_fgsm_clean_weight_mixes_goodfellow_objective(digits_tensors):
    ctx = make_ctx(digits_tensors)
    batch = batch_of(ctx)
    adv_only = compose("fgsm").base.loss(ctx, batch)
    mixed = compose("fgsm", {"clean_weight": 0.5}).base.loss(ctx, batch)
    clean = F.cross_entropy(ctx.model(batch.x), batch.y)
    assert mixed.item() == pytest.approx(0.5 * clean.item() + 0.5 * adv_only.item(), rel=1e-5)


# -- n_fgsm -------------------------------------------------------------------------------

def test_n_fgsm_perturbation_exceeds_eps_and_is_cut_only_to_the_box(digits_tensors):
    ctx = make_ctx(digits_tensors)
    x, y = ctx.train_x[:64], ctx.train_y[:64]
    x_adv = noise_fgsm(ctx.model, x, y, eps=EPS, noise_ratio=2.0, step_ratio=1.0, clip_ratio=None,
                       generator=torch.Generator().manual_seed(3))
    dist = (x_adv - x).abs()
    assert dist.max() > 2 * EPS  # far outside the ε-ball: noise up to 2ε plus a step of ε
    assert dist.max() <= 3 * EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # The same draw, replayed: x_adv − x − η is a step of exactly ±ε where the box is not hit.
    eta = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) - 1) * 2 * EPS
    eta = (x + eta).clamp(0, 1) - x
    inside = (x_adv > 0) & (x_adv < 1)
    step = (x_adv - x - eta)[inside].abs()
    assert torch.allclose(step, torch.full_like(step, EPS), atol=1e-6)
    # With the code's --clip 1, it is Fast-AT's projection again.
    clipped = noise_fgsm(ctx.model, x, y, eps=EPS, noise_ratio=2.0, step_ratio=1.0, clip_ratio=1.0,
                         generator=torch.Generator().manual_seed(3))
    assert (clipped - x).abs().max() <= EPS + 1e-6


def test_n_fgsm_refuses_l2(digits_tensors):
    ctx = make_ctx(digits_tensors)
    ctx.threat = ThreatModel("L2", 1.0)
    with pytest.raises(ValueError, match="Linf"):
        compose("n_fgsm").base.loss(ctx, batch_of(ctx))


# -- gradalign ----------------------------------------------------------------------------

def test_alignment_penalty_is_zero_when_aligned_and_positive_otherwise():
    g = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert alignment_penalty(g, g).item() == pytest.approx(0.0, abs=1e-6)
    assert alignment_penalty(g, 3 * g).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert alignment_penalty(g, -g).item() == pytest.approx(2.0, abs=1e-6)
    other = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert 0.5 < alignment_penalty(g, other).item() < 1.5  # near-orthogonal in 16 dims
    # A point whose gradient is zero is left out (the authors' grads_nnz_idx).
    h = g.clone()
    h[0] = 0
    assert alignment_penalty(g, torch.cat([-g[:1], g[1:]])).item() > 0.3
    assert alignment_penalty(h, torch.cat([-g[:1], g[1:]])).item() == pytest.approx(0.0, abs=1e-6)


def test_gradalign_penalty_trains_the_weights_through_double_backprop(digits_tensors):
    ctx = make_ctx(digits_tensors)
    x, y = ctx.train_x[:16], ctx.train_y[:16]
    g1 = input_gradient(ctx.model, x, y, torch.zeros_like(x), create_graph=False)
    eta = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 1) * EPS
    g2 = input_gradient(ctx.model, x, y, eta, create_graph=True)
    penalty = alignment_penalty(g1.detach(), g2)
    assert penalty.item() > 0
    weight = ctx.model[0].weight
    (grad,) = torch.autograd.grad(penalty, weight)
    assert grad.abs().sum() > 0  # only a second-order path reaches the weights


def test_gradalign_step_costs_more_than_fast_at_and_logs_the_penalty(digits_tensors):
    logged = {}
    fast, _, _ = run("fast_at", digits_tensors)
    comp = compose("gradalign")
    ctx = make_ctx(digits_tensors)
    ctx.log = lambda **kw: logged.update(kw)
    ga = train(comp.base, comp.modifiers, ctx)
    per_fast, per_ga = fast.train_flops / fast.train_samples, ga.train_flops / ga.train_samples
    # Fast-AT: FGSM + step ≈ 5 forwards; GradAlign adds a forward, its backward and the
    # double backward through it: well over 2× Fast-AT's, and charged.
    assert per_ga > 2 * per_fast
    assert 0 <= logged["gradalign_penalty"] <= 2


# -- atas ---------------------------------------------------------------------------------

def test_atas_step_size_formula():
    c, eps = 0.01, 0.1
    kw = {"beta": 0.5, "c": c, "eps": eps, "step_ratio": 2.0, "min_ratio": 0.5, "max_ratio": 1.75}
    # v ← 0.5·0 + 0.5·2c² = c², so √v/c = 1 and α = 2ε/2 = ε
    steps, v = adaptive_steps(torch.tensor([2 * c * c, 0.0, 1e6]), torch.zeros(3), **kw)
    assert v.tolist() == pytest.approx([c * c, 0.0, 5e5])
    assert steps.tolist() == pytest.approx([eps, 1.75 * eps, 0.5 * eps])  # clipped at both ends
    # the moving average remembers: a zero gradient after a large one still gives a small step
    steps, _ = adaptive_steps(torch.tensor([0.0]), torch.tensor([1e6]), **kw)
    assert steps.item() == pytest.approx(0.5 * eps)


def test_atas_carries_each_samples_perturbation_and_resets_it(digits_tensors):
    comp = compose("atas", {"reset": 2, "warmup": 1})
    base = comp.base
    draws = []
    original_draw = base._draw

    def spy_draw(ctx_, eps):
        draws.append(ctx_.epoch)
        return original_draw(ctx_, eps)

    steps = []
    original_loss = base.loss

    def spy_loss(ctx_, batch):
        before = None if base.delta is None else base.delta[batch.index].clone()
        loss = original_loss(ctx_, batch)
        steps.append((ctx_.epoch, batch.index.clone(), before, batch.x_adv - batch.x,
                      base.v.clone()))
        return loss

    base._draw, base.loss = spy_draw, spy_loss
    train(base, comp.modifiers, make_ctx(digits_tensors, epochs=4))
    # Drawn at the start, then at every 2nd epoch counted from 1, but never the last.
    assert draws == [0, 1]
    left: dict[int, dict[int, torch.Tensor]] = {}
    for epoch, index, before, delta, v in steps:
        assert delta.abs().max() <= EPS + 1e-6  # projected to the ε-ball, unlike N-FGSM
        left.setdefault(epoch, {}).update({int(i): d for i, d in zip(index, delta)})
        if epoch == 0:
            assert (v == 0).all()  # warm-up: constant step, the averages wait
        if epoch in (2, 3):  # no reset: each sample starts where the previous epoch left it
            for i, b in zip(index, before):
                assert torch.equal(b, left[epoch - 1][int(i)])
    for i, d in left[3].items():
        assert torch.equal(base.delta[i], d)
    assert (base.v > 0).all()


# -- mart ---------------------------------------------------------------------------------

def test_mart_loss_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 1.5]])
    logits_adv = torch.tensor([[0.5, 1.5, 0.0], [1.0, 0.0, 0.2]])
    # example 0: the adversarial top class is wrong and is the one boosted; example 1:
    # the top class is y, so the runner-up is
    y = torch.tensor([0, 0])
    beta = 6.0
    total = 0.0
    for i in range(2):
        p = [math.exp(v) for v in logits[i].tolist()]
        p = [v / sum(p) for v in p]
        q = [math.exp(v) for v in logits_adv[i].tolist()]
        q = [v / sum(q) for v in q]
        t = int(y[i])
        wrong = max((k for k in range(3) if k != t), key=lambda k: q[k])
        bce = -math.log(q[t]) - math.log(1.0001 - q[wrong] + 1e-12)
        kl = sum(p[k] * (math.log(p[k]) - math.log(q[k] + 1e-12)) for k in range(3))
        total += bce + beta * kl * (1.0000001 - p[t])
    assert mart_loss(logits, logits_adv, y, beta).item() == pytest.approx(total / 2, rel=1e-5)


def test_mart_keeps_clean_and_adversarial_logits_like_trades(digits_tensors):
    ctx = make_ctx(digits_tensors)
    batch = batch_of(ctx)
    loss = compose("mart", {"steps": 2}).base.loss(ctx, batch)
    assert batch.logits.shape == batch.extra["logits_adv"].shape == (32, 10)
    assert torch.allclose(batch.logits, ctx.model(batch.x))  # clean logits, train mode
    assert (batch.x_adv - batch.x).abs().max() <= EPS + 1e-6
    expected = mart_loss(batch.logits, batch.extra["logits_adv"], batch.y, 6.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# -- awp ----------------------------------------------------------------------------------

def test_weight_perturbation_is_gamma_times_the_layer_norm_along_the_gradient():
    w = [torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.randn(2, 2)]
    g = [torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), None]
    w[0][0, 0] = 0.0  # a pruned weight
    v = weight_perturbation(w, g, 0.01)
    assert v[0].norm().item() == pytest.approx(0.01 * w[0].norm().item(), rel=1e-5)
    assert v[0][0, 0] == 0
    masked = g[0].clone()
    masked[0, 0] = 0
    assert F.cosine_similarity(v[0].flatten(), masked.flatten(), dim=0).item() == pytest.approx(1.0)
    assert torch.equal(v[1], torch.zeros(2, 2))  # no gradient, no perturbation
    model = preact()
    chosen = {id(p) for p in perturbed_parameters(model)}
    for name, p in model.named_parameters():
        assert (id(p) in chosen) == (p.dim() > 1 and name.endswith("weight")), name


class StepSpy(Modifier):
    """Test-only, listed before AWP: the weights the optimizer steps from (``before_step``)
    and the ones it leaves (``after_step``, before AWP's own)."""

    name = "_test_step_spy"

    def __init__(self):
        self.at_step, self.stepped = [], []

    def before_step(self, ctx, batch):
        self.at_step.append([p.detach().clone() for p in ctx.model.parameters()])

    def after_step(self, ctx, batch):
        self.stepped.append([p.detach().clone() for p in ctx.model.parameters()])


def one_step(name, digits_tensors, config, spy=None):
    """One optimizer step (one batch, one epoch) of ``name`` on a BatchNorm net."""
    comp = compose(name, config)
    ctx = make_ctx(digits_tensors, n=64, batch_size=64, model=preact())
    start = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    train(comp.base, [*([spy] if spy else []), *comp.modifiers], ctx)
    return start, ctx.model.state_dict()


SGD = {"steps": 2, "momentum": 0, "weight_decay": 0, "schedule": "constant"}


def test_awp_steps_from_perturbed_weights_and_restores_them(digits_tensors):
    spy = StepSpy()
    start, end = one_step("pgd_at+awp", digits_tensors, {"pgd_at": SGD, "awp": {"gamma": 0.01}}, spy)
    _, plain_end = one_step("pgd_at", digits_tensors, SGD)
    chosen = {n for n, p in preact().named_parameters() if p.dim() > 1 and n.endswith("weight")}
    names = [n for n, _ in preact().named_parameters()]
    assert len(chosen) >= 5
    for name, at_step, stepped in zip(names, spy.at_step[0], spy.stepped[0]):
        v = at_step - start[name]
        if name in chosen:  # the optimizer stepped from w + v, ‖v‖ = γ‖w‖ ...
            assert v.norm().item() == pytest.approx(0.01 * start[name].norm().item(), rel=1e-4)
        else:
            assert torch.equal(v, torch.zeros_like(v))
        # ... and AWP's after_step removed v from the stepped weights, keeping the update
        assert torch.allclose(end[name], stepped - v, atol=1e-7)
    # The update differs from PGD-AT's: the gradient was taken at w + v.
    assert any(not torch.allclose(end[n], plain_end[n]) for n in chosen)


def test_awp_leaves_batchnorm_statistics_to_the_training_pass(digits_tensors):
    _, tiny = one_step("pgd_at+awp", digits_tensors, {"pgd_at": SGD, "awp": {"gamma": 1e-9}})
    _, plain = one_step("pgd_at", digits_tensors, SGD)
    stats = [k for k in plain if "running" in k or "num_batches" in k]
    assert stats
    for k in stats:  # one update of the running statistics, not two
        assert torch.allclose(tiny[k].float(), plain[k].float(), atol=1e-5), k


def test_awp_with_gamma_zero_is_plain_pgd_at(digits_tensors):
    _, off = one_step("pgd_at+awp", digits_tensors, {"pgd_at": SGD, "awp": {"gamma": 0}})
    _, plain = one_step("pgd_at", digits_tensors, SGD)
    assert all(torch.equal(off[k], plain[k]) for k in plain)


def test_awp_refuses_a_base_that_crafts_without_ctx_attack(digits_tensors):
    with pytest.raises(RuntimeError, match="ctx.attack"):
        run("n_fgsm+awp", digits_tensors)


def test_awp_warmup_skips_the_ascent_and_its_cost(digits_tensors):
    warm, _, _ = run("pgd_at+awp", digits_tensors, {"pgd_at": {"steps": 2}, "awp": {"warmup": 1}},
                     epochs=2)
    plain, _, _ = run("pgd_at", digits_tensors, {"steps": 2}, epochs=2)
    full, _, _ = run("pgd_at+awp", digits_tensors, {"pgd_at": {"steps": 2}}, epochs=2)
    assert warm.history[0]["flops_so_far"] == plain.history[0]["flops_so_far"]  # no ascent yet
    assert plain.train_flops < warm.train_flops < full.train_flops


# -- the loop's after_attack hook ---------------------------------------------------------

class AttackSpy(Modifier):
    """Test-only: what ``after_attack`` sees, and a replayed objective inside it."""

    name = "_test_attack_spy"
    requires_adversarial = True

    def __init__(self):
        self.seen = []

    def after_attack(self, ctx, batch, x_adv):
        calls = []
        attack = ctx.attack
        ctx.attack = lambda *a, **k: calls.append(1) or attack(*a, **k)
        replay = Batch(x=batch.x, y=batch.y, index=batch.index, x_adv=x_adv)
        loss = ctx.step_loss(replay)
        ctx.attack = attack
        self.seen.append((ctx.step, x_adv, loss.item(), len(calls)))

    def after_step(self, ctx, batch):
        assert torch.equal(batch.x_adv, self.seen[-1][1])


def test_after_attack_runs_once_per_step_and_step_loss_replays_the_examples(digits_tensors):
    comp = compose("pgd_at", {"steps": 2})
    spy = AttackSpy()
    ctx = make_ctx(digits_tensors, epochs=2)
    stats = train(comp.base, [spy], ctx)
    assert [s[0] for s in spy.seen] == list(range(4))  # 2 epochs × 2 batches
    assert all(calls == 0 for *_, calls in spy.seen)  # the replay attacked nothing
    assert all(math.isfinite(loss) for _, _, loss, _ in spy.seen)
    assert ctx.attack is perturb  # unwrapped after every step
    assert stats.train_samples == 400


# -- end to end through the executor ------------------------------------------------------

FAST = [
    {"name": "fast_at"},
    {"name": "fgsm"},
    {"name": "n_fgsm"},
    {"name": "gradalign"},
    {"name": "atas"},
    {"name": "mart", "config": {"steps": 2}},
    {"name": "pgd_at+awp", "config": {"pgd_at": {"steps": 2}}},
    {"name": "trades+awp", "config": {"trades": {"steps": 2}}},
]


@pytest.fixture(scope="module")
def grid_results(tmp_path_factory):
    board = tmp_path_factory.mktemp("fast_methods")
    grid = {
        "name": "fast_methods", "datasets": ["digits"], "archs": ["small_cnn"], "methods": FAST,
        "train_threat": {"norm": "Linf", "eps": EPS},
        "attacks": [{"name": "fgsm", "norm": "Linf", "eps": EPS, "n_eval": 50}],
        "checks": {"enabled": False}, "seeds": [0],
        "budget": {"epochs": 1, "batch_size": 100, "val_size": 50, "train_size": 200, "n_eval": 50},
    }
    (board / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    report = run_local(load_spec(board), board / "results", show_progress=False, sandbox=False)
    assert not report.failed, report.failed
    return {t: store.read_table(board / "results", t) for t in ("runs", "robustness", "history")}


@pytest.mark.slow  # a minute on 2 shared cores; each method's fast smoke run is in method_cases
def test_every_fast_method_trains_and_is_evaluated(grid_results):
    runs = grid_results["runs"].set_index("method")
    assert set(runs.index) == {m["name"] for m in FAST}
    assert (runs["status"] == "ok").all() and runs["clean_acc"].between(0, 1).all()
    assert (runs["train_samples"] == 200).all()
    assert len(grid_results["robustness"]) == len(FAST)
    per = runs["train_flops"] / runs["train_samples"]
    # one FGSM step each: the same cost; GradAlign's double backprop and AWP's ascent cost more
    assert per["fgsm"] == per["fast_at"] == per["n_fgsm"] == per["atas"]
    assert per["gradalign"] > 2 * per["fast_at"]
    assert per["pgd_at+awp"] > per["fast_at"] and per["trades+awp"] > per["pgd_at+awp"]
