"""ADMM pruning: the projections, the Z/U/ρ updates, the hard-prune + masked-retrain
phases, the charged natural pass, and the end-to-end tables with dense and sparse latency.
Sparse execution itself is tested in test_latency.py."""
from __future__ import annotations

import math

import pytest
import torch
import yaml
from conftest import tiny_cnn

from bench.api import Budget, ThreatModel, TrainContext
from bench.attacks import perturb
from bench.execute.sequential import run_local
from bench.grid.spec import load_spec
from bench.plugins import CompositionError, compose
from bench.results import store
from bench.work.loop import train
from methods.admm_prune import (
    ADMMState,
    SparsitySet,
    admm_epochs,
    funnel_counts,
    prunable_layers,
)

N_TRAIN, N_VAL = 256, 64
SHAPES = [torch.Size([16, 1, 3, 3]), torch.Size([32, 16, 3, 3]), torch.Size([10, 512])]


def random_weights(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in SHAPES]


def kept(mask: torch.Tensor) -> int:
    return int(mask.sum())


def kept_filters(mask: torch.Tensor) -> int:
    return int(mask.flatten(1).any(1).sum())


# -- 1. projections ------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_irregular_keeps_fraction_per_layer(keep):
    weights = random_weights()
    s = SparsitySet.for_shapes("irregular", SHAPES, keep)
    for w, m, p in zip(weights, s.masks(weights), s.project(weights)):
        assert kept(m) == math.floor(keep * w.numel() + 0.5)
        # the kept entries are the largest in magnitude, and projection zeroes the rest
        assert w[m].abs().min() >= w[~m].abs().max()
        assert torch.equal(p, w * m)


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_filter_keeps_whole_filters_of_largest_norm(keep):
    weights = random_weights()
    for w, m in zip(weights, SparsitySet.for_shapes("filter", SHAPES, keep).masks(weights)):
        rows = m.flatten(1)
        assert (rows.all(1) | ~rows.any(1)).all()  # whole filters only
        assert kept_filters(m) == max(1, math.floor(keep * w.shape[0] + 0.5))
        norms = w.flatten(1).norm(dim=1)
        assert norms[rows.all(1)].min() >= norms[~rows.any(1)].max()


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_funnel_hits_overall_fraction_and_prunes_deeper_more(keep):
    weights = random_weights()
    total = sum(w.numel() for w in weights)
    masks = SparsitySet.for_shapes("funnel", SHAPES, keep).masks(weights)
    assert sum(kept(m) for m in masks) == math.floor(keep * total + 0.5)
    fractions = [kept(m) / m.numel() for m in masks]
    assert fractions == sorted(fractions, reverse=True) and fractions[0] > fractions[-1]


def test_funnel_rule_is_linear_in_depth():
    counts = funnel_counts([1000, 1000, 1000], keep=0.5, spread=0.5)
    # slopes 1.5, 1, 0.5 with c = 0.5: keep fractions 0.75, 0.5, 0.25
    assert counts == [750, 500, 250]


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_redundant_keeps_filter_fraction(keep):
    weights = random_weights()
    for w, m in zip(weights, SparsitySet.for_shapes("redundant", SHAPES, keep).masks(weights)):
        assert kept_filters(m) == max(1, math.floor(keep * w.shape[0] + 0.5))
        assert kept(m) == kept_filters(m) * w[0].numel()


def test_redundant_drops_planted_duplicate_first():
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    w[6] = w[2] * 0.999  # a near-copy of filter 2, slightly weaker
    w[3] *= 0.01  # a weak but distinct filter: magnitude pruning would drop it first
    s = SparsitySet("redundant", (7,))
    dropped = (~s.masks([w])[0].flatten(1).any(1)).nonzero().flatten().tolist()
    assert dropped == [6]
    assert (~SparsitySet("filter", (7,)).masks([w])[0].flatten(1).any(1)).nonzero().item() == 3


# -- 2. Z/U/ρ updates ----------------------------------------------------------------------

