"""Train one run: the training cell's body, and its snapshot for resuming an interrupted one.

Returns the rows it produced (the executor writes them). The cell sets its own thread
count and seeds, so the same spec gives the same model whichever process or machine
trains it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import pickle
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import sandbox as sb
from bench.allocator import current_setting
from bench.api import Budget, Execution, ThreatModel, TrainContext
from bench.attacks import perturb
from bench.data.datasets import augment_batch, split_indices
from bench.grid.cells import TrainCell
from bench.measures import (
    count_nonzero_params,
    count_params,
    draw_audit_steps,
    inference_flops,
)
from bench.plugins import ENTRY_POINT_PREFIX, compose
from bench.results import store
from bench.results.provenance import (
    default_device,
    device_name,
    host,
    load_avg,
    versions_json,
)
from bench.results.schema import METHOD_TABLES, TABLES
from bench.work import sandboxed
from bench.work.loop import SNAPSHOT_FORMAT, ResumeError, accuracy, train
from bench.work.model import build_model, load_dataset, model_shape, threads
from bench.work.rows import now

log = logging.getLogger(__name__)


def run_train_cell(cell: TrainCell, results: Path, device: torch.device | None = None,
                   progress=None, *, sandbox: bool = False, plugins: tuple[str, ...] = (),
                   timeout: float | None = None, audit_steps: list[int] | None = None
                   ) -> tuple[dict, dict[str, list[dict]]]:
    """Train ``cell``; save its checkpoint; return (runs row, {table: rows}): its history
    and whatever the method emitted.

    ``sandbox``: train in a bubblewrap sandbox (:mod:`bench.sandbox`) that receives only
    the training and validation tensors and the method's files (``plugins``), stopped
    after ``timeout`` seconds; this process then loads the checkpoint it left with
    ``weights_only=True`` into the registered architecture and measures it. Without it,
    the method runs here (trusted code only: ``--no-sandbox``). Either way the accuracy,
    inference FLOPs and parameter counts are measured here, from the weights alone.
    ``audit_steps``: which steps the FLOP meter audits (default: drawn from the OS's
    random source)."""
    device = device or default_device()
    comp = compose(cell.method.name, cell.method.config)
    data = load_dataset(cell.dataset, cell.data_root)
    train_ids, val_ids = training_split(data.train_y, cell.val_size, cell.seed, cell.train_size)
    augment_kind = cell.augment or data.augment
    if audit_steps is None:
        steps = cell.epochs * math.ceil(len(train_ids) / cell.batch_size)
        audit_steps = draw_audit_steps(steps)
    if sandbox:
        weights, trained = _train_sandboxed(cell, data, train_ids, val_ids, augment_kind,
                                            results, device, progress, plugins, timeout,
                                            audit_steps)
        model = _load_checked(cell.arch, data, weights, device)
    else:
        model, trained = _train_here(cell, comp, data, train_ids, val_ids, augment_kind,
                                     results, device, progress, audit_steps)
    with threads(cell.threads):
        measured = {
            "clean_acc": accuracy(model, data.test_x.to(device), data.test_y.to(device)),
            "val_acc": (accuracy(model, data.train_x[val_ids].to(device),
                                 data.train_y[val_ids].to(device)) if len(val_ids) else None),
            "infer_flops": inference_flops(model, tuple(data.train_x.shape[1:])),
            "n_test": len(data.test_y), "augment": augment_kind, "train_size": len(train_ids),
            "sandbox": "bwrap" if sandbox else "none",
        }
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    store.atomic_write_bytes(store.checkpoint_path(results, cell.key),
                             lambda f: torch.save(state_dict, f))
    run = _run_row(cell, comp, model, trained, measured, device)
    tables = {"history": [history_row(cell.key, row) for row in trained.history]}
    for table, rows in trained.tables.items():
        tables[table] = [{**r, "run_id": cell.key} for r in rows]
    return run, tables


@dataclass
class Trained:
    """What training reports back: costs, history, the method's tables and run fields.

    From a sandbox these come from the method's own process (the FLOP meter runs there);
    ``cpu_seconds`` and ``peak_mem_bytes`` are the kernel's count of that process, which
    the ``uncounted_work`` check holds the FLOPs against."""

    train_flops: float
    train_samples: int
    train_seconds: float
    peak_mem_bytes: int | None
    history: list[dict]
    resumed_after: list[int]
    tables: dict[str, list[dict]] = field(default_factory=dict)
    run_fields: dict = field(default_factory=dict)
    execution: Execution = field(default_factory=Execution)
    cpu_seconds: float | None = None
    startup_cpu_seconds: float | None = None


def _train_here(cell: TrainCell, comp, data, train_ids, val_ids, augment_kind: str,
                results: Path, device: torch.device, progress, audit_steps
                ) -> tuple[torch.nn.Module, Trained]:
    """Train in this process (``--no-sandbox``): trusted code only."""
    cpu_before = time.process_time()
    with threads(cell.threads):
        torch.manual_seed(cell.seed)
        ctx = _context(cell, comp, data, train_ids, val_ids, device)
        # the model as built: training may swap ctx.model (torch.compile) meanwhile
        model = ctx.model
        augment = (None if augment_kind == "none"
                   else (lambda x, g: augment_batch(x, augment_kind, g)))
        snap_path = store.resume_path(results, cell.key)

        def save_snapshot(state: dict) -> None:
            state["cell_key"], state["versions"] = cell.key, versions_json()
            store.atomic_write_bytes(snap_path, lambda f: torch.save(state, f))

        try:
            stats = train(comp.base, comp.modifiers, ctx, augment=augment, progress=progress,
                          snapshot=save_snapshot, resume=read_snapshot(snap_path, cell.key),
                          audit_steps=audit_steps)
        except ResumeError as exc:
            log.warning("%s: %s; training from epoch 0", cell.describe(), exc)
            store.remove(snap_path)
            return _train_here(cell, comp, data, train_ids, val_ids, augment_kind, results,
                               device, progress, audit_steps)
    return model, Trained(stats.train_flops, stats.train_samples, stats.train_seconds,
                          # on CUDA the device's peak; on the CPU this process's max RSS
                          stats.peak_mem_bytes if device.type == "cuda" else _max_rss_bytes(),
                          stats.history, stats.resumed_after,
                          ctx.tables, ctx.run_fields, ctx.execution,
                          cpu_seconds=time.process_time() - cpu_before)


def _max_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _train_sandboxed(cell: TrainCell, data, train_ids, val_ids, augment_kind: str,
                     results: Path, device: torch.device, progress, plugins, timeout,
                     audit_steps) -> tuple[dict, Trained]:
    """Train in a bubblewrap sandbox (see :func:`run_train_cell`); (weights, Trained)."""
    snap_path = store.resume_path(results, cell.key)
    resume = read_snapshot(snap_path, cell.key)  # checked here: versions, cell
    job = {
        "key": cell.key, "versions": versions_json(), "method": cell.method.name,
        "method_config": cell.method.config, "arch": cell.arch, "model": model_shape(data),
        "seed": cell.seed, "threads": cell.threads, "epochs": cell.epochs,
        "batch_size": cell.batch_size, "threat_norm": cell.threat_norm,
        "threat_eps": cell.threat_eps, "device": str(device), "augment": augment_kind,
        "snapshots": True, "execution": dataclasses.asdict(cell.execution),
        "audit_steps": list(audit_steps),
    }
    tensors = {"train_x": data.train_x[train_ids], "train_y": data.train_y[train_ids],
               "val_x": data.train_x[val_ids], "val_y": data.train_y[val_ids],
               "train_ids": train_ids}
    try:
        weights, out, outcome = run_sandboxed(job, tensors, plugins, device=device,
                                              timeout=timeout, resume=resume,
                                              snap_path=snap_path, progress=progress)
    except SandboxFailed as exc:
        if exc.resume_rejected and resume is not None:
            log.warning("%s: the resume snapshot does not fit; training from epoch 0",
                        cell.describe())
            store.remove(snap_path)
            return _train_sandboxed(cell, data, train_ids, val_ids, augment_kind, results,
                                    device, progress, plugins, timeout, audit_steps)
        raise
    trained = _trained_from(out, cell.execution)
    trained.cpu_seconds = outcome.cpu_seconds
    trained.startup_cpu_seconds = startup_cpu_seconds()
    trained.peak_mem_bytes = max(outcome.max_rss_bytes, trained.peak_mem_bytes or 0)
    return weights, trained


def run_sandboxed(job: dict, tensors: dict[str, torch.Tensor], plugins=(), *,
                  device: torch.device, timeout: float | None = None,
                  resume: dict | None = None, snap_path=None, progress=None
                  ) -> tuple[dict, dict, sb.Outcome]:
    """Run one training ``job`` (bench.work.sandboxed's input) in the sandbox, with the
    method's files ``plugins``; (weights, its report, the kernel's outcome). Raises
    :class:`SandboxFailed` with the reason when it does not finish."""
    with tempfile.TemporaryDirectory(prefix="perbench-sandbox-") as tmp:
        scratch = Path(tmp)
        # the method's file(s): all of its code the sandbox sees (an installed entry point
        # is in site-packages, which the sandbox sees read-only, and loads by itself)
        plugins = [s for s in plugins if not s.startswith(ENTRY_POINT_PREFIX)]
        for source in plugins:
            (scratch / "plugins").mkdir(exist_ok=True)
            shutil.copy2(source, scratch / "plugins" / Path(source).name)
        if resume is not None:
            torch.save(resume, scratch / sandboxed.SNAPSHOT)
        job = {**job, "plugins": [f"plugins/{Path(s).name}" for s in plugins]}
        torch.save({"job": json.dumps(job), **tensors}, scratch / sandboxed.INPUT)
        outcome = sb.run([sys.executable, "-m", "bench.work.sandboxed", "/scratch"], scratch,
                         limits=sb.Limits(memory_bytes=_memory_limit(device),
                                          wall_seconds=timeout),
                         readonly=sb.python_paths(), packages=sb.package_dirs("bench", "methods"),
                         masked=sb.masked_data_dirs(), env=_sandbox_env(),
                         poll=_Watch(scratch, snap_path, progress))
        if not outcome.ok:
            raise SandboxFailed(_failure_reason(outcome),
                                resume_rejected="ResumeError" in outcome.stderr)
        try:
            out = json.loads((scratch / sandboxed.OUTPUT).read_text())
            weights = torch.load(scratch / sandboxed.MODEL, map_location="cpu",
                                 weights_only=True)
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
            raise SandboxFailed(f"training left no readable result ({type(exc).__name__}: "
                                f"{exc})") from None
    return weights, out, outcome


class SandboxFailed(RuntimeError):
    """The sandboxed training process failed; ``str()`` is one line saying why."""

    def __init__(self, reason: str, resume_rejected: bool = False):
        super().__init__(reason)
        self.resume_rejected = resume_rejected


class _Watch:
    """Polled while the sandbox runs: hands each finished epoch to ``progress``, copies each
    new resume snapshot into the results store (so a killed run resumes), and relays a
    planted fault (bench.faults) by dying as a ``kill -9`` of this process would."""

    def __init__(self, scratch: Path, snap_path, progress) -> None:
        self.scratch, self.snap_path, self.progress = scratch, snap_path, progress
        self.lines = 0
        self.snapshot_mtime = None

    def __call__(self) -> None:
        lines_path = self.scratch / sandboxed.PROGRESS
        if self.progress is not None and lines_path.exists():
            lines = lines_path.read_text().splitlines()
            for line in lines[self.lines:]:
                with contextlib.suppress(ValueError):
                    self.progress(json.loads(line))
            self.lines = len(lines)
        snap = self.scratch / sandboxed.SNAPSHOT
        if self.snap_path is not None and snap.exists() \
                and snap.stat().st_mtime_ns != self.snapshot_mtime:
            self.snapshot_mtime = snap.stat().st_mtime_ns
            data = snap.read_bytes()
            store.atomic_write_bytes(self.snap_path, lambda f: f.write(data))
        if (self.scratch / _FAULT).exists():
            once = os.environ.get("PERBENCH_FAULT_ONCE")
            if once:
                with contextlib.suppress(FileExistsError):
                    Path(once).touch(exist_ok=False)
            os.kill(os.getpid(), signal.SIGKILL)


_FAULT = ".fault"


@functools.cache
def startup_cpu_seconds() -> float:
    """CPU seconds a sandboxed training process spends before training (interpreter, torch,
    PERBench, the sandbox itself): the part of a run's ``train_cpu_seconds`` that no FLOP
    explains. Measured once per host, Python and library versions, and kept in the user's
    cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, ``perbench/sandbox_startup.json``)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "perbench" \
        / "sandbox_startup.json"
    key = f"{host()} {sys.executable} {versions_json()}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), float):
        return known[key]
    with tempfile.TemporaryDirectory(prefix="perbench-sandbox-") as tmp:
        out = sb.run([sys.executable, "-m", "bench.work.sandboxed", "--startup"], Path(tmp),
                     readonly=sb.python_paths(), packages=sb.package_dirs("bench", "methods"),
                     limits=sb.Limits(wall_seconds=300))
    if not out.ok:
        return 0.0
    with contextlib.suppress(OSError):  # a read-only home: measure again next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({**known, key: out.cpu_seconds}))
    return out.cpu_seconds


