"""Cheating submissions against the sandbox, the parent's own measurements, the FLOP meter
and the uncounted_work check: each cheat (tests/fixtures/cheats/) is submitted the way a
user would (``perbench submit``) to a small digits board trained once, and each must end
refused (exit 2, the reason naming what it tried, nothing written), failed (its cell's
``runs`` row names what it tried), or charged/flagged; whatever happens, the board's other
files stay byte for byte as they were.

The cheats that only show at scale act only on more than 100 training points, so they pass
the 2-step trial run on 16 points and reach the grid.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch
from file_hashes import file_hashes

from bench import sandbox as sb
from bench.cli import main
from bench.results.store import read_table

pytestmark = pytest.mark.skipif(sb.unavailable_reason() is not None,
                                reason=f"no sandbox here: {sb.unavailable_reason()}")

HERE = Path(__file__).parent
CHEATS = HERE / "fixtures" / "cheats" / "cheats.py"
IMPORT_PATCH = HERE / "fixtures" / "cheats" / "import_patch.py"
IMPORT_WRITE = HERE / "fixtures" / "cheats" / "import_write.py"
NOISY = HERE / "fixtures" / "plugins" / "noisy_erm.py"

GRID = """\
name: integrity
datasets: [digits]
archs: [small_cnn]
methods: [erm]
train_threat: {norm: Linf, eps: 0.1}
attacks:
  - {name: fgsm, norm: Linf, eps: 0.1}
