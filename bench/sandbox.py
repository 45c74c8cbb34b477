"""Run a command in a namespace sandbox (bubblewrap), measured from outside.

A submitted method's training runs here, so that nothing it does can reach what the
leaderboard measures it by. The sandbox (Debian package ``bubblewrap``, command ``bwrap``):

- **no network**: a new network namespace, loopback included (nothing listens there);
- **files**: a read-only view of the system and of the Python environment (interpreter,
  site-packages, PERBench's own packages), with the data roots masked (Debian's datasets,
  ``$PERBENCH_DATA``, scikit-learn's bundled data); no home directory, no leaderboard
  folder, no other run's files; one writable scratch directory (the cell's inputs, its
  checkpoint and its resume snapshots) and a private ``/tmp``;
- **no new processes**: a seccomp filter refuses ``fork``/``vfork`` and any ``clone`` that
  does not make a thread, so ``subprocess``, ``multiprocessing`` and ``os.fork`` fail with
  ``PermissionError``. Threads are allowed (torch's own pool is threads) and their CPU time
  is counted: the process is the sandbox's PID 1 (``--as-pid-1``), so the kernel adds its
  time, every thread's, to the rusage the parent collects with ``wait4``;
- **limits**: address space (``RLIMIT_AS``, on CPU), CPU seconds (``RLIMIT_CPU``) and a
  wall-clock limit enforced by the parent, which kills the sandbox.

What it does not stop: a kernel exploit, or side channels (timing). The sandbox needs
user namespaces (``kernel.unprivileged_userns_clone``; root has them).
"""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "bubblewrap"  # Debian's (and most distributions') package providing `bwrap`
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc")
# Data a training process must not read: the test split lives there.
DATA_DIRS = ("/usr/share/datasets",)


