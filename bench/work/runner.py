"""Run one cell: train a model, evaluate an attack, or measure latency.

Each function returns the rows it produced; the executor writes them. Every cell sets
its own thread count and seeds, so the same spec gives the same numbers whichever
process or machine runs it.
"""
from __future__ import annotations

import functools
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch

from bench.results import store
from bench.allocator import current_setting
from bench.api import Budget, ThreatModel, TrainContext
from bench.grid.cells import EVAL_PERMUTATION_SEED, AttackCell, LatencyCell, TrainCell
from bench.work.loop import SNAPSHOT_FORMAT, ResumeError, accuracy, train
from bench.results.provenance import default_device, device_name, host, load_avg, versions_json
from bench.results.schema import TABLES

log = logging.getLogger(__name__)


@contextmanager
def threads(n: int):
    """Run with exactly ``n`` torch threads (thread count changes results), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_root: str | None):
    from bench.data.datasets import DATASETS

    return DATASETS.create(name, data_root=data_root)


def build_model(data, arch: str) -> torch.nn.Module:
    from bench.archs import ARCHS

    return ARCHS.create(arch, num_classes=data.num_classes, in_channels=data.train_x.shape[1],
                        image_size=data.train_x.shape[-1], mean=data.mean, std=data.std)


def now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def run_train_cell(cell: TrainCell, results: Path, device: torch.device | None = None,
                   progress=None) -> tuple[dict, list[dict]]:
    """Train ``cell``; save its checkpoint; return (runs row, history rows)."""
    from bench.attacks import perturb
    from bench.data.datasets import augment_batch
    from bench.measures import count_nonzero_params, count_params, inference_flops
    from bench.plugins import compose

    device = device or default_device()
    comp = compose(cell.method.name, cell.method.config)
    data = load_dataset(cell.dataset, cell.data_root)
    with threads(cell.threads):
        torch.manual_seed(cell.seed)
        train_ids, val_ids = training_split(data.train_y, cell.val_size, cell.seed, cell.train_size)
        tr_x, tr_y = data.train_x[train_ids], data.train_y[train_ids]
        va_x, va_y = data.train_x[val_ids], data.train_y[val_ids]
        model = build_model(data, cell.arch).to(device)
        for mod in comp.modifiers:  # e.g. EWS on an arch without residual blocks
            problem = mod.check_model(model)
            if problem is not None:
                raise ValueError(f"arch {cell.arch!r}: {problem}")
        generator = torch.Generator(device=device).manual_seed(cell.seed)
        state: dict = {}

        def log(**fields) -> None:
            state.setdefault("log", {}).update(fields)

        ctx = TrainContext(
            model=model, train_x=tr_x.to(device), train_y=tr_y.to(device), val_x=va_x.to(device),
            val_y=va_y.to(device), num_classes=data.num_classes,
            budget=Budget(cell.epochs, cell.batch_size),
            threat=ThreatModel(cell.threat_norm, cell.threat_eps), device=device, seed=cell.seed,
            generator=generator, attack=perturb, log=log, state=state,
            train_ids=train_ids.to(device), execution=cell.execution,
        )
        kind = cell.augment or data.augment
        augment = None if kind == "none" else (lambda x, g: augment_batch(x, kind, g))
        snap_path = store.resume_path(results, cell.key)
        resume = read_snapshot(snap_path, cell.key)

        def save_snapshot(state: dict) -> None:
            state["cell_key"], state["versions"] = cell.key, versions_json()
            store.atomic_write_bytes(snap_path, lambda f: torch.save(state, f))

        try:
            stats = train(comp.base, comp.modifiers, ctx, augment=augment, progress=progress,
                          snapshot=save_snapshot, resume=resume)
        except ResumeError as exc:
            log.warning("%s: %s; training from epoch 0", cell.describe(), exc)
            store.remove(snap_path)
            return run_train_cell(cell, results, device, progress)
        clean = accuracy(model, data.test_x.to(device), data.test_y.to(device))
        val = stats.history[-1]["val_acc"] if stats.history else None
        shape = tuple(data.train_x.shape[1:])
        infer = inference_flops(model, shape)
        ckpt = store.checkpoint_path(results, cell.key)
        state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        store.atomic_write_bytes(ckpt, lambda f: torch.save(state_dict, f))
    run = {
        "run_id": cell.key, "leaderboard": cell.leaderboard, "method": cell.method.display,
        "method_config": json.dumps({"name": cell.method.name, **comp.resolved_config()}, sort_keys=True),
        "dataset": cell.dataset, "arch": cell.arch, "seed": cell.seed, "epochs": cell.epochs,
        "batch_size": cell.batch_size, "threads": cell.threads, "status": "ok", "error": None,
        "train_flops": stats.train_flops, "train_samples": stats.train_samples,
        "train_seconds": stats.train_seconds, "peak_mem_bytes": stats.peak_mem_bytes,
        "params": count_params(model), "nonzero_params": count_nonzero_params(model),
        "infer_flops": infer, "clean_acc": clean, "val_acc": val, "n_test": len(data.test_y),
        "checkpoint": store.checkpoint_relpath(cell.key), "submission_id": None, "host": host(),
        "device": device_name(device), "versions": versions_json(), "created_at": now(),
        "train_size": len(tr_y), "augment": kind, "load_avg": load_avg(),
        "nondeterminism": nondeterminism(device), "precision": ctx.execution.precision,
        "channels_last": ctx.execution.channels_last, "compiled": ctx.execution.compile,
        "resumed_after_epochs": json.dumps(stats.resumed_after) if stats.resumed_after else None,
        "allocator": current_setting(),
    }
    unknown = set(ctx.run_fields) - set(TABLES["runs"].names)
    if unknown:
        raise ValueError(f"run_fields {sorted(unknown)} are not columns of the runs table")
    run.update(ctx.run_fields)
    tables = {"history": [_history_row(cell.key, row) for row in stats.history]}
    for table, rows in ctx.tables.items():
        tables[table] = [{**r, "run_id": cell.key} for r in rows]
    return run, tables


def read_snapshot(path, cell_key: str) -> dict | None:
    """The resume snapshot an interrupted run of this cell left, or None (none, or one
    this version cannot use: it is then ignored and overwritten by the fresh run's)."""
    if not store.exists(path):
        return None
    try:
        with store.open_read(path) as f:
            # weights_only: snapshots hold only tensors and plain containers.
            snap = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable snapshot means start over
        log.warning("ignoring unreadable resume snapshot %s (%s)", path, exc)
        return None
    if snap.get("cell_key") != cell_key or snap.get("format") != SNAPSHOT_FORMAT:
        log.warning("ignoring resume snapshot %s: written for another cell or format", path)
        return None
    # Libraries change the numbers (kernels, defaults): a run must not straddle two torch
    # versions. PERBench's own commit may differ (a docs fix between sessions); the run
    # row records the commit that finished it.
    if not snap.get("versions"):
        log.warning("ignoring resume snapshot %s: it records no library versions (written "
                    "before snapshots recorded them); training from epoch 0", path)
        return None
    then, now_ = json.loads(snap["versions"]), json.loads(versions_json())
    changed = sorted(k for k in set(then) | set(now_)
                     if k != "perbench_git" and then.get(k) != now_.get(k))
    if changed:
        log.warning("ignoring resume snapshot %s: written with other versions of %s; "
                    "training from epoch 0", path, ", ".join(changed))
        return None
    return snap


def nondeterminism(device: torch.device) -> str | None:
    """What keeps a run on ``device`` from repeating bit for bit, or None (CPU kernels here
    are deterministic for a fixed thread count)."""
    if device.type != "cuda" or torch.are_deterministic_algorithms_enabled():
        return None
    return ("CUDA: atomic adds in backward kernels and cuDNN's algorithm choice make repeated "
            "runs differ in the last bits (torch.use_deterministic_algorithms is off)")


def training_split(train_y: torch.Tensor, val_size: float, seed: int, train_size: int | None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_ids, val_ids) into the dataset's training set: a seeded stratified validation
    split, then (with ``train_size``) a seeded stratified subset of the rest."""
    from bench.data.datasets import split_indices

    val_size = int(val_size) if val_size >= 1 else float(val_size)
    train_ids, val_ids = split_indices(train_y, val_size, seed)
    if train_size is not None and train_size < len(train_ids):
        # split_indices' held-out part is a stratified sample of exactly train_size points.
        _, keep = split_indices(train_y[train_ids], train_size, seed + 1)
        train_ids = train_ids[keep]
    return train_ids, val_ids


def _history_row(run_id: str, row: dict) -> dict:
    """Schema columns as they are; what a method logged beyond them goes to ``extra``."""
    from bench.results.schema import TABLES

    known = set(TABLES["history"].names)
    extra = {k: v for k, v in row.items() if k not in known}
    return {"run_id": run_id, **{k: v for k, v in row.items() if k in known},
            "extra": json.dumps(extra, default=float) if extra else None}


def failed_run_row(cell: TrainCell, error: str) -> dict:
    return {
        "run_id": cell.key, "leaderboard": cell.leaderboard, "method": cell.method.display,
        "method_config": json.dumps({"name": cell.method.name, **cell.method.config}, sort_keys=True),
        "dataset": cell.dataset, "arch": cell.arch, "seed": cell.seed, "epochs": cell.epochs,
        "batch_size": cell.batch_size, "threads": cell.threads, "status": "failed",
        "error": error, "host": host(), "versions": versions_json(), "created_at": now(),
    }


def load_trained(cell: TrainCell, results: Path, device: torch.device):
    data = load_dataset(cell.dataset, cell.data_root)
    model = build_model(data, cell.arch)
    # weights_only: checkpoints in a results folder may come from someone else's run.
    with store.open_read(store.checkpoint_path(results, cell.key)) as f:
        state = torch.load(f, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return data, model.to(device).eval()


def eval_subset(data, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``n`` points of one fixed permutation of the test split (nested subsets)."""
    g = torch.Generator().manual_seed(EVAL_PERMUTATION_SEED)
    perm = torch.randperm(len(data.test_y), generator=g)[:n]
    return data.test_x[perm].to(device), data.test_y[perm].to(device)


def run_attack_cell(cell: AttackCell, results: Path, device: torch.device | None = None) -> dict:
    from bench.attacks import ATTACKS, evaluate_attack

    device = device or default_device()
    a = cell.attack
    with threads(cell.train.threads):
        data, model = load_trained(cell.train, results, device)
        x, y = eval_subset(data, cell.n_eval, device)
        attack = ATTACKS.create(a.name, norm=a.norm, eps=a.eps, steps=a.steps,
                                restarts=a.restarts, **a.config)
        res = evaluate_attack(model, x, y, attack, seed=cell.train.seed)
    return {
        "run_id": cell.train.key, "eval_id": cell.key, "attack": a.name, "norm": a.norm,
        "eps": a.eps, "steps": a.steps if a.steps is not None else attack.default_steps,
        "restarts": a.restarts, "n_examples": res.n_examples, "clean_acc": res.clean_acc,
        "robust_acc": res.robust_acc, "attack_seconds": res.seconds,
        "attack_config": json.dumps(res.config, sort_keys=True, default=str), "status": "ok",
        "error": None, "created_at": now(), "load_avg": load_avg(),
    }


def failed_attack_row(cell: AttackCell, error: str) -> dict:
    a = cell.attack
    return {"run_id": cell.train.key, "eval_id": cell.key, "attack": a.name, "norm": a.norm,
            "eps": a.eps, "steps": a.steps, "restarts": a.restarts, "n_examples": cell.n_eval,
            "status": "failed", "error": error, "created_at": now()}


def run_latency_cell(cell: LatencyCell, results: Path) -> list[dict]:
    """Dense latency rows, plus sparse-execution rows when the checkpoint is pruned (some
    conv or linear layer mostly zeros: what a pruning method is for)."""
    from bench.hardware import HARDWARE
    from bench.latency import measure_latency, sparse_layers

    data, model = load_trained(cell.train, results, torch.device("cpu"))
    profile = HARDWARE.create(cell.hardware)
    shape = tuple(data.train_x.shape[1:])
    rows = measure_latency(model, shape, profile, run_id=cell.train.key, eval_id=cell.key)
    if sparse_layers(model):
        rows += measure_latency(model, shape, profile, execution="sparse",
                                run_id=cell.train.key, eval_id=cell.key)
    return rows
