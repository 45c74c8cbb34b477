"""Evaluation depth beyond one attack: ε sweeps, corruptions, transfer attacks and checks.

Each function runs one cell (or, for transfer, every pending target of one source) and
returns rows for its table; the executor writes them. Like ``bench.work.runner`` every cell
sets its thread count and seeds, and evaluates the nested subsets of the test split.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from bench.grid.cells import CorruptionCell, SweepCell, TrainCell, TransferCell
from bench.results.provenance import default_device, load_avg
from bench.work.runner import eval_subset, load_trained, now, threads

# One seed for every generated corruption: each run of a grid sees the very same corrupted
# images, so corruption accuracies (and mCE ratios) compare models, not noise draws.
CORRUPTION_SEED = 0


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels of ``model`` (in eval mode) for ``x``."""
    model.eval()
    return torch.cat([model(xb).argmax(dim=1) for xb in x.split(batch_size)])


def run_sweep_cell(cell: SweepCell, results: Path, device: torch.device | None = None
                   ) -> list[dict]:
    """``robustness`` rows along the sweep's ε schedule (thesis Algorithm 2).

    Each ε attacks only the points still robust at the ε before it: an example that fools
    the model inside the smaller ball lies inside the larger one too, so robust accuracy
    never rises with ε and the larger radii cost less. A doubling sweep stops once robust
    accuracy falls below chance (1/classes), as the thesis does.
    """
    from bench.attacks import ATTACKS, evaluate_attack

    device = device or default_device()
    sw = cell.sweep
    rows: list[dict] = []
    with threads(cell.train.threads):
        data, model = load_trained(cell.train, results, device)
        x, y = eval_subset(data, cell.n_eval, device)
        robust = None
        for eps in sw.schedule():
            attack = ATTACKS.create(sw.name, norm=sw.norm, eps=eps, steps=sw.steps,
                                    restarts=sw.restarts, **sw.config)
            res = evaluate_attack(model, x, y, attack, seed=cell.train.seed, robust=robust)
            robust = res.robust
            rows.append({
                "run_id": cell.train.key, "eval_id": cell.key, "attack": sw.name, "norm": sw.norm,
                "eps": eps, "steps": attack.steps, "restarts": sw.restarts,
                "n_examples": res.n_examples, "clean_acc": res.clean_acc,
                "robust_acc": res.robust_acc, "attack_seconds": res.seconds,
                "attack_config": json.dumps(res.config, sort_keys=True, default=str),
                "status": "ok", "error": None, "created_at": now(), "load_avg": load_avg(),
                "sweep": sw.label,
            })
            if sw.doubling_from is not None and res.robust_acc < 1.0 / data.num_classes:
                break
    return rows


def run_corruption_cell(cell: CorruptionCell, results: Path,
                        device: torch.device | None = None) -> list[dict]:
    """``corruption`` rows: accuracy per (corruption, severity) on the same points."""
    from bench.corruptions import CORRUPTION_NAMES, corrupt, load_cifar_c

    device = device or default_device()
    spec = cell.spec
    names = CORRUPTION_NAMES if spec.names == "all" else spec.names
    rows = []
    with threads(cell.train.threads):
        data, model = load_trained(cell.train, results, device)
        x, y = eval_subset(data, cell.n_eval, device)
        clean = (predict(model, x) == y).float().mean().item()
        for name in names:
            for severity in spec.severities:
                start = time.perf_counter()
                if spec.files is None:
                    # A stream per (corruption, severity): adding one leaves the others as they were.
                    g = torch.Generator(device=device).manual_seed(
                        CORRUPTION_SEED + 10 * CORRUPTION_NAMES.index(name) + severity)
                    xc, yc, clean_c = corrupt(x, name, severity, g), y, clean
                else:
                    xc, yc = load_cifar_c(spec.files, name, severity, n=cell.n_eval)
                    xc, yc = xc.to(device), yc.to(device)
                    _check_shape(xc, x, spec.files)
                    # The official files keep the test split's own order: clean accuracy on
                    # those very images, not on our permutation's.
                    clean_c = None
                acc = (predict(model, xc) == yc).float().mean().item()
                rows.append({"run_id": cell.train.key, "eval_id": cell.key, "corruption": name,
                             "severity": severity, "n_examples": len(yc), "acc": acc,
                             "clean_acc": clean_c,
                             "source": "generated" if spec.files is None else "files",
                             "seconds": time.perf_counter() - start, "created_at": now()})
    return rows


def _check_shape(xc: torch.Tensor, x: torch.Tensor, root: str) -> None:
    if xc.shape[1:] != x.shape[1:]:
        raise ValueError(f"{root}: corrupted images have shape {tuple(xc.shape[1:])} but the "
                         f"dataset's are {tuple(x.shape[1:])}; those files belong to another "
                         "dataset")


def run_transfer_source(source: TrainCell, cells: list[TransferCell], results: Path,
                        device: torch.device | None = None) -> list[tuple[TransferCell, dict]]:
    """Craft the examples on ``source`` once; one ``transfer`` row per target cell.

    Crafting is seeded, so a later run that adds targets crafts the very same examples.
    """
    from bench.attacks import ATTACKS, craft_examples

    device = device or default_device()
    a, n_eval = cells[0].attack, cells[0].n_eval
    out = []
    with threads(source.threads):
        data, model = load_trained(source, results, device)
        x, y = eval_subset(data, n_eval, device)
        attack = ATTACKS.create(a.name, norm=a.norm, eps=a.eps, steps=a.steps,
                                restarts=a.restarts, **a.config)
        x_adv, white_box = craft_examples(model, x, y, attack, seed=source.seed)
        for cell in cells:
            _, target = load_trained(cell.target, results, device)
            clean_ok, adv_ok = predict(target, x) == y, predict(target, x_adv) == y
            out.append((cell, {
                "source_run": source.key, "target_run": cell.target.key, "eval_id": cell.key,
                "attack": a.name, "norm": a.norm, "eps": a.eps, "n_examples": len(y),
                "acc": adv_ok.float().mean().item(), "clean_acc": clean_ok.float().mean().item(),
                "robust_acc": (clean_ok & adv_ok).float().mean().item(),
                "source_robust_acc": white_box.robust_acc,
                "attack_config": json.dumps({**attack.config(), "seed": source.seed},
                                            sort_keys=True, default=str),
                "created_at": now()}))
    return out


def run_checks(train: TrainCell, robustness: pd.DataFrame, results: Path, *, n_eval: int,
               model_rows: list[dict] | None = None, device: torch.device | None = None
               ) -> list[dict]:
    """``checks`` rows of one run: model-level checks (computed once, then reused through
    ``model_rows``) and result-level checks over its current robustness rows."""
    from bench.work.checks import model_checks, result_checks

    device = device or default_device()
    data = None
    if model_rows is None:
        with threads(train.threads):
            data, model = load_trained(train, results, device)
            x, y = eval_subset(data, n_eval, device)
            model_rows = [{**r, "kind": "model"} for r in model_checks(
                model, x, y, norm=train.threat_norm, eps=train.threat_eps, seed=train.seed)]
    if data is None:
        from bench.work.runner import load_dataset

        data = load_dataset(train.dataset, train.data_root)
    result_rows = [{**r, "kind": "result"}
                   for r in result_checks(robustness, num_classes=data.num_classes)]
    return [{**r, "run_id": train.key, "created_at": now()} for r in model_rows + result_rows]