def test_admm_updates_follow_ye_et_al():
    w = torch.tensor([3.0, -1.0, 0.5, 2.0])
    admm = ADMMState([w], SparsitySet("irregular", (2,)), rho=1e-3, rho_growth=1.3)
    assert torch.equal(admm.z[0], torch.tensor([3.0, 0.0, 0.0, 2.0]))  # Z0 = Π(W0)
    assert torch.equal(admm.u[0], torch.zeros(4))
    assert admm.penalty([w]).item() == pytest.approx(1e-3 / 2 * (1 + 0.25))

    w1 = torch.tensor([2.0, -1.5, 0.5, 1.0])
    admm.update([w1])  # Z = Π(W1 + 0) = [2, -1.5, 0, 0]; U = W1 − Z = [0, 0, .5, 1]
    assert admm.rho == pytest.approx(1.3e-3)
    assert torch.allclose(admm.z[0], torch.tensor([2.0, -1.5, 0.0, 0.0]))
    assert torch.allclose(admm.u[0], torch.tensor([0.0, 0.0, 0.5, 1.0]))

    w2 = torch.tensor([1.2, -0.5, 0.5, 1.0])
    admm.update([w2])  # W2 + U = [1.2, -.5, 1, 2] -> Z = [1.2, 0, 0, 2]
    assert admm.rho == pytest.approx(1e-3 * 1.3 ** 2)
    assert torch.allclose(admm.z[0], torch.tensor([1.2, 0.0, 0.0, 2.0]))
    # U accumulates W − Z: [0, 0, .5, 1] + ([1.2, -.5, .5, 1] − [1.2, 0, 0, 2])
    assert torch.allclose(admm.u[0], torch.tensor([0.0, -0.5, 1.0, 0.0]))
    assert admm.updates == 2
    residual = torch.tensor([0.0, -0.5, 0.5, -1.0]).norm() / w2.norm()
    assert admm.residual([w2]) == pytest.approx(residual.item())


def test_admm_phase_length():
    assert [admm_epochs(e, 0.6) for e in (1, 2, 5, 10)] == [1, 1, 3, 6]
    assert admm_epochs(4, 1.0) == 4


def test_prunable_layer_choice():
    model = tiny_cnn()
    names = lambda **kw: [n for n, _ in prunable_layers(model, **kw)]  # noqa: E731
    assert names(first_conv=True, classifier=True) == ["0", "2", "5"]
    assert names(first_conv=False, classifier=False) == ["2"]


# -- 3, 4. training through the engine ----------------------------------------------------

def make_ctx(digits_tensors, epochs: int) -> TrainContext:
    x, y, _, _ = digits_tensors
    torch.manual_seed(0)
    return TrainContext(
        model=tiny_cnn(), train_x=x[:N_TRAIN], train_y=y[:N_TRAIN],
        val_x=x[N_TRAIN:N_TRAIN + N_VAL], val_y=y[N_TRAIN:N_TRAIN + N_VAL], num_classes=10,
        budget=Budget(epochs, 64), threat=ThreatModel("Linf", 0.1), device=torch.device("cpu"),
        seed=0, generator=torch.Generator().manual_seed(0), attack=perturb)


def run(digits_tensors, epochs=3, **admm):
    comp = compose("pgd_at+admm_prune", {"pgd_at": {"steps": 1}, "admm_prune": admm})
    ctx = make_ctx(digits_tensors, epochs)
    return train(comp.base, comp.modifiers, ctx), ctx, comp.modifiers[0]


@pytest.mark.parametrize("scheme", ["irregular", "filter"])
def test_mask_holds_exactly_after_masked_retraining(digits_tensors, scheme):
    stats, ctx, mod = run(digits_tensors, epochs=3, keep=0.1, scheme=scheme)
    assert mod.admm_epochs == 2  # round(0.6·3): one epoch of masked retraining
    for w, m in zip(mod.weights, mod.masks):
        assert torch.equal(w.detach() != 0, m)  # pruned exactly zero, survivors alive
    rows = ctx.tables["layer_sparsity"]
    assert [r["layer"] for r in rows] == [n for n, _ in mod.layers]
    assert [r["nonzero"] for r in rows] == [kept(m) for m in mod.masks]
    total = sum(r["params"] for r in rows)
    zeros = total - sum(r["nonzero"] for r in rows)
    assert ctx.run_fields["sparsity"] == pytest.approx(zeros / total)
    assert ctx.run_fields["sparsity"] >= 0.85
    # ADMM epochs log the residual, ρ and the updates; retraining epochs do not
    admm_rows, retrain_row = stats.history[:2], stats.history[2]
    assert admm_rows[-1]["admm_updates"] == mod.admm.updates > admm_rows[0]["admm_updates"] >= 1
    assert admm_rows[-1]["admm_rho"] == pytest.approx(1e-3 * 1.3 ** mod.admm.updates)
    assert all(0 <= r["admm_residual"] for r in admm_rows) and "admm_rho" not in retrain_row