def _sandbox_env() -> dict[str, str]:
    """PERBENCH_* settings the sandboxed process needs. A planted fault (bench.faults) is
    relayed: the sandbox writes /scratch/.fault and this process, which the test's kill is
    meant for, dies; its fire-once marker lives out of the sandbox's view, so it is checked
    here, before, and created here, on relay."""
    env = {k: v for k, v in os.environ.items()
           if k.startswith("PERBENCH_") and k not in ("PERBENCH_FAULT", "PERBENCH_FAULT_ONCE")}
    once = os.environ.get("PERBENCH_FAULT_ONCE")
    if os.environ.get("PERBENCH_FAULT") and not (once and Path(once).exists()):
        env["PERBENCH_FAULT"] = os.environ["PERBENCH_FAULT"]
        env["PERBENCH_FAULT_RELAY"] = f"/scratch/{_FAULT}"
    return env


def _memory_limit(device: torch.device) -> int | None:
    """The sandbox's address-space limit: PERBENCH_SANDBOX_MEMORY_GB, else 90% of this
    machine's memory; none on CUDA, whose driver reserves far more address space than it
    uses."""
    if device.type == "cuda":
        return None
    if os.environ.get("PERBENCH_SANDBOX_MEMORY_GB"):
        return int(float(os.environ["PERBENCH_SANDBOX_MEMORY_GB"]) * 2**30)
    return int(0.9 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _failure_reason(outcome: sb.Outcome) -> str:
    """The sandbox's reason, with the method's own error when it raised one: the last
    ``Type: message`` line of its traceback and the innermost frame's file and line."""
    if outcome.timed_out or outcome.returncode > 128 or outcome.returncode < 0:
        return outcome.reason()
    lines = outcome.stderr.strip().splitlines()
    frames = [ln for ln in lines if ln.strip().startswith('File "')]
    errors = [ln for ln in lines if ln and not ln.startswith(" ") and ":" in ln
              and not ln.startswith("Traceback")]
    if not errors:
        return outcome.reason()
    where = ""
    if frames:
        frame = frames[-1].strip()
        file = frame.split('"')[1].rsplit("/", 1)[-1]
        line = frame.split("line ")[-1].split(",")[0]
        where = f" ({file}:{line})"
    return f"{errors[-1].strip()}{where}"


def _trained_from(out: dict, execution: Execution) -> Trained:
    """The sandbox's report, type-checked: it comes from the method's process."""
    try:
        trained = Trained(
            train_flops=float(out["train_flops"]), train_samples=int(out["train_samples"]),
            train_seconds=float(out["train_seconds"]),
            peak_mem_bytes=None if out["peak_mem_bytes"] is None else int(out["peak_mem_bytes"]),
            history=[dict(r) for r in out["history"]],
            resumed_after=[int(e) for e in out["resumed_after"]],
            tables={str(t): [dict(r) for r in rows] for t, rows in out["tables"].items()},
            run_fields=dict(out["run_fields"]), execution=execution)
    except (KeyError, TypeError, ValueError) as exc:
        raise SandboxFailed(f"training reported a malformed result ({exc!r})") from None
    unknown = set(trained.tables) - set(METHOD_TABLES)
    if unknown:
        raise SandboxFailed(f"training reported tables {sorted(unknown)}; methods may write "
                            f"{list(METHOD_TABLES)}")
    return trained


def _load_checked(arch: str, data, weights: dict, device: torch.device) -> torch.nn.Module:
    """The registered architecture with ``weights`` loaded, or SandboxFailed saying which
    keys, shapes or dtypes do not match it."""
    model = build_model(data, arch)
    expected = model.state_dict()
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in weights.values()):
        raise SandboxFailed(f"the checkpoint is not a state dict of tensors for {arch!r}")
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [f"{k}: {tuple(weights[k].shape)} {weights[k].dtype} (expected "
             f"{tuple(v.shape)} {v.dtype})" for k, v in expected.items()
             if k in weights and (weights[k].shape != v.shape or weights[k].dtype != v.dtype)]
    if missing or unexpected or wrong:
        parts = [f"missing keys {missing[:5]}" if missing else "",
                 f"unexpected keys {unexpected[:5]}" if unexpected else "",
                 f"mismatched {wrong[:3]}" if wrong else ""]
        raise SandboxFailed(f"the checkpoint does not fit arch {arch!r}: "
                            + "; ".join(p for p in parts if p))
    model.load_state_dict(weights)
    return model.to(device).eval()


