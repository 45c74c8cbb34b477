"""``perbench submit``: a method from one file (or an installed package) run through a
leaderboard's whole grid, with nothing already there put at risk.

Order of work, cheapest failure first:

1. load the source (a ``.py`` file, or an entry point of group ``perbench.methods``) and
   find the method(s) it registers (:mod:`bench.plugins`) — syntax errors and import
   errors stop here;
2. check the class (a Base or Modifier with its own pydantic ``Config``) and the
   composition it will run as;
3. train two steps on 16 points of the leaderboard's data in a separate process, with a
   time limit — wrong return types, exceptions, NaN losses and hangs stop here;
4. record the submission (``submissions`` table, a copy of the code) and run every cell of
   the grid that involves the method, each training cell in its own process
   (:mod:`bench.execute.isolation`), so a crash, hang or NaN fails that cell and the rest goes on.

Nothing is written before step 4, and step 4 only adds files under the submission's own
keys: earlier results cannot be touched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from bench.api import Base, Budget, MethodConfig, Modifier, ThreatModel, TrainContext
from bench.attacks import perturb
from bench.errors import SubmissionError
from bench.execute.isolation import CellFailed, call_isolated
from bench.execute.sequential import run_local
from bench.grid.cells import stable_hash
from bench.grid.spec import (
    MethodSpec,
    SpecError,
    load_spec,
    results_location,
    validate_names,
)
from bench.plugins import (
    ENTRY_POINT_GROUP,
    ENTRY_POINT_PREFIX,
    METHODS,
    CompositionError,
    Source,
    compose,
    load_source,
)
from bench.results import store
from bench.results.provenance import versions_json
from bench.work.loop import train
from bench.work.model import build_model, load_dataset, model_shape, threads
from bench.work.rows import now
from bench.work.train import SandboxFailed, run_sandboxed

# Loading (files, entry points) lives beside the registry in bench.plugins; these names
# stay importable from here for code written before it moved.
__all__ = ["CELL_TIMEOUT_S", "ENTRY_POINT_GROUP", "ENTRY_POINT_PREFIX", "VALIDATE_TIMEOUT_S",
           "Source", "SubmissionError", "SubmitReport", "composition_for", "load_source",
           "smoke_test", "submission_id", "submit"]

VALIDATE_TIMEOUT_S = 300.0
CELL_TIMEOUT_S = 3 * 3600.0


# -- checking --------------------------------------------------------------------------

def composition_for(source: Source, method: str | None, on: str | None) -> str:
    """The name the grid runs: the method itself for a base, ``<on>+<method>`` for a
    modifier (which needs a base to hook into)."""
    if method is None:
        if len(source.methods) > 1:
            raise SubmissionError(f"{source.ref} registers {len(source.methods)} methods "
                                  f"({', '.join(source.methods)}); pick one with --method")
        method = source.methods[0]
    elif method not in source.methods:
        raise SubmissionError(f"--method {method!r} is not registered by {source.ref}; "
                              f"it registers: {', '.join(source.methods)}")
    cls = METHODS.get(method)
    if not (isinstance(cls, type) and issubclass(cls, (Base, Modifier))):
        raise SubmissionError(f"{method!r} must be a class derived from bench.api.Base (owns "
                              "the loss) or bench.api.Modifier (hooks into the loop)")
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, MethodConfig)) or config is MethodConfig:
        raise SubmissionError(
            f"{cls.__name__} ({method!r}) has no Config: give it a class attribute "
            "`Config`, a subclass of bench.api.MethodConfig (or bench.api.SGDConfig) "
            "listing its options with defaults, even if it has none of its own, so the "
            "leaderboard records what ran")
    if issubclass(cls, Base):
        if on is not None:
            raise SubmissionError(f"{method!r} is a base (it owns the loss): drop --on")
        return method
    if on is None:
        raise SubmissionError(f"{method!r} is a modifier: say which base it runs on, "
                              f"e.g. --on pgd_at (runs as pgd_at+{method})")
    return f"{on}+{method}"


def smoke_test(ref: str, composition: str, config: dict, dataset: str, arch: str,
               data_root: str | None, threat: tuple[str, float]) -> dict:
    """Two optimizer steps on 16 training points, in whatever process calls it (the
    submit path calls it in an isolated one). Returns what ran; raises what went wrong."""
    load_source(ref)
    comp = compose(composition, config)
    data = load_dataset(dataset, data_root)
    with threads(1):
        torch.manual_seed(0)
        x, y = data.train_x[:16], data.train_y[:16]
        model = build_model(data, arch)
        for mod in comp.modifiers:
            problem = mod.check_model(model)
            if problem is not None:
                raise ValueError(f"arch {arch!r}: {problem}")
        ctx = TrainContext(model=model, train_x=x, train_y=y, val_x=x[:8], val_y=y[:8],
                           num_classes=data.num_classes, budget=Budget(1, 8),
                           threat=ThreatModel(*threat), device=torch.device("cpu"), seed=0,
                           generator=torch.Generator().manual_seed(0), attack=perturb)
        stats = train(comp.base, comp.modifiers, ctx)
    if not stats.history:
        raise ValueError("training ran no epoch: does the method's epochs() return 0?")
    return {"steps": ctx.step, "loss": stats.history[-1]["train_loss"],
            "flops": stats.train_flops}


def sandboxed_trial(source: Source, composition: str, config: dict, dataset: str, arch: str,
                    data_root: str | None, threat: tuple[str, float],
                    timeout: float | None) -> dict:
    """:func:`smoke_test` in the training sandbox, the way every cell of the submission will
    run: the same 16 points, 2 steps; the method's file is all of its code the sandbox
    sees. Raises SandboxFailed with what went wrong."""
    data = load_dataset(dataset, data_root)
    job = {"key": "trial", "versions": "", "method": composition, "method_config": config,
           "arch": arch, "model": model_shape(data), "seed": 0, "threads": 1, "epochs": 1,
           "batch_size": 8, "threat_norm": threat[0], "threat_eps": threat[1],
           "device": "cpu", "augment": "none", "snapshots": False,
           "execution": {"precision": "fp32", "channels_last": False, "compile": False},
           "audit_steps": []}
    x, y = data.train_x[:16], data.train_y[:16]
    tensors = {"train_x": x, "train_y": y, "val_x": x[:8], "val_y": y[:8],
               "train_ids": torch.arange(16)}
    plugins = () if source.path is None else (str(source.path),)
    _, out, _ = run_sandboxed(job, tensors, plugins, device=torch.device("cpu"),
                              timeout=timeout)
    if not out["history"]:
        raise ValueError("training ran no epoch: does the method's epochs() return 0?")
    return {"steps": out["steps"], "loss": out["history"][-1]["train_loss"],
            "flops": out["train_flops"]}


# -- submitting ------------------------------------------------------------------------

@dataclass
class SubmitReport:
    submission_id: str
    label: str
    composition: str
    smoke: dict
    run: Any = None  # bench.execute.tasks.RunReport


def submission_id(source: Source, composition: str, config: dict, label: str) -> str:
    return stable_hash({"code": source.code_sha, "composition": composition,
                        "config": config, "label": label})[:12]


def submit(source_ref: str, board: Path, *, label: str | None = None, method: str | None = None,
           on: str | None = None, config: dict | None = None, authors: str | None = None,
           link: str | None = None, license: str | None = None,
           timeout: float = CELL_TIMEOUT_S, validate_timeout: float = VALIDATE_TIMEOUT_S,
           show_progress: bool = True, log=print, sandbox: bool = True) -> SubmitReport:
    """Check ``source_ref``'s method with a 2-step trial run, then run every cell of the
    leaderboard's grid for it (``sandbox``: each training cell, and the trial, in the
    bubblewrap sandbox; False only for trusted code)."""
    board = Path(board)
    spec = load_spec(board / "grid.yaml")
    results = results_location(board, spec)
    source = load_source(source_ref)
    composition = composition_for(source, method, on)
    config = dict(config or {})
    try:
        resolved = compose(composition, config).resolved_config()
    except (CompositionError, ValidationError) as exc:
        raise SubmissionError(f"{composition}: {exc}") from None
    label = label or composition
    taken = {m.display for m in spec.methods}
    if label in taken:
        raise SubmissionError(f"name {label!r} is already a method of {board}; choose another "
                              "with --name")
    entry = MethodSpec(name=composition, label=label, config=config)
    try:
        full = spec.model_copy(update={"methods": [*spec.methods, entry]})
        validate_names(full, board / "grid.yaml")
    except SpecError as exc:
        raise SubmissionError(str(exc)) from None

    log(f"checking {label}: 2 training steps on 16 points of {spec.datasets[0]} "
        f"({spec.archs[0]}), in {'the sandbox' if sandbox else 'a separate process'}...")
    trial_args = (composition, config, spec.datasets[0], (entry.archs or spec.archs)[0],
                  spec.data_root, (spec.train_threat.norm, spec.train_threat.eps))
    try:
        if sandbox:
            smoke = sandboxed_trial(source, *trial_args, timeout=validate_timeout)
        else:
            smoke = call_isolated(smoke_test, source.ref, composition, config, spec.datasets[0],
                              (entry.archs or spec.archs)[0], spec.data_root,
                              (spec.train_threat.norm, spec.train_threat.eps),
                              plugins=[source.ref], timeout=validate_timeout)
    except (CellFailed, SandboxFailed, ValueError) as exc:
        raise SubmissionError(f"{label} failed its trial run (2 steps on 16 points): {exc}. "
                              "Nothing was written.") from None
    log(f"  ok: {smoke['steps']} steps, loss {smoke['loss']:.4f}")

    sid = submission_id(source, composition, config, label)
    code_path = None
    if source.path is not None:  # keep the code that produced the rows beside them
        code_path = Path("submission_code") / f"{sid}.py"
        target = store.join(results, *code_path.parts)
        if not store.exists(target):
            data = source.path.read_bytes()
            store.atomic_write_bytes(target, lambda f: f.write(data))
    if not store.has_cell(results, "submissions", sid):
        store.write_cell(results, "submissions", sid, [{
            "submission_id": sid, "name": label, "authors": authors, "link": link,
            "license": license, "method": composition, "code_sha": source.code_sha,
            "created_at": now(), "source": source.ref if source.path is None else source.path.name,
            "code_path": None if code_path is None else str(code_path),
            "config": _json({"name": composition, **resolved}), "leaderboard": spec.name,
            "versions": versions_json(), "kind": "method"}])
    report = SubmitReport(submission_id=sid, label=label, composition=composition, smoke=smoke)
    report.run = run_local(full, results, only_methods={label}, submission_id=sid,
                           isolate=(source.ref,), cell_timeout=timeout,
                           show_progress=show_progress, sandbox=sandbox)
    return report


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)