def test_update_schedule_spreads_updates_over_phase(digits_tensors):
    # 256 samples / 64 = 4 steps per epoch; 2 ADMM epochs = 8 steps; 4 updates: every 2 steps
    stats, _, mod = run(digits_tensors, epochs=3, updates=4)
    assert mod.admm.updates == 4
    assert [r["admm_updates"] for r in stats.history[:2]] == [2, 4]


def test_natural_pass_is_charged(digits_tensors):
    with_nat, _, _ = run(digits_tensors, epochs=1, natural_weight=0.1)
    without, _, _ = run(digits_tensors, epochs=1, natural_weight=0.0)
    assert with_nat.train_samples == without.train_samples
    # PGD-1 + training step ≈ 2 + 3 forward costs; the clean pass adds ≈ 3 (no input grad)
    extra = with_nat.train_flops / without.train_flops
    assert 1.3 < extra < 1.7


def test_needs_an_adversarial_base():
    with pytest.raises(CompositionError, match="admm_prune needs adversarial examples"):
        compose("erm+admm_prune")


def test_config_rejects_unknown_keys():
    with pytest.raises(CompositionError, match="allowed options"):
        compose("pgd_at+admm_prune", {"admm_prune": {"keep_ratio": 0.5}})


# -- 5. end to end ---------------------------------------------------------------------------

GRID = {
    "name": "admm",
    "datasets": ["digits"],
    "archs": ["small_cnn"],
    "methods": [
        {"name": "pgd_at+admm_prune", "label": "admm-50",
         "config": {"pgd_at": {"steps": 2}, "admm_prune": {"keep": 0.5}}},
        {"name": "pgd_at+admm_prune", "label": "admm-filter-10",
         "config": {"pgd_at": {"steps": 2}, "admm_prune": {"keep": 0.1, "scheme": "filter"}}},
    ],
    "train_threat": {"norm": "Linf", "eps": 0.1},
    "attacks": [{"name": "fgsm", "norm": "Linf", "eps": 0.1}],
    "hardware": ["cpu-1t"],
    "budget": {"epochs": 5, "batch_size": 128, "n_eval": 50, "train_size": 300},
    "threads": 1,
}


def test_end_to_end_on_digits(tmp_path):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    results = tmp_path / "results"
    report = run_local(load_spec(tmp_path / "grid.yaml"), results, show_progress=False)
    assert not report.failed, report.failed
    runs = store.read_table(results, "runs").set_index("method")
    assert (runs["status"] == "ok").all()
    assert runs.loc["admm-50", "sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert runs.loc["admm-filter-10", "sparsity"] == pytest.approx(0.9, abs=0.01)
    assert (runs["nonzero_params"] < runs["params"]).all()
    layers = store.read_table(results, "layer_sparsity")
    per_run = layers.groupby("run_id").size()
    assert per_run[runs.loc["admm-50", "run_id"]] == 4  # 3 convs + classifier
    assert per_run[runs.loc["admm-filter-10", "run_id"]] == 3  # convs only
    # every zero the runner counts is a pruned weight of a listed layer
    pruned = (layers["params"] - layers["nonzero"]).groupby(layers["run_id"]).sum()
    assert (runs["params"] - runs["nonzero_params"]).tolist() == pruned[runs["run_id"]].tolist()
    assert len(store.read_table(results, "robustness")) == 2
    lat = store.read_table(results, "latency")
    assert set(lat["execution"]) == {"dense", "sparse"}
    for run_id in runs["run_id"]:
        mine = lat[lat["run_id"] == run_id]
        assert sorted(mine["execution"]) == ["dense", "dense", "sparse", "sparse"]
        measured = mine["latency_ms_p50"].notna() | mine["skipped_reason"].notna()
        assert measured.all()