hardware: []
seeds: [0]
budget: {epochs: 2, batch_size: 64, n_eval: 50, val_size: 0.1}
threads: 1
checks: {n_eval: 50}
"""




@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    """The small board with its one trusted run (erm, sandboxed): read-only, copy it."""
    dest = tmp_path_factory.mktemp("integrity") / "board"
    dest.mkdir()
    (dest / "grid.yaml").write_text(GRID)
    assert main(["run", str(dest), "--quiet"]) == 0
    return dest


@pytest.fixture(scope="module")
def erm_run(board) -> pd.Series:
    runs = read_table(board / "results", "runs")
    [row] = runs.itertuples(index=False)
    return pd.Series(row._asdict())


@pytest.fixture
def copy(board, tmp_path) -> Path:
    dest = tmp_path / "board"
    shutil.copytree(board, dest)
    return dest


class Submitted:
    """What one submission left: exit code, output, and the board before and after."""

    def __init__(self, board: Path, code: int, out: str, err: str, before: dict[str, str]):
        self.board, self.code, self.out, self.err, self.before = board, code, out, err, before
        self.after = file_hashes(board)

    @property
    def results(self) -> Path:
        return self.board / "results"

    def assert_others_untouched(self) -> None:
        """Every file the board had before is byte for byte the same."""
        assert {k: self.after.get(k) for k in self.before} == self.before

    @property
    def run(self) -> pd.Series:
        runs = read_table(self.results, "runs")
        mine = runs[runs["submission_id"].notna()]
        assert len(mine) == 1, runs
        return mine.iloc[0]

    def caught(self) -> tuple[str, str]:
        """("refused", the message) or ("failed", the cell's error); the board otherwise
        untouched either way."""
        self.assert_others_untouched()
        if self.code == 2:
            assert "failed its trial run" in self.err and "Nothing was written" in self.err
            assert self.after == self.before
            print("refused:", self.err.strip())  # shown by pytest -rA
            return "refused", self.err
        assert self.code == 0, self.err
        run = self.run
        assert run["status"] == "failed", f"the cheat trained: {run.to_dict()}"
        print("failed:", run["error"])
        return "failed", run["error"]

    def trained(self) -> pd.Series:
        self.assert_others_untouched()
        assert self.code == 0, self.err
        run = self.run
        assert run["status"] == "ok", run["error"]
        assert run["sandbox"] == "bwrap"
        return run

    def check(self, name: str) -> pd.Series:
        checks = read_table(self.results, "checks")
        rows = checks[(checks["run_id"] == self.run["run_id"]) & (checks["check"] == name)]
        assert len(rows) == 1, checks[checks["run_id"] == self.run["run_id"]]
        return rows.iloc[0]


def submit(board: Path, method: str | None, config: dict | None = None, *,
           source: Path = CHEATS, extra: tuple[str, ...] = ("--validate-timeout", "120",
                                                            "--timeout", "300")) -> Submitted:
    before = file_hashes(board)
    args = ["submit", str(source), "--leaderboard", str(board), "--quiet", *extra]
    if method is not None:
        args += ["--method", method]
    if config is not None:
        args += ["--config", json.dumps(config)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return Submitted(board, code, out.getvalue(), err.getvalue(), before)


# -- an honest submission, and the built-in run with and without the sandbox -----------------

def test_an_honest_submission_is_sandboxed_and_passes_uncounted_work(copy):
    s = submit(copy, None, source=NOISY)
    run = s.trained()
    assert run["train_cpu_seconds"] > 0 and run["startup_cpu_seconds"] > 0
    check = s.check("uncounted_work")
    assert bool(check["passed"]), check["detail"]


def test_the_trusted_run_is_sandboxed_and_passes_uncounted_work(board, erm_run):
    assert erm_run["sandbox"] == "bwrap" and erm_run["status"] == "ok"
    checks = read_table(board / "results", "checks")
    row = checks[checks["check"] == "uncounted_work"].iloc[0]
    assert bool(row["passed"]), row["detail"]


def test_sandboxed_and_unsandboxed_training_agree(board, tmp_path, one_thread):
    """The built-in erm cell trained in the sandbox and in this process: the same weights,
    FLOPs and history (seconds aside), and the same measured accuracy."""
    from bench.grid.cells import train_cells
    from bench.grid.spec import load_spec
    from bench.work.train import run_train_cell

    [cell] = train_cells(load_spec(board / "grid.yaml"))
    out = {}
    for sandbox in (True, False):
        results = tmp_path / f"sandbox_{sandbox}"
        run, tables = run_train_cell(cell, results, torch.device("cpu"), sandbox=sandbox,
                                     audit_steps=[3])
        weights = torch.load(results / "checkpoints" / f"{cell.key}.pt", weights_only=True)
        history = [{k: v for k, v in r.items() if "seconds" not in k} for r in tables["history"]]
        out[sandbox] = (run, weights, history)
    (run_sb, w_sb, h_sb), (run_here, w_here, h_here) = out[True], out[False]
    assert (run_sb["sandbox"], run_here["sandbox"]) == ("bwrap", "none")
    assert w_sb.keys() == w_here.keys()
    for k in w_sb:
        assert torch.equal(w_sb[k], w_here[k]), k
    assert h_sb == h_here
    for col in ("train_flops", "train_samples", "clean_acc", "val_acc", "infer_flops", "params"):
        assert run_sb[col] == run_here[col], col


# -- (i) the test data from disk ---------------------------------------------------------------

@pytest.mark.parametrize("method, expected", [
    ("cheat_reads_sklearn", ["FileNotFoundError", "digits.csv.gz"]),
    ("cheat_reads_datasets_dir", ["FileNotFoundError", "/usr/share/datasets/digits/test.pt"]),
])
def test_reading_the_test_data_from_disk_fails(method, expected, copy):
    how, reason = submit(copy, method).caught()
    assert how == "refused"
    for text in expected:
        assert text in reason, reason


# -- (ii) the test split in memory -------------------------------------------------------------

def test_the_harness_loader_cannot_reach_the_test_split(copy):
    how, reason = submit(copy, "cheat_calls_loader").caught()
    assert how == "refused"
    assert "FileNotFoundError" in reason and "digits.csv.gz" in reason, reason


def test_no_tensor_in_the_sandbox_holds_more_than_train_and_val(copy, erm_run):
    s = submit(copy, "cheat_scans_memory")
    run = s.trained()
    history = read_table(s.results, "history")
    extra = json.loads(history[history["run_id"] == run["run_id"]]["extra"].iloc[0])
    assert extra["tensors_seen"] > 0
    # the dataset's training set (train + val) is 1437 images; the test split adds 360
    n_train_val = 1437
    assert extra["largest_tensor_rows"] <= n_train_val, extra
    assert extra["distinct_images_seen"] <= n_train_val, extra


# -- (iii) the harness's measurements ----------------------------------------------------------

def _honest_accuracy(results: Path, run: pd.Series) -> float:
    from bench.work.model import build_model, load_dataset

    data = load_dataset("digits", None)
    model = build_model(data, "small_cnn")
    model.load_state_dict(torch.load(results / run["checkpoint"], weights_only=True))
    model.eval()
    with torch.no_grad():
        pred = model(data.test_x).argmax(1)
    return int((pred == data.test_y).sum()) / len(data.test_y)


@pytest.fixture(scope="module")
def patched_accuracy(board, tmp_path_factory) -> Submitted:
    dest = tmp_path_factory.mktemp("patched") / "board"
    shutil.copytree(board, dest)
    return submit(dest, "cheat_patches_accuracy")


def test_patching_accuracy_inside_the_sandbox_changes_nothing_measured(patched_accuracy):
    s = patched_accuracy
    run = s.trained()
    assert run["clean_acc"] < 1.0 and run["val_acc"] < 1.0
    assert run["clean_acc"] == _honest_accuracy(s.results, run)


@pytest.mark.xfail(strict=True, reason=(
    "the history rows (val_acc, train_acc, train_loss, flops_so_far, seconds_so_far) are "
    "the sandboxed process's own report (bench/work/sandboxed.py out['history'], taken as "
    "is by bench/work/train.py _trained_from); with bench.work.loop.accuracy patched "
    "inside the sandbox every epoch's val_acc reads 1.0, and the Method page "
    "(bench/views/method.py CURVES) plots it as the run's validation curve"))
def test_the_validation_curve_is_not_the_methods_to_report(patched_accuracy):
    s = patched_accuracy
    run = s.trained()
    history = read_table(s.results, "history")
    curve = history.loc[history["run_id"] == run["run_id"], "val_acc"].tolist()
    assert curve[-1] == pytest.approx(run["val_acc"]), curve


def test_patching_accuracy_at_import_is_refused(copy, monkeypatch):
    import bench.work.loop
    import bench.work.train

    # restored after the test whatever the submission did to this process
    monkeypatch.setattr(bench.work.loop, "accuracy", bench.work.loop.accuracy)
    monkeypatch.setattr(bench.work.train, "accuracy", bench.work.train.accuracy)
    s = submit(copy, None, source=IMPORT_PATCH)
    assert s.code == 2 and s.after == s.before
    assert "replaced the harness's own code" in s.err, s.err
    assert "bench.work.train.accuracy" in s.err


def test_a_refused_import_patch_is_undone_and_stays_refused(monkeypatch):
    import bench.work.loop
    import bench.work.train
    from bench.errors import SubmissionError
    from bench.plugins import load_file

    honest = bench.work.train.accuracy
    monkeypatch.setattr(bench.work.loop, "accuracy", bench.work.loop.accuracy)
    monkeypatch.setattr(bench.work.train, "accuracy", honest)
    for _ in range(2):
        with pytest.raises(SubmissionError, match="replaced the harness's own code"):
            load_file(IMPORT_PATCH)
        assert bench.work.train.accuracy is honest


@pytest.mark.parametrize("mode, expected", [
    ("extra_key", "unexpected keys ['planted.lookup_table']"),
    ("wrong_shape", "mismatched"),
])
def test_a_forged_checkpoint_fails_its_cell(mode, expected, copy):
    how, reason = submit(copy, "cheat_forges_checkpoint", {"mode": mode}).caught()
    assert how == "failed"
    assert "the checkpoint does not fit arch 'small_cnn'" in reason and expected in reason, reason


# -- (iv) the meter --------------------------------------------------------------------------

def test_work_behind_a_paused_meter_is_flagged(copy, erm_run):
    s = submit(copy, "cheat_pauses_meter")
    run = s.trained()
    assert run["train_cpu_seconds"] > erm_run["train_cpu_seconds"] + 3
    check = s.check("uncounted_work")
    assert not bool(check["passed"]), check["detail"]


def test_a_meter_made_to_read_zero_is_flagged(copy):
    s = submit(copy, "cheat_zeroes_meter")
    run = s.trained()
    assert run["train_flops"] == 0  # the cheat worked on the number...
    check = s.check("uncounted_work")  # ...and must be caught here
    assert not bool(check["passed"]), check["detail"]


# -- (v) memoized steps --------------------------------------------------------------------

def test_extra_work_on_steps_guessed_unaudited_fails_at_an_audited_step(copy,
                                                                        monkeypatch):
    """Audits are drawn from os.urandom in the submitting process; the test fixes them
    (step 5) by replacing that draw there, then submits as a user would."""
    import bench.work.train

    monkeypatch.setattr(bench.work.train, "draw_audit_steps", lambda steps, per=32: [5])
    how, reason = submit(copy, "cheat_guesses_audits").caught()
    assert how == "failed"
    assert "MeterMismatchError" in reason and "training step 5" in reason, reason


# -- (vi) pre-training in hooks ----------------------------------------------------------

@pytest.mark.parametrize("method, extra", [
    ("cheat_pretrains_in_optimizer", ()),
    ("cheat_pretrains_on_start", ("--on", "erm")),
])
def test_pretraining_in_hooks_is_charged(method, extra, copy, erm_run):
    s = submit(copy, method, extra=extra)
    run = s.trained()
    # 6 extra epochs on top of the budget's 2: about 4x erm's FLOPs
    assert run["train_flops"] > 3 * erm_run["train_flops"], (run["train_flops"],
                                                               erm_run["train_flops"])


# -- (vii) work outside the meter ----------------------------------------------------------

@pytest.mark.parametrize("method", ["cheat_works_in_thread", "cheat_works_in_numpy"])
def test_work_the_meter_does_not_see_is_flagged(method, copy, erm_run):
    s = submit(copy, method)
    run = s.trained()
    check = s.check("uncounted_work")
    assert not bool(check["passed"]), check["detail"]
    assert run["train_flops"] < 1.5 * erm_run["train_flops"]  # it was not charged: flagged


@pytest.mark.parametrize("method", ["cheat_subprocess", "cheat_multiprocessing"])
def test_new_processes_are_refused(method, copy):
    how, reason = submit(copy, method).caught()
    assert how == "refused"
    assert "PermissionError" in reason, reason


# -- (viii) the network --------------------------------------------------------------------

def test_no_connection_reaches_a_listener(copy):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        s = submit(copy, "cheat_phones_home", {"host": "127.0.0.1", "port": port})
        server.settimeout(0.5)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever arrived
    how, reason = s.caught()
    assert how == "refused"
    assert "ConnectionRefusedError" in reason or "Network is unreachable" in reason, reason


# -- (ix) the leaderboard's files and PERBench's code ----------------------------------------

@pytest.mark.parametrize("action", ["delete", "overwrite", "create"])
def test_the_leaderboards_files_are_out_of_reach(action, copy, erm_run):
    results = copy / "results"
    target = {"delete": results / erm_run["checkpoint"],
              "overwrite": results / "runs" / f"{erm_run['run_id']}.parquet",
              "create": results / "checkpoints"}[action]
    how, reason = submit(copy, "cheat_touches_files",
                         {"target": str(target), "action": action}).caught()
    assert how == "refused"
    assert "FileNotFoundError" in reason and str(target) in reason, reason


def test_perbenchs_code_on_disk_is_read_only(copy):
    import bench.work.train

    code = Path(bench.work.train.__file__).read_bytes()
    how, reason = submit(copy, "cheat_patches_harness_on_disk").caught()
    assert how == "refused"
    assert "Read-only file system" in reason, reason
    assert Path(bench.work.train.__file__).read_bytes() == code


def test_a_file_acting_at_import_cannot_touch_the_board(copy, monkeypatch, erm_run):
    target = copy / "results" / erm_run["checkpoint"]
    monkeypatch.setenv("CHEAT_IMPORT_TARGET", str(target))
    s = submit(copy, None, source=IMPORT_WRITE)
    assert target.exists(), "the import deleted another run's checkpoint"
    s.assert_others_untouched()


# -- (x) resources ------------------------------------------------------------------------

def test_a_hang_is_stopped(copy):
    how, reason = submit(copy, "cheat_hangs", extra=("--validate-timeout", "10",
                                                     "--timeout", "10")).caught()
    assert how == "refused"
    assert "timeout: no result after 10 s" in reason, reason


def test_unbounded_allocation_hits_the_memory_limit(copy, monkeypatch):
    monkeypatch.setenv("PERBENCH_SANDBOX_MEMORY_GB", "4")
    how, reason = submit(copy, "cheat_allocates").caught()
    assert how == "refused"
    assert "MemoryError" in reason, reason
