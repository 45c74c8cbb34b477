"""``perbench eval-model``: a model trained elsewhere, evaluated on a leaderboard's axes.

The checkpoint (loaded with ``weights_only=True``: a pickle from elsewhere must not run
code) goes into an architecture from the registry or a user factory (``py:<file>:<fn>``),
is copied into the results folder as a plain state dict, and gets a ``runs`` row with its
measured clean accuracy, inference FLOPs and size but no training cost (PERBench did not
see its training). Every evaluation cell of the grid then runs on it: attacks, ε sweeps,
corruptions, checks, transfer with the grid's runs, latency.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.grid.spec import MethodSpec

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


@dataclass(frozen=True)
class ExternalRun:
    """Stands where a TrainCell stands for evaluation cells; nothing to train."""

    leaderboard: str
    method: MethodSpec
    dataset: str
    arch: str
    weights_sha: str
    threads: int
    threat_norm: str
    threat_eps: float
    data_root: str | None
    seed: int = 0  # the seed evaluation attacks use, and the row of the transfer matrix
    external: bool = field(default=True, repr=False)

    @property
    def key(self) -> str:
        from bench.grid.cells import stable_hash

        return stable_hash({"external": self.weights_sha, "dataset": self.dataset,
                            "arch": self.arch, "label": self.method.display})

    def describe(self) -> str:
        return f"{self.method.display} (external) · {self.dataset} · {self.arch}"

    @property
    def submission_id(self) -> str:
        from bench.grid.cells import stable_hash

        return stable_hash({"external": self.key})[:12]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: a state dict, or one wrapped under a usual key; a
    ``module.`` prefix (DataParallel) is dropped."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code: say so plainly
        raise ValueError(f"{path}: not loadable with torch.load(weights_only=True) ({exc}); "
                         "save the model's state_dict(), not the model object") from None
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor), possibly "
                         f"under one of {list(_WRAPPER_KEYS)}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict, except that buffers the checkpoint lacks (a model trained without our
    Normalize layer) keep the architecture's values, with a warning."""
    result = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters())
    missing = [k for k in result.missing_keys if k in params]
    problems = []
    if missing:
        problems.append(f"missing parameters {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if result.unexpected_keys:
        extra = result.unexpected_keys
        problems.append(f"unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    if problems:
        raise ValueError(f"{where}: checkpoint does not fit the architecture: "
                         + "; ".join(problems))
    kept = [k for k in result.missing_keys if k not in params]
    if kept:
        warnings.warn(f"{where}: checkpoint has no {kept}; the architecture's values are kept",
                      stacklevel=2)


def import_model(spec, results: Path, checkpoint: Path, arch: str, label: str,
                 dataset: str | None = None, device: torch.device | None = None) -> ExternalRun:
    """Check the checkpoint fits, measure what needs no training, write the ``runs`` row
    and the checkpoint copy; return the run to evaluate."""
    from bench.measures import count_nonzero_params, count_params, inference_flops
    from bench.results import store
    from bench.results.provenance import (
        default_device,
        device_name,
        host,
        load_avg,
        versions_json,
    )
    from bench.work.loop import accuracy
    from bench.work.model import build_model, load_dataset, threads
    from bench.work.rows import now

    dataset = dataset or spec.datasets[0]
    if dataset not in spec.datasets:
        raise ValueError(f"--dataset {dataset!r} is not a dataset of this grid; allowed: "
                         f"{', '.join(spec.datasets)}")
    device = device or default_device()
    state = read_state_dict(checkpoint)
    sha = hashlib.sha256()
    for k in sorted(state):
        sha.update(k.encode())
        sha.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    run = ExternalRun(leaderboard=spec.name, method=MethodSpec(name="external", label=label),
                      dataset=dataset, arch=arch, weights_sha=sha.hexdigest(),
                      threads=spec.threads, threat_norm=spec.train_threat.norm,
                      threat_eps=spec.train_threat.eps, data_root=spec.data_root)
    data = load_dataset(dataset, spec.data_root)
    with threads(spec.threads):
        model = build_model(data, arch)
        load_into(model, state, str(checkpoint))
        model = model.to(device).eval()
        clean = accuracy(model, data.test_x.to(device), data.test_y.to(device))
        infer = inference_flops(model, tuple(data.train_x.shape[1:]))
    ckpt = store.checkpoint_path(results, run.key)
    saved = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    store.atomic_write_bytes(ckpt, lambda f: torch.save(saved, f))
    store.write_cell(results, "runs", run.key, [{
        "run_id": run.key, "leaderboard": spec.name, "method": label,
        "method_config": json.dumps({"name": "external", "checkpoint": Path(checkpoint).name,
                                     "arch": arch, "weights_sha256": sha.hexdigest()},
                                    sort_keys=True),
        "dataset": dataset, "arch": arch, "seed": run.seed, "threads": spec.threads,
        "status": "ok", "params": count_params(model),
        "nonzero_params": count_nonzero_params(model), "infer_flops": infer, "clean_acc": clean,
        "n_test": len(data.test_y), "checkpoint": store.checkpoint_relpath(run.key),
        "submission_id": run.submission_id, "host": host(), "device": device_name(device),
        "versions": versions_json(), "created_at": now(), "load_avg": load_avg(),
    }])
    return run


def eval_model(board: Path, checkpoint: Path, *, arch: str, label: str,
               dataset: str | None = None, authors: str | None = None, link: str | None = None,
               license: str | None = None, show_progress: bool = True):
    """Import the model, record it as a submission of kind "external model", and run the
    grid's evaluation cells on it. Returns (run, RunReport)."""
    from bench.archs import ARCHS
    from bench.execute.sequential import run_local
    from bench.grid.spec import load_spec, results_location
    from bench.results import store
    from bench.results.provenance import versions_json
    from bench.work.rows import now

    board = Path(board)
    spec = load_spec(board / "grid.yaml")
    if label in {m.display for m in spec.methods}:
        raise ValueError(f"name {label!r} is already a method of {board}; choose another --name")
    from bench.registry import UnknownNameError

    try:
        ARCHS.get(arch)  # a factory's import error or missing function is reported as is
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
    results = results_location(board, spec)
    run = import_model(spec, results, checkpoint, arch, label, dataset)
    sid = run.submission_id
    config = store.read_cell(results, "runs", run.key)["method_config"].iloc[0]
    if not store.has_cell(results, "submissions", sid):
        store.write_cell(results, "submissions", sid, [{
            "submission_id": sid, "name": label, "authors": authors, "link": link,
            "license": license, "method": "external", "code_sha": run.weights_sha,
            "created_at": now(), "source": Path(checkpoint).name, "config": config,
            "leaderboard": spec.name, "versions": versions_json(), "kind": "external model"}])
    report = run_local(spec, results, only_methods={label}, extra_runs=(run,),
                       show_progress=show_progress)
    return run, report
