"""Finding and importing methods: the built-ins of the ``methods`` package, a submitted
``.py`` file, and installed packages' ``perbench.methods`` entry points.

Importing a method's module is what registers it (``@METHODS.register()`` runs at import);
here we only decide which modules to import, import each once, and say which methods it
added. Submitting (trial run, grid, ranks) is :mod:`bench.execute.submission`.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
import traceback
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench._method_registry import METHODS
from bench.errors import SubmissionError

ENTRY_POINT_GROUP = "perbench.methods"
ENTRY_POINT_PREFIX = "entry-point:"


@dataclass(frozen=True)
class Source:
    """Where a submitted method's code comes from."""

    ref: str  # what isolated processes load: a file path or "entry-point:<name>"
    module: str  # the module that registered the methods
    methods: tuple[str, ...]  # registry names it added
    code_sha: str  # sha256 of the file; for an entry point, of "<dist>==<version>"
    path: Path | None = None  # the file, when it is one


_loaded = False


def load_builtin_methods() -> None:
    """Import every module of the top-level ``methods`` package, then every installed
    ``perbench.methods`` entry point, so they register."""
    global _loaded
    if _loaded:
        return
    # Here, not at the top: ``methods`` modules import bench.api, and a process that only
    # reads tables never needs them.
    import methods

    for info in pkgutil.iter_modules(methods.__path__):
        # Private modules register nothing (helpers the methods import themselves, and
        # ``_common``, a deprecated shim that warns when imported).
        if not info.name.startswith("_"):
            importlib.import_module(f"methods.{info.name}")
    _loaded = True  # before the plugins: loading them calls back here
    load_installed_plugins()  # installed packages' `perbench.methods` entry points


def load_source(ref: str) -> Source:
    """Load a file path or ``entry-point:<name>``; idempotent within a process."""
    if ref.startswith(ENTRY_POINT_PREFIX):
        return load_entry_point(ref.removeprefix(ENTRY_POINT_PREFIX))
    return load_file(Path(ref))


def load_file(path: Path) -> Source:
    load_builtin_methods()  # so a name clash with a built-in is caught, not a silent shadow
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file (give the path of the .py file that "
                              "defines your method)")
    if path.suffix != ".py":
        raise SubmissionError(f"{path}: expected a Python file ending in .py")
    data = path.read_bytes()
    try:
        compile(data, str(path), "exec")
    except SyntaxError as exc:
        line = (exc.text or "").rstrip()
        raise SubmissionError(f"{path}:{exc.lineno}: syntax error: {exc.msg}"
                              + (f"\n    {line.strip()}" if line else "")) from None
    sha = hashlib.sha256(data).hexdigest()
    # One module per file content: loading the same file twice reuses it (the registry
    # refuses a second class under the same name), an edited file is a new submission.
    module_name = f"perbench_submission_{sha[:16]}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        before = harness_fingerprint()
        registered = set(METHODS.list())
        try:
            with _import_guard(path):
                spec.loader.exec_module(module)
        except Exception as exc:
            _unload(module_name, before, registered)
            raise SubmissionError(f"{path}: importing it raised {_where(exc, path)}") from None
        changed = sorted(k for k, (_, _, v) in harness_fingerprint().items()
                         if k in before and before[k][2] is not v)
        if changed:
            _unload(module_name, before, registered)
            raise SubmissionError(
                f"{path}: importing it replaced the harness's own code ({', '.join(changed[:5])}"
                f"{', ...' if len(changed) > 5 else ''}); a method may not patch PERBench or "
                "torch. Nothing was written.")
    methods = methods_of(module_name)
    if not methods:
        raise SubmissionError(
            f"{path}: registers no method. Decorate your class with @METHODS.register() "
            "(from bench.api import METHODS; the older @register_method does the same); "
            "see docs/method_template.py")
    return Source(ref=str(path.resolve()), module=module_name, methods=methods,
                  code_sha=sha, path=path.resolve())


def _unload(module_name: str, before: dict, registered: set[str]) -> None:
    """Undo a refused import: the harness's code as it was, the module and whatever it
    registered gone (loading the file again imports it again, and is refused again)."""
    for owner, attr, value in before.values():
        if vars(owner).get(attr) is not value:
            setattr(owner, attr, value)
    for name in set(METHODS.list()) - registered:
        METHODS.unregister(name)
    sys.modules.pop(module_name, None)


