"""Train one run: the training cell's body, and its snapshot for resuming an interrupted one.

Returns the rows it produced (the executor writes them). The cell sets its own thread
count and seeds, so the same spec gives the same model whichever process or machine
trains it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from bench.allocator import current_setting
from bench.api import Budget, ThreatModel, TrainContext
from bench.attacks import perturb
from bench.data.datasets import augment_batch, split_indices
from bench.grid.cells import TrainCell
from bench.measures import count_nonzero_params, count_params, inference_flops
from bench.plugins import compose
from bench.results import store
from bench.results.provenance import (
    default_device,
    device_name,
    host,
    load_avg,
    versions_json,
)
from bench.results.schema import TABLES
from bench.work.loop import SNAPSHOT_FORMAT, ResumeError, accuracy, train
from bench.work.model import build_model, load_dataset, threads
from bench.work.rows import now

log = logging.getLogger(__name__)


def run_train_cell(cell: TrainCell, results: Path, device: torch.device | None = None,
                   progress=None) -> tuple[dict, dict[str, list[dict]]]:
    """Train ``cell``; save its checkpoint; return (runs row, {table: rows}): its history
    and whatever the method emitted."""
    device = device or default_device()
    comp = compose(cell.method.name, cell.method.config)
    data = load_dataset(cell.dataset, cell.data_root)
    with threads(cell.threads):
        torch.manual_seed(cell.seed)
        ctx = _context(cell, comp, data, device)
        # the model and split as built: training may swap ctx.model (torch.compile) meanwhile
        model, train_size = ctx.model, len(ctx.train_y)
        augment_kind = cell.augment or data.augment
        augment = (None if augment_kind == "none"
                   else (lambda x, g: augment_batch(x, augment_kind, g)))
        snap_path = store.resume_path(results, cell.key)

        def save_snapshot(state: dict) -> None:
            state["cell_key"], state["versions"] = cell.key, versions_json()
            store.atomic_write_bytes(snap_path, lambda f: torch.save(state, f))

        try:
            stats = train(comp.base, comp.modifiers, ctx, augment=augment, progress=progress,
                          snapshot=save_snapshot, resume=read_snapshot(snap_path, cell.key))
        except ResumeError as exc:
            log.warning("%s: %s; training from epoch 0", cell.describe(), exc)
            store.remove(snap_path)
            return run_train_cell(cell, results, device, progress)
        measured = {"clean_acc": accuracy(model, data.test_x.to(device), data.test_y.to(device)),
                    "infer_flops": inference_flops(model, tuple(data.train_x.shape[1:])),
                    "n_test": len(data.test_y), "augment": augment_kind,
                    "train_size": train_size}
        state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        store.atomic_write_bytes(store.checkpoint_path(results, cell.key),
                                 lambda f: torch.save(state_dict, f))
    run = _run_row(cell, comp, model, ctx, stats, measured, device)
    tables = {"history": [history_row(cell.key, row) for row in stats.history]}
    for table, rows in ctx.tables.items():
        tables[table] = [{**r, "run_id": cell.key} for r in rows]
    return run, tables


def _context(cell: TrainCell, comp, data, device: torch.device) -> TrainContext:
    """The method's view of the run: its split of the training set, the model, the budget."""
    train_ids, val_ids = training_split(data.train_y, cell.val_size, cell.seed, cell.train_size)
    model = build_model(data, cell.arch).to(device)
    for mod in comp.modifiers:  # e.g. EWS on an arch without residual blocks
        problem = mod.check_model(model)
        if problem is not None:
            raise ValueError(f"arch {cell.arch!r}: {problem}")
    state: dict = {}

    def log_fields(**fields) -> None:
        state.setdefault("log", {}).update(fields)

    return TrainContext(
        model=model, train_x=data.train_x[train_ids].to(device),
        train_y=data.train_y[train_ids].to(device), val_x=data.train_x[val_ids].to(device),
        val_y=data.train_y[val_ids].to(device), num_classes=data.num_classes,
        budget=Budget(cell.epochs, cell.batch_size),
        threat=ThreatModel(cell.threat_norm, cell.threat_eps), device=device, seed=cell.seed,
        generator=torch.Generator(device=device).manual_seed(cell.seed), attack=perturb,
        log=log_fields, state=state, train_ids=train_ids.to(device), execution=cell.execution,
    )


def _run_row(cell: TrainCell, comp, model: torch.nn.Module, ctx: TrainContext, stats,
             measured: dict, device: torch.device) -> dict:
    """The ``runs`` row of a trained run, with the fields the method set (``run_fields``)."""
    run = {
        "run_id": cell.key, "leaderboard": cell.leaderboard, "method": cell.method.display,
        "method_config": json.dumps({"name": cell.method.name, **comp.resolved_config()},
                                    sort_keys=True),
        "dataset": cell.dataset, "arch": cell.arch, "seed": cell.seed, "epochs": cell.epochs,
        "batch_size": cell.batch_size, "threads": cell.threads, "status": "ok", "error": None,
        "train_flops": stats.train_flops, "train_samples": stats.train_samples,
        "train_seconds": stats.train_seconds, "peak_mem_bytes": stats.peak_mem_bytes,
        "params": count_params(model), "nonzero_params": count_nonzero_params(model),
        "val_acc": stats.history[-1]["val_acc"] if stats.history else None, **measured,
        "checkpoint": store.checkpoint_relpath(cell.key), "submission_id": None, "host": host(),
        "device": device_name(device), "versions": versions_json(), "created_at": now(),
        "load_avg": load_avg(),
        "nondeterminism": nondeterminism(device), "precision": ctx.execution.precision,
        "channels_last": ctx.execution.channels_last, "compiled": ctx.execution.compile,
        "resumed_after_epochs": json.dumps(stats.resumed_after) if stats.resumed_after else None,
        "allocator": current_setting(),
    }
    unknown = set(ctx.run_fields) - set(TABLES["runs"].names)
    if unknown:
        raise ValueError(f"run_fields {sorted(unknown)} are not columns of the runs table")
    run.update(ctx.run_fields)
    return run


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
    val_size = int(val_size) if val_size >= 1 else float(val_size)
    train_ids, val_ids = split_indices(train_y, val_size, seed)
    if train_size is not None and train_size < len(train_ids):
        # split_indices' held-out part is a stratified sample of exactly train_size points.
        _, keep = split_indices(train_y[train_ids], train_size, seed + 1)
        train_ids = train_ids[keep]
    return train_ids, val_ids


def history_row(run_id: str, row: dict) -> dict:
    """Schema columns as they are; what a method logged beyond them goes to ``extra``."""
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
