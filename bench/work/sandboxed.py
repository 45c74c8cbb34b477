"""The training process inside the sandbox: ``python -m bench.work.sandboxed /scratch``.

It receives only what training needs (``/scratch/input.pt``: the training and validation
tensors, the run's description, the method's source files) and leaves only what the parent
reads back (``/scratch/output.json``, ``/scratch/model.pt``), plus a resume snapshot after
each epoch and one progress line per epoch. The test split never exists in this process;
the parent (:mod:`bench.work.train`) loads the checkpoint with ``weights_only=True`` into
the registered architecture and measures it there. Nothing this process reports about
the model's accuracy is used.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from bench.api import Budget, Execution, ThreatModel, TrainContext
from bench.archs import ARCHS
from bench.attacks import perturb
from bench.data.datasets import augment_batch
from bench.plugins import compose, load_source
from bench.work.loop import ResumeError, train

INPUT, OUTPUT, MODEL, SNAPSHOT, PROGRESS = (
    "input.pt", "output.json", "model.pt", "snapshot.pt", "progress.jsonl")


def main(scratch: Path) -> int:
    inp = torch.load(scratch / INPUT, map_location="cpu", weights_only=True)
    job = json.loads(inp["job"])
    for source in job["plugins"]:  # the submitted method's file(s), copied into scratch
        load_source(str(scratch / source))
    comp = compose(job["method"], job["method_config"])
    device = torch.device(job["device"])
    # This process does one thing, so its thread count is simply set. (It imports no more
    # than training needs: every cell pays for its start-up, pandas alone 0.3 s.)
    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    model = ARCHS.create(job["arch"], **job["model"]).to(device)
    for mod in comp.modifiers:  # e.g. EWS on an arch without residual blocks
        problem = mod.check_model(model)
        if problem is not None:
            raise ValueError(f"arch {job['arch']!r}: {problem}")
    state: dict = {}

    def log_fields(**fields) -> None:
        state.setdefault("log", {}).update(fields)

    ctx = TrainContext(
        model=model, train_x=inp["train_x"].to(device), train_y=inp["train_y"].to(device),
        val_x=inp["val_x"].to(device), val_y=inp["val_y"].to(device),
        num_classes=job["model"]["num_classes"],
        budget=Budget(job["epochs"], job["batch_size"]),
        threat=ThreatModel(job["threat_norm"], job["threat_eps"]), device=device,
        seed=job["seed"], generator=torch.Generator(device=device).manual_seed(job["seed"]),
        attack=perturb, log=log_fields, state=state,
        train_ids=inp["train_ids"].to(device), execution=Execution(**job["execution"]),
    )
    kind = job["augment"]
    augment = None if kind == "none" else (lambda x, g: augment_batch(x, kind, g))
    snapshot_path = scratch / SNAPSHOT
    resume = None
    if snapshot_path.exists():  # the parent has checked it fits this cell and versions
        resume = torch.load(snapshot_path, map_location="cpu", weights_only=True)

    def save_snapshot(snap: dict) -> None:
        snap["cell_key"], snap["versions"] = job["key"], job["versions"]
        tmp = snapshot_path.with_suffix(".tmp")
        torch.save(snap, tmp)
        tmp.replace(snapshot_path)

    def progress(row: dict) -> None:
        with open(scratch / PROGRESS, "a") as f:
            f.write(json.dumps(row, default=float) + "\n")

    model_as_built = ctx.model  # training may swap ctx.model for a compiled one
    try:
        stats = train(comp.base, comp.modifiers, ctx, augment=augment, progress=progress,
                      snapshot=save_snapshot if job["snapshots"] else None, resume=resume,
                      audit_steps=frozenset(job["audit_steps"]))
    except ResumeError:
        snapshot_path.unlink(missing_ok=True)
        raise
    weights = {k: v.detach().cpu() for k, v in model_as_built.state_dict().items()}
    torch.save(weights, scratch / MODEL)
    out = {
        "train_flops": stats.train_flops, "train_samples": stats.train_samples,
        "train_seconds": stats.train_seconds, "peak_mem_bytes": stats.peak_mem_bytes,
        "history": stats.history, "resumed_after": stats.resumed_after,
        "tables": ctx.tables, "run_fields": ctx.run_fields, "steps": ctx.step,
        "resolved_config": comp.resolved_config(),
    }
    (scratch / OUTPUT).write_text(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    # --startup: import everything training imports, then stop (what starting one costs)
    sys.exit(0 if sys.argv[1] == "--startup" else main(Path(sys.argv[1])))