# What a submitted file may not do while the driver imports it (Python's audit events,
# PEP 578): change files, connect, or start programs. Its methods run in the sandbox; at
# import it only defines and registers them.
_REFUSED_AT_IMPORT = ("os.remove", "os.unlink", "os.rename", "os.replace", "os.rmdir",
                      "os.truncate", "os.chmod", "os.chown", "os.link", "os.symlink",
                      "os.mkdir", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                      "socket.connect", "socket.bind", "socket.sendto", "subprocess.Popen",
                      "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                      "os.forkpty", "os.kill", "os.killpg")
_guarded: list[str] = []  # the file being imported, while it is (one at a time)


def _audit(event: str, args: tuple) -> None:
    if not _guarded:
        return
    writing = event == "open" and len(args) > 1 and (
        (isinstance(args[1], str) and any(c in args[1] for c in "wax+"))
        or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
    if writing or event in _REFUSED_AT_IMPORT:
        what = args[0] if args and not isinstance(args[0], int) else event
        raise PermissionError(f"{event} {what!r} while importing {_guarded[-1]}: a submitted "
                              "file may only define and register its methods when imported; "
                              "its methods run in the training sandbox")


_hooked = False


@contextlib.contextmanager
def _import_guard(path: Path):
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)  # for the process's life; idle unless a file is importing
        _hooked = True
    _guarded.append(str(path))
    # importing writes no bytecode caches meanwhile: those writes are the import system's
    was, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        yield
    finally:
        sys.dont_write_bytecode = was
        _guarded.pop()


def harness_fingerprint() -> dict[str, tuple]:
    """Identity of every function and class the harness measures with: the attributes of
    each loaded ``bench`` module, of ``torch`` and ``torch.nn.Module``. A submitted file is
    imported in the driver (to name and check its methods) but trained only in the
    sandbox; this catches the one thing its import could do to the driver's measurements,
    replacing their code (``bench.work.loop.accuracy = ...``, ``torch.save = ...``)."""
    import torch

    found = {}
    owners = [(n, m) for n, m in list(sys.modules.items())
              if m is not None and (n == "bench" or n.startswith("bench."))]
    owners += [("torch", torch), ("torch.nn.Module", torch.nn.Module),
               ("torch.Tensor", torch.Tensor)]
    for name, owner in owners:
        for attr, value in list(vars(owner).items()):
            if callable(value) and not attr.startswith("__"):
                found[f"{name}.{attr}"] = (owner, attr, value)
    return found


def entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_entry_point(name: str) -> Source:
    """The entry point ``name`` of group ``perbench.methods`` (``name = pkg.module`` or
    ``pkg.module:Class`` in the package's metadata); importing its module registers it."""
    load_builtin_methods()
    found = [ep for ep in entry_points() if ep.name == name]
    if not found:
        names = ", ".join(ep.name for ep in entry_points()) or "none installed"
        raise SubmissionError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r}; "
                              f"installed: {names}")
    ep = found[0]
    try:
        ep.load()
    except Exception as exc:
        raise SubmissionError(f"entry point {name!r} ({ep.value}): loading it raised "
                              f"{_where(exc)}") from None
    module = ep.value.split(":")[0].strip()
    methods = methods_of(module)
    if not methods:
        raise SubmissionError(f"entry point {name!r} ({ep.value}) registers no method; "
                              "decorate the class with @METHODS.register()")
    dist = getattr(ep, "dist", None)
    version = f"{dist.name}=={dist.version}" if dist is not None else ep.value
    return Source(ref=ENTRY_POINT_PREFIX + name, module=module, methods=methods,
                  code_sha=hashlib.sha256(version.encode()).hexdigest())


def load_installed_plugins() -> list[str]:
    """Import every installed ``perbench.methods`` entry point so grids can name them;
    a broken one is reported and skipped (one bad package must not stop every grid)."""
    loaded = []
    for ep in entry_points():
        try:
            load_entry_point(ep.name)
            loaded.append(ep.name)
        except SubmissionError as exc:
            warnings.warn(f"skipping plugin: {exc}", stacklevel=2)
    return loaded


def methods_of(module: str) -> tuple[str, ...]:
    """The methods that ``module`` registered."""
    return tuple(n for n in METHODS.list() if getattr(METHODS.get(n), "__module__", None) == module)


def _where(exc: BaseException, path: Path | None = None) -> str:
    """The exception and the deepest line of the submitter's file it passed through."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if path is not None and Path(f.filename).resolve() == path.resolve()]
    frame = (mine or frames or [None])[-1]
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"
