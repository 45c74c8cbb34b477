"""EWS and its ablations: subnets on shared weights, frozen BN statistics, the controller's
policy gradient, the L1/random ablations, spec validation, and a digits grid end to end."""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from bench.api import Batch
from bench.archs import residual_blocks
from bench.archs.preact_resnet import PreActResNet
from bench.archs.resnet import BasicBlock, ResNet
from bench.cli import main
from bench.execute.sequential import run_local
from bench.grid.spec import SpecError, load_spec
from bench.plugins import CompositionError, compose
from bench.results import store
from methods.ews import input_channel_l1, kept, plackett_luce

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second thread only adds contention (and on a shared CPU
    a lot of it), so each test runs on one and restores the session's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def preact(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return PreActResNet((1, 1), (8, 16), 8, in_channels=3, num_classes=10)


def postact(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ResNet(BasicBlock, (1, 1), in_channels=3, num_classes=10, widths=(8, 16))


def modifier(name: str, model: torch.nn.Module, seed: int = 0, **config):
    """The modifier part of ``erm+<name>``, set up on ``model`` as training would."""
    mod = compose(f"erm+{name}", {name: config}).modifiers[0]
    mod.setup(model, device=CPU, seed=seed)
    return mod


def inputs(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()
            if "running_" in k or "num_batches_tracked" in k}


# -- 1. a subnet is a channel mask on the shared weights ---------------------------------------

def test_kept_is_ceil_without_float_error():
    assert kept(10, 0.7) == 7  # 0.7 * 10 == 7.000000000000001 in floating point
    assert kept(16, 0.7) == 12 and kept(128, 0.9) == 116 and kept(3, 0.01) == 1 and kept(5, 1.0) == 5


@pytest.mark.parametrize("build", [preact, postact])
@pytest.mark.parametrize("name", ["ews", "ews_random", "ews_l1"])
def test_subnet_reads_only_its_channels(build, name):
    model = build().eval()
    mod = modifier(name, model, rho=0.7)
    blocks = residual_blocks(model)
    subnet = mod.propose()
    widths = [b.conv2.in_channels for b in blocks]
    assert [len(set(s.tolist())) for s in subnet] == [math.ceil(0.7 * c) for c in widths]

    seen = []
    hooks = [b.conv2.register_forward_hook(lambda _m, args, _out: seen.append(args[0])) for b in blocks]
    x = inputs()
    with mod.active(subnet):
        out = model(x)
    for h in hooks:
        h.remove()
    for keep, conv_in, c in zip(subnet, seen, widths):
        dropped = torch.ones(c, dtype=torch.bool)
        dropped[keep] = False
        assert conv_in[:, dropped].abs().max() == 0  # masked channels reach conv2 as zeros
        assert conv_in[:, keep].abs().sum() > 0

    # The weights reading a dropped channel do not matter to the subnet; a kept one's do.
    conv = blocks[0].conv2
    dropped_c = next(c for c in range(widths[0]) if c not in subnet[0].tolist())
    with torch.no_grad():
        conv.weight[:, dropped_c] += 5.0
    with mod.active(subnet):
        assert torch.equal(model(x), out)
    with torch.no_grad():
        conv.weight[:, subnet[0][0]] += 5.0
    with mod.active(subnet):
        assert not torch.allclose(model(x), out)
    assert not any(b.conv2._forward_pre_hooks for b in blocks)  # masks gone after the pass


# -- 2. subnet passes leave BatchNorm running statistics alone ---------------------------------

@pytest.mark.parametrize("build", [preact, postact])
def test_subnet_pass_does_not_touch_bn_running_stats(build):
    model = build().train()
    mod = modifier("ews_random", model)
    before = bn_buffers(model)
    with mod.active(mod.propose()):
        out = model(inputs())
    out.square().mean().backward()  # the pass's graph is intact: it trains the weights
    assert residual_blocks(model)[0].conv2.weight.grad.abs().sum() > 0
    after = bn_buffers(model)
    assert before.keys() == after.keys() and len(before) > 0
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    model(inputs())  # a normal train-mode pass does update them
    changed = bn_buffers(model)
    assert not all(torch.equal(before[k], changed[k]) for k in before if "running_mean" in k)
    assert all(changed[k] == before[k] + 1 for k in before if "num_batches_tracked" in k)


# -- 3. the controller learns to propose low-accuracy subnets ----------------------------------

def test_plackett_luce_log_prob_sums_to_one_over_draws():
    logits = torch.tensor([0.5, -1.0, 2.0])
    total = sum(plackett_luce(logits, torch.tensor(order))[0].exp()
                for order in itertools.permutations(range(3), 2))
    assert total.item() == pytest.approx(1.0, abs=1e-6)
    # A draw of the first pick alone is an ordinary categorical draw.
    lp, ent = plackett_luce(logits, torch.tensor([2]))
    assert lp.item() == pytest.approx(logits.log_softmax(0)[2].item())
    p = logits.softmax(0)
    assert ent.item() == pytest.approx(-(p * p.log()).sum().item())


def test_policy_gradient_moves_toward_low_accuracy_subnets():
    model = preact()
    ews = modifier("ews", model, rho=0.5, controller_lr=0.01)

    def p_channel0(n: int = 200) -> float:
        with torch.no_grad():
            return sum(bool((ews.propose()[0] == 0).any()) for _ in range(n)) / n

    # Fake accuracy: subnets keeping channel 0 of block 0 are wrong on everything.
    def accuracy(subnet):
        return 0.0 if bool((subnet[0] == 0).any()) else 1.0

    before = p_channel0()
    rewards = [ews.policy_step(accuracy) for _ in range(60)]
    after = p_channel0()
    assert 0.35 < before < 0.65  # k = 4 of 8 channels, near-uniform start
    assert after > 0.9 and after > before + 0.3
    assert sum(rewards[-20:]) / 20 > sum(rewards[:20]) / 20  # reward = −accuracy rises


def test_controller_is_seeded():
    a = modifier("ews", preact(), seed=3)
    b = modifier("ews", preact(), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.propose(), b.propose()))


