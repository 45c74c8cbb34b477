"""The sandbox primitive (bench/sandbox.py) against what it promises, each
promise tried from inside by a small script: no network, no view of data or the
checkout, no new processes, limits, and the kernel's own count of the CPU time."""
from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import pytest

from bench import sandbox as sb

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sb.unavailable_reason() is not None,
                                reason=f"no sandbox here: {sb.unavailable_reason()}")


def run(code: str, scratch: Path, **kw) -> sb.Outcome:
    packages = sb.package_dirs("bench", "methods")
    return sb.run([sys.executable, "-c", textwrap.dedent(code)], scratch,
                  readonly=sb.python_paths(), packages=packages,
                  masked=sb.masked_data_dirs(), limits=kw.pop("limits", sb.Limits(wall_seconds=120)),
                  **kw)


def test_no_network_even_to_a_listener_on_loopback(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        out = run(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=3)
                print("CONNECTED")
            except OSError as exc:
                print("refused:", exc)
            """, tmp_path)
        server.settimeout(0.5)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever arrived
    assert out.ok, out.stderr
    assert "CONNECTED" not in out.stderr and "refused" in out.stderr


def test_files_outside_scratch_are_hidden_or_read_only(tmp_path):
    out = run(f"""
        import os, bench, sklearn.datasets
        print("repo:", os.path.exists({str(REPO / 'leaderboards')!r}), os.path.exists({str(REPO / 'tests')!r}))
        print("root home:", os.path.exists("/root/.bashrc") or os.path.exists("/root/.cache"))
        try:
            sklearn.datasets.load_digits()
            print("DIGITS READ")
        except OSError:
            print("digits hidden")
        try:
            open(os.path.join(os.path.dirname(bench.__file__), "planted.py"), "w")
            print("WROTE INTO bench")
        except OSError as exc:
            print("read-only:", exc.errno)
        open("/scratch/out.txt", "w").write("written")
        print("bench from", bench.__file__)
        """, tmp_path)
    assert out.ok, out.stderr
    assert "repo: False False" in out.stderr
    assert "root home: False" in out.stderr
    assert "digits hidden" in out.stderr and "DIGITS READ" not in out.stderr
    assert "read-only: 30" in out.stderr
    assert "bench from /perbench/bench/__init__.py" in out.stderr
    assert (tmp_path / "out.txt").read_text() == "written"


def test_threads_run_and_processes_are_refused(tmp_path):
    out = run("""
        import os, subprocess, threading, multiprocessing
        t = threading.Thread(target=lambda: print("thread ran"))
        t.start(); t.join()
        for what, start in [("fork", os.fork), ("subprocess", lambda: subprocess.run(["true"])),
                            ("multiprocessing", lambda: multiprocessing.get_context("spawn")
                             .Process(target=print).start())]:
            try:
                if start() == 0:
                    os._exit(0)
                print(what, "STARTED")
            except PermissionError:
                print(what, "refused")
        """, tmp_path)
    assert out.ok, out.stderr
    assert "thread ran" in out.stderr
    for what in ("fork", "subprocess", "multiprocessing"):
        assert f"{what} refused" in out.stderr


def test_cpu_time_of_every_thread_is_counted(tmp_path):
    # two threads spinning in numpy-free pure Python for ~1 s of CPU each (the GIL lets one
    # run at a time, so ~1 s wall... in total 1 s of CPU): the kernel's count must cover it
    out = run("""
        import threading, time
        def spin():
            end = time.thread_time() + 0.6
            while time.thread_time() < end:
                pass
        ts = [threading.Thread(target=spin) for _ in range(2)]
        [t.start() for t in ts]; [t.join() for t in ts]
        """, tmp_path)
    assert out.ok, out.stderr
    assert out.cpu_seconds >= 1.2
    assert out.max_rss_bytes > 1 << 20


def test_wall_clock_limit_stops_a_hang(tmp_path):
    out = run("while True: pass", tmp_path, limits=sb.Limits(wall_seconds=2))
    assert out.timed_out and not out.ok
    assert out.reason().startswith("timeout")


def test_cpu_limit(tmp_path):
    out = run("while True: pass", tmp_path, limits=sb.Limits(cpu_seconds=1, wall_seconds=60))
    assert not out.ok and not out.timed_out
    assert "CPU-time limit" in out.reason()


def test_memory_limit(tmp_path):
    out = run("x = bytearray(3 << 30)", tmp_path,
              limits=sb.Limits(memory_bytes=1 << 30, wall_seconds=60))
    assert not out.ok
    assert "MemoryError" in out.reason()


def test_seccomp_program_shape():
    prog = sb.seccomp_program("x86_64")
    assert len(prog) % 8 == 0 and len(prog) // 8 < 64
    with pytest.raises(sb.SandboxUnavailable):
        sb.seccomp_program("sparc")


def test_an_environment_under_tmp_stays_visible(tmp_path):
    # a virtualenv in /tmp (as a fresh clone's often is) is bound over the private /tmp
    env = tmp_path / "venv"
    env.mkdir()
    (env / "marker.txt").write_text("here")
    out = sb.run([sys.executable, "-c", f"print(open({str(env / 'marker.txt')!r}).read())"],
                 tmp_path / "scratch", readonly=[*sb.python_paths(), str(env)],
                 limits=sb.Limits(wall_seconds=60))
    assert out.ok, out.stderr
    assert "here" in out.stderr