def _context(cell: TrainCell, comp, data, train_ids, val_ids, device: torch.device
             ) -> TrainContext:
    """The method's view of the run: its split of the training set, the model, the budget."""
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


def _run_row(cell: TrainCell, comp, model: torch.nn.Module, trained: Trained, measured: dict,
             device: torch.device) -> dict:
    """The ``runs`` row of a trained run, with the fields the method set (``run_fields``)."""
    run = {
        "run_id": cell.key, "leaderboard": cell.leaderboard, "method": cell.method.display,
        "method_config": json.dumps({"name": cell.method.name, **comp.resolved_config()},
                                    sort_keys=True),
        "dataset": cell.dataset, "arch": cell.arch, "seed": cell.seed, "epochs": cell.epochs,
        "batch_size": cell.batch_size, "threads": cell.threads, "status": "ok", "error": None,
        "train_flops": trained.train_flops, "train_samples": trained.train_samples,
        "train_seconds": trained.train_seconds, "peak_mem_bytes": trained.peak_mem_bytes,
        "train_cpu_seconds": trained.cpu_seconds,
        "startup_cpu_seconds": trained.startup_cpu_seconds,
        "params": count_params(model), "nonzero_params": count_nonzero_params(model),
        **measured,
        "checkpoint": store.checkpoint_relpath(cell.key), "submission_id": None, "host": host(),
        "device": device_name(device), "versions": versions_json(), "created_at": now(),
        "load_avg": load_avg(),
        "nondeterminism": nondeterminism(device), "precision": trained.execution.precision,
        "channels_last": trained.execution.channels_last,
        "compiled": trained.execution.compile,
        "resumed_after_epochs": (json.dumps(trained.resumed_after) if trained.resumed_after
                                 else None),
        "allocator": current_setting(),
    }
    unknown = set(trained.run_fields) - set(TABLES["runs"].names)
    if unknown:
        raise ValueError(f"run_fields {sorted(unknown)} are not columns of the runs table")
    protected = set(trained.run_fields) & (set(run) - _METHOD_RUN_FIELDS)
    if protected:
        raise ValueError(f"run_fields {sorted(protected)} are the harness's to measure")
    run.update(trained.run_fields)
    return run


# Columns of ``runs`` a method may fill itself (``ctx.run_fields``): what it did, never what
# it is measured by.
_METHOD_RUN_FIELDS = {"sparsity"}


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