# -- 4. the ablations ------------------------------------------------------------------------

@pytest.mark.parametrize("keep", ["smallest", "largest"])
def test_l1_keeps_channels_by_weight_norm(keep):
    model = preact()
    with torch.no_grad():
        for block in residual_blocks(model):
            w = block.conv2.weight
            w.copy_(w.sign() * torch.arange(1, w.shape[1] + 1).view(1, -1, 1, 1).float())
    mod = modifier("ews_l1", model, rho=0.5, l1_keep=keep)
    for block, chosen, k in zip(residual_blocks(model), mod.propose(), mod.keep):
        c = block.conv2.in_channels
        want = range(k) if keep == "smallest" else range(c - k, c)
        assert sorted(chosen.tolist()) == list(want)
    assert mod.config.l1_keep == keep


def test_l1_norm_per_input_channel_of_grouped_convs():
    conv = torch.nn.Conv2d(4, 8, 3, groups=2, bias=False)
    expected = torch.stack([conv.weight[4 * (c // 2):4 * (c // 2 + 1), c % 2].abs().sum() for c in range(4)])
    assert torch.allclose(input_channel_l1(conv), expected.detach())
    depthwise = torch.nn.Conv2d(6, 6, 3, groups=6, bias=False)
    assert torch.allclose(input_channel_l1(depthwise), depthwise.weight.detach().abs().sum(dim=(1, 2, 3)))


def test_random_subnets_differ_across_draws_but_are_seeded():
    a, b = modifier("ews_random", preact(), seed=1), modifier("ews_random", preact(), seed=1)
    draws_a = [a.propose() for _ in range(3)]
    draws_b = [b.propose() for _ in range(3)]
    assert all(torch.equal(x, y) for da, db in zip(draws_a, draws_b) for x, y in zip(da, db))
    assert not torch.equal(draws_a[0][0], draws_a[1][0])
    other = modifier("ews_random", preact(), seed=2).propose()
    assert not all(torch.equal(x, y) for x, y in zip(draws_a[0], other))


# -- presets, criterion, what is distilled ---------------------------------------------------

def test_presets_and_overrides():
    paper = compose("pgd_at+ews").modifiers[0].config
    assert (paper.lam, paper.rho, paper.label_smoothing) == (1.0, 0.7, 0.0)
    adv = compose("pgd_at+ews", {"ews": {"preset": "adversarial"}}).modifiers[0].config
    assert (adv.lam, adv.rho, adv.label_smoothing) == (0.1, 0.9, 0.1)
    mixed = compose("pgd_at+ews_l1", {"ews_l1": {"preset": "adversarial", "rho": 0.5}}).modifiers[0].config
    assert (mixed.lam, mixed.rho, mixed.label_smoothing) == (0.1, 0.5, 0.1)
    with pytest.raises(CompositionError, match="preset"):
        compose("erm+ews", {"ews": {"preset": "cifar"}})
    with pytest.raises(CompositionError, match="rhoo"):
        compose("erm+ews", {"ews": {"rhoo": 0.5}})


def test_label_smoothing_replaces_the_criterion():
    logits, y = torch.randn(5, 10), torch.arange(5)
    assert compose("erm+ews").modifiers[0].criterion(None) is None
    crit = compose("erm+ews", {"ews": {"preset": "adversarial"}}).modifiers[0].criterion(None)
    assert torch.allclose(crit(logits, y), F.cross_entropy(logits, y, reduction="none", label_smoothing=0.1))
    with pytest.raises(CompositionError, match="loss criteria"):
        compose("erm+caper+ews")


def test_distillation_inputs_follow_the_base():
    mod = modifier("ews_random", preact())
    x, x_adv, y = inputs(4, 0), inputs(4, 1), torch.arange(4)
    clean_logits, adv_logits = torch.randn(4, 10), torch.randn(4, 10)
    erm = Batch(x=x, y=y, index=y, logits=clean_logits)
    assert [(a is x, b is clean_logits) for a, b in mod.distill_pairs(erm)] == [(True, True)]
    pgd = Batch(x=x, y=y, index=y, x_adv=x_adv, logits=adv_logits)
    assert [(a is x_adv, b is adv_logits) for a, b in mod.distill_pairs(pgd)] == [(True, True)]
    trades = Batch(x=x, y=y, index=y, x_adv=x_adv, logits=clean_logits,
                   extra={"logits_adv": adv_logits})
    pairs = mod.distill_pairs(trades)
    assert [(a is x_adv, b is adv_logits) for a, b in pairs[:1]] == [(True, True)]
    assert pairs[1][0] is x and pairs[1][1] is clean_logits
    no_clean = modifier("ews_random", preact(), clean_term=False)
    assert len(no_clean.distill_pairs(trades)) == 1


# -- 5. spec validation ----------------------------------------------------------------------

def grid(tmp_path, archs, methods, **extra):
    spec = {"name": "ews", "datasets": ["digits"], "archs": archs, "methods": methods,
            "seeds": [0], "budget": {"epochs": 1, "batch_size": 128}, **extra}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path


def test_spec_rejects_ews_without_residual_blocks(tmp_path):
    board = grid(tmp_path, ["preact_resnet18_w16", "small_cnn"], ["erm+dropout", "pgd_at+ews"])
    with pytest.raises(SpecError) as info:
        load_spec(board)
    msg = str(info.value)
    assert "methods[1] (pgd_at+ews) on arch 'small_cnn'" in msg and "residual blocks" in msg
    assert "preact_resnet18_w16" in msg.split("archs with them:")[1]  # names the archs that work
    assert "methods[0]" not in msg and "'preact_resnet18_w16':" not in msg
    assert main(["run", str(board), "--quiet"]) == 2


def test_spec_accepts_ews_on_residual_archs(tmp_path):
    board = grid(tmp_path, ["preact_resnet18_w16", "resnet18"],
                 ["pgd_at+ews", "erm+ews_random", "pgd_at+ews_l1", "erm+dropout"])
    assert len(load_spec(board).methods) == 4


def test_runner_refuses_a_grid_that_skipped_validation(tmp_path):
    from bench.grid.spec import GridSpec
    from bench.work import train as runner
    from bench.work.kinds import expand

    spec = GridSpec(name="x", datasets=["digits"], archs=["small_cnn"], methods=["erm+ews"],
                    budget={"epochs": 1, "batch_size": 128})  # built directly: not validated
    with pytest.raises(ValueError, match="arch 'small_cnn': ews needs residual blocks"):
        runner.run_train_cell(expand(spec).train[0], tmp_path)


# -- 6. end to end on digits -----------------------------------------------------------------

PGD = {"steps": 2}
E2E_METHODS = [
    {"name": "erm"},
    {"name": "pgd_at", "config": PGD},
    {"name": "trades", "config": PGD},
    {"name": "pgd_at+ews", "config": {"pgd_at": PGD, "ews": {"interval": 3}}},  # once an epoch
    {"name": "trades+ews", "config": {"trades": PGD, "ews": {"preset": "adversarial", "clean_term": True}}},
    {"name": "erm+ews_random"},
    {"name": "pgd_at+ews_l1", "config": {"pgd_at": PGD}},
]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    board = grid(tmp_path_factory.mktemp("ews"), ["preact_resnet18_w16"], E2E_METHODS,
                 train_threat={"norm": "Linf", "eps": 0.1}, threads=1,
                 attacks=[{"name": "fgsm", "norm": "Linf", "eps": 0.1, "n_eval": 50}])
    spec = yaml.safe_load((board / "grid.yaml").read_text())
    spec["budget"] = {"epochs": 2, "batch_size": 128, "val_size": 100, "train_size": 300}
    (board / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    # the methods under test, not the sandbox (tests/test_integrity.py): in this process
    report = run_local(load_spec(board), board / "results", show_progress=False,
                       sandbox=False)
    assert not report.failed, report.failed
    return {t: store.read_table(board / "results", t) for t in ("runs", "history", "robustness")}


def test_e2e_every_ews_composition_trains(e2e):
    runs = e2e["runs"].set_index("method")
    assert set(runs.index) == {m["name"] for m in E2E_METHODS}
    assert (runs["status"] == "ok").all()
    assert runs["clean_acc"].between(0, 1).all() and runs["clean_acc"].notna().all()
    assert len(e2e["robustness"]) == len(E2E_METHODS)
    trades_ews = json.loads(runs.loc["trades+ews", "method_config"])["ews"]
    assert (trades_ews["lam"], trades_ews["rho"], trades_ews["label_smoothing"]) == (0.1, 0.9, 0.1)


def test_e2e_subnet_passes_are_charged(e2e):
    flops = e2e["runs"].set_index("method")["train_flops"]
    for with_ews, base in [("pgd_at+ews", "pgd_at"), ("trades+ews", "trades"),
                           ("erm+ews_random", "erm"), ("pgd_at+ews_l1", "pgd_at")]:
        assert flops[with_ews] > 1.1 * flops[base], (with_ews, flops[with_ews] / flops[base])
    # TRADES+EWS distils on clean and adversarial inputs: two subnet passes per step.
    assert flops["trades+ews"] - flops["trades"] > 1.5 * (flops["pgd_at+ews_l1"] - flops["pgd_at"])


def test_e2e_logs_subnet_fields(e2e):
    runs, hist = e2e["runs"].set_index("method"), e2e["history"]
    for method in ("pgd_at+ews", "trades+ews", "erm+ews_random", "pgd_at+ews_l1"):
        rows = hist[hist["run_id"] == runs.loc[method, "run_id"]]
        assert len(rows) == 2
        extras = [json.loads(e) for e in rows.sort_values("epoch")["extra"]]
        for extra in extras:
            assert 0 <= extra["ews_subnet_acc"] <= 1 and extra["ews_kl"] >= 0
        assert ("ews_reward" in extras[0]) == method.endswith("+ews")  # the controller's updates
    pgd_ews = hist[hist["run_id"] == runs.loc["pgd_at+ews", "run_id"]]
    assert all(-1 <= json.loads(e)["ews_reward"] <= 0 for e in pgd_ews["extra"])