class SandboxUnavailable(RuntimeError):
    """No working bubblewrap here: the message names the package and the alternatives."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None  # address space; None: unlimited
    cpu_seconds: float | None = None
    wall_seconds: float | None = None


@dataclass(frozen=True)
class Outcome:
    returncode: int  # negative: killed by that signal
    cpu_seconds: float  # user + system, every thread of the sandboxed process
    max_rss_bytes: int
    wall_seconds: float
    stderr: str  # its last 20 kB
    timed_out: bool = False
    limits: Limits = Limits()

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def reason(self) -> str:
        """One line on why the sandboxed process did not succeed."""
        if self.timed_out:
            return f"timeout: no result after {self.wall_seconds:.0f} s; the sandbox was stopped"
        # bwrap passes on its command's death by signal N as exit code 128 + N
        sig = -self.returncode if self.returncode < 0 else (
            self.returncode - 128 if 128 < self.returncode < 160 else None)
        if sig is not None:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            cpu_limit = self.limits.cpu_seconds
            if cpu_limit is not None and self.cpu_seconds >= cpu_limit:
                return (f"CPU-time limit: the sandboxed process used {self.cpu_seconds:.0f} CPU "
                        f"seconds of the {cpu_limit:.0f} allowed and was killed ({name})")
            return f"the sandboxed process was killed by {name}"
        last = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        tail = last[-1] if last else "no message"
        return f"the sandboxed process exited with code {self.returncode}: {tail}"


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


_checked: dict[str, str | None] = {}


def unavailable_reason() -> str | None:
    """None when a sandbox can start here; else what is missing and how to get it."""
    exe = bwrap_path()
    if exe is None:
        return (f"bubblewrap is not installed (no `bwrap` on PATH): install the Debian package "
                f"{PACKAGE!r} (apt-get install -y {PACKAGE}), or run trusted code with "
                "--no-sandbox")
    if exe not in _checked:
        probe = subprocess.run([exe, "--unshare-all", "--ro-bind", "/", "/", "true"],
                               capture_output=True, text=True, timeout=30)
        _checked[exe] = None if probe.returncode == 0 else (
            f"bwrap cannot create namespaces here ({probe.stderr.strip() or probe.returncode}); "
            "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1), or "
            "run trusted code with --no-sandbox")
    return _checked[exe]


def install_hint() -> str:
    return f"apt-get install -y {PACKAGE}"


def ensure_available(install: bool = True, log=print) -> None:
    """Raise :class:`SandboxUnavailable` unless a sandbox can start; first, as root on a
    Debian-like system with bubblewrap missing, install it (what the README's set-up relies
    on)."""
    if bwrap_path() is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"perbench: bubblewrap (bwrap) is missing; installing Debian package {PACKAGE!r}")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=False, **quiet)
    reason = unavailable_reason()
    if reason is not None:
        raise SandboxUnavailable(reason)


# -- seccomp: threads yes, processes no ---------------------------------------------------

_ARCH = {  # machine: (AUDIT_ARCH_*, clone's number, fork-like syscalls' numbers)
    "x86_64": (0xC000003E, 56, (57, 58)),
    "aarch64": (0xC00000B7, 220, ()),
}
_CLONE3 = 435  # the same number on both
_CLONE_THREAD = 0x00010000


def seccomp_program(machine: str | None = None) -> bytes:
    """A classic-BPF seccomp filter (``struct sock_filter[]``) for ``bwrap --seccomp``.

    ``clone`` is allowed only with ``CLONE_THREAD``; ``fork``/``vfork`` fail with EPERM;
    ``clone3`` fails with ENOSYS, which makes glibc fall back to ``clone`` (whose flags a
    classic filter can read; clone3's live behind a pointer). Other architectures' system
    calls (x32's numbering included) are refused.
    """
    machine = machine or platform.machine()
    if machine not in _ARCH:
        raise SandboxUnavailable(f"no seccomp filter for {machine!r}; run with --no-sandbox")
    audit, clone, forks = _ARCH[machine]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit), (ret, 0, 0, eperm),  # seccomp_data.arch
            (ld, 0, 0, 0), (jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]  # .nr; x32 ABI
    for nr in forks:
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    prog += [(jeq, 0, 1, _CLONE3), (ret, 0, 0, enosys),
             (jeq, 1, 0, clone), (ret, 0, 0, allow),
             (ld, 0, 0, 16), (jset, 0, 1, _CLONE_THREAD),  # .args[0], low 32 bits: flags
             (ret, 0, 0, allow), (ret, 0, 0, eperm)]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


# -- what the sandbox sees ---------------------------------------------------------------

PACKAGES_AT = "/perbench"  # where PERBench's own packages appear inside (on PYTHONPATH)


def package_dirs(*modules: str) -> dict[str, str]:
    """{folder: where it appears inside} for PERBench's own packages. They appear under
    /perbench, first on the sandbox's PYTHONPATH, whatever the install: an editable install
    keeps them in a checkout whose other folders (leaderboards, results) must stay out of
    view, and the sandbox must run the very code the parent runs."""
    import importlib

    out = {}
    for name in modules:
        mod = importlib.import_module(name)
        for p in getattr(mod, "__path__", []):
            out[str(Path(p).resolve())] = f"{PACKAGES_AT}/{name}"
    return out


def python_paths() -> list[str]:
    """The interpreter's installation and the environment (site-packages included): import
    roots elsewhere on ``sys.path`` (a checkout, a test folder) stay out of view, PERBench's
    own packages being bound by :func:`package_dirs`."""
    prefixes = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                str(Path(sys.executable).resolve().parent.parent)}
    roots = [Path(p).resolve() for p in prefixes]
    extra = {p for p in sys.path if p and Path(p).is_dir()
             and any(r == Path(p).resolve() or r in Path(p).resolve().parents for r in roots)}
    return sorted(prefixes | extra)


def masked_data_dirs() -> list[str]:
    dirs = [d for d in DATA_DIRS if Path(d).exists()]
    if os.environ.get("PERBENCH_DATA"):
        dirs.append(os.environ["PERBENCH_DATA"])
    try:  # scikit-learn's bundled datasets (digits' test split is in there)
        import sklearn.datasets

        root = Path(sklearn.datasets.__file__).parent
        dirs += [str(root / d) for d in ("data", "descr", "images") if (root / d).is_dir()]
    except ImportError:
        pass
    return dirs


def bwrap_argv(command: Sequence[str], scratch: Path, seccomp_fd: int, *,
               readonly: Iterable[str] = (), packages: dict[str, str] | None = None,
               masked: Iterable[str] = (),
               env: dict[str, str] | None = None) -> list[str]:
    exe = bwrap_path()
    if exe is None:
        raise SandboxUnavailable(unavailable_reason() or "bwrap is missing")
    argv = [exe, "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session",
            "--seccomp", str(seccomp_fd), "--clearenv",
            # mounts apply in order, each over the ones before: the private /tmp first, so
            # an environment that lives under /tmp (a virtualenv there) is bound over it
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp"]
    for d in SYSTEM_DIRS:
        if Path(d).exists():
            argv += ["--ro-bind", d, d]
    seen = set(SYSTEM_DIRS)
    for p in readonly:
        if p not in seen and Path(p).exists():
            argv += ["--ro-bind", p, p]
            seen.add(p)
    for src, dest in (packages or {}).items():
        argv += ["--ro-bind", src, dest]
    for p in masked:  # an empty tmpfs over each: the folder exists, holding nothing
        if Path(p).exists():
            argv += ["--tmpfs", p]
    argv += ["--bind", str(scratch), "/scratch", "--chdir", "/scratch"]
    env = {"HOME": "/scratch", "TMPDIR": "/tmp", "PATH": "/usr/bin:/bin",
           "LANG": "C.UTF-8", **({"PYTHONPATH": PACKAGES_AT} if packages else {}), **(env or {})}
    for k, v in env.items():
        argv += ["--setenv", k, v]
    return argv + ["--", *command]


def run(command: Sequence[str], scratch: Path, *, limits: Limits = Limits(),
        readonly: Iterable[str] = (), packages: dict[str, str] | None = None,
        masked: Iterable[str] = (), env: dict[str, str] | None = None,
        poll: Callable[[], None] | None = None) -> Outcome:
    """Run ``command`` sandboxed with ``scratch`` as its only writable folder (/scratch
    inside); wait for it (or kill it at ``limits.wall_seconds``) and return what the kernel
    measured of it. ``poll()`` is called every 0.2 s meanwhile (progress, snapshots) and
    once more at the end."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, seccomp_program())  # < 1 kB: fits the pipe's buffer
    os.close(write_fd)
    argv = bwrap_argv(command, scratch, read_fd, readonly=readonly, packages=packages,
                      masked=masked, env=env)
    err_path = scratch / ".stderr"

    def set_limits() -> None:  # in the child, before exec: bwrap and the command inherit them
        if limits.memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if limits.cpu_seconds is not None:
            # soft = hard: the sandboxed process is its namespace's init, which ignores
            # SIGXCPU (no handler), so the hard limit's SIGKILL is what stops it
            cpu = int(limits.cpu_seconds) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))

    start = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                pass_fds=(read_fd,), preexec_fn=set_limits,
                                start_new_session=True)
    os.close(read_fd)
    timed_out = False
    deadline = None if limits.wall_seconds is None else start + limits.wall_seconds
    next_poll = start
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            if poll is not None and time.monotonic() >= next_poll:
                poll()
                next_poll = time.monotonic() + 0.2
            time.sleep(0.05)
    except BaseException:  # Ctrl-C, or poll() raising: the sandbox must not outlive us
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.wait4(proc.pid, 0)
        raise
    if poll is not None:
        poll()
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    stderr = err_path.read_bytes()[-20000:].decode(errors="replace")
    return Outcome(returncode=proc.returncode, cpu_seconds=usage.ru_utime + usage.ru_stime,
                   max_rss_bytes=usage.ru_maxrss * 1024, wall_seconds=time.monotonic() - start,
                   stderr=stderr, timed_out=timed_out, limits=limits)
