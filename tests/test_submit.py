"""`perbench submit` end to end on digits: a real external method (tests/fixtures/plugins/
noisy_erm.py) through the tiny fixture grid, each validation failure with its message and
nothing written, failures inside the grid isolated to their cell, entry-point discovery."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from file_hashes import file_hashes

from bench.cli import main
from bench.results.store import read_table

PLUGINS = Path(__file__).parent / "fixtures" / "plugins"
NOISY = PLUGINS / "noisy_erm.py"
TEMPLATE = Path(__file__).parent.parent / "docs" / "method_template.py"

# A grid with two seeds and only the cheapest evaluation: the failure tests need a second
# training cell (the grid must go on) but no attack depth.
SMALL_GRID = """\
name: small
datasets: [digits]
archs: [small_cnn]
methods: [erm]
train_threat: {norm: Linf, eps: 0.1}
attacks:
  - {name: fgsm, norm: Linf, eps: 0.1}
hardware: []
seeds: [0, 1]
budget: {epochs: 2, batch_size: 64, n_eval: 50, val_size: 0.1}
threads: 1
checks: {enabled: false}
"""




@pytest.fixture(scope="module")
def submitted(finished, tmp_path_factory):
    """The finished tiny grid plus noisy_erm submitted through the CLI; (board, before, out)."""
    board = tmp_path_factory.mktemp("submit") / "tiny"
    shutil.copytree(finished, board)
    before = file_hashes(board / "results")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["submit", str(NOISY), "--leaderboard", str(board), "--authors", "A. Tester",
                     "--license", "MIT", "--link", "https://example.org/noisy", "--quiet"])
    assert code == 0
    return board, before, out.getvalue()


def test_submission_runs_every_cell_of_the_grid(submitted):
    board, _, out = submitted
    results = board / "results"
    runs = read_table(results, "runs")
    mine = runs[runs["method"] == "noisy_erm"]
    assert len(mine) == 1 and (mine["status"] == "ok").all()
    run_id = mine["run_id"].iloc[0]
    rob = read_table(results, "robustness")
    rob = rob[rob["run_id"] == run_id]
    assert set(rob.loc[rob["sweep"].isna(), "attack"]) == {"fgsm", "pgd"}
    assert rob["sweep"].notna().any()  # the ε sweep ran
    assert (read_table(results, "corruption")["run_id"] == run_id).sum() == 3 * 3
    assert (read_table(results, "checks")["run_id"] == run_id).any()
    assert (read_table(results, "latency")["run_id"] == run_id).any()
    transfer = read_table(results, "transfer")
    pairs = set(zip(transfer["source_run"], transfer["target_run"]))
    others = set(runs.loc[runs["method"] != "noisy_erm", "run_id"])
    # both directions against every built-in run, and the method against itself
    assert {(run_id, o) for o in others} | {(o, run_id) for o in others} | {(run_id, run_id)} <= pairs
    assert "noisy_erm ranks #" in out and "of 3 on digits/small_cnn" in out


def test_submission_is_recorded_with_its_code(submitted):
    board, _, _ = submitted
    results = board / "results"
    subs = read_table(results, "submissions")
    assert len(subs) == 1
    sub = subs.iloc[0]
    assert (sub["name"], sub["authors"], sub["license"], sub["kind"]) == (
        "noisy_erm", "A. Tester", "MIT", "method")
    assert sub["code_sha"] == hashlib.sha256(NOISY.read_bytes()).hexdigest()
    assert (results / sub["code_path"]).read_bytes() == NOISY.read_bytes()
    assert json.loads(sub["config"])["noisy_erm"]["sigma"] == 0.1
    runs = read_table(results, "runs")
    assert runs.loc[runs["method"] == "noisy_erm", "submission_id"].tolist() == [sub["submission_id"]]
    assert runs.loc[runs["method"] != "noisy_erm", "submission_id"].isna().all()


def test_submission_leaves_earlier_results_untouched(submitted):
    board, before, _ = submitted
    after = file_hashes(board / "results")
    assert {k: after.get(k) for k in before} == before
    assert len(after) > len(before)


def test_show_traces_every_row_to_its_source(submitted, capsys):
    board, _, _ = submitted
    assert main(["show", str(board), "--provenance"]) == 0
    text = capsys.readouterr().out
    assert "noisy_erm" in text and "built-in" in text and "A. Tester" in text
    records = {r["method"]: r for r in json.loads(_show(board, "json", capsys))}
    assert records["erm"]["source"] == "built-in"
    assert records["noisy_erm"]["source"].startswith("submission ")
    assert all(r["code_version"].startswith("perbench ") and r["config"] for r in records.values())


def test_app_traces_every_row_to_its_source(submitted, monkeypatch):
    from test_app import run_page

    board, _, _ = submitted
    at = run_page(monkeypatch, board)
    table, provenance = (d.value for d in at.dataframe)
    sources = dict(zip(table["method"], table["source"]))
    assert sources["erm"] == "built-in" and sources["noisy_erm"].endswith("(A. Tester)")
    row = provenance[provenance["method"] == "noisy_erm"].iloc[0]
    assert '"sigma": 0.1' in row["config"] and "code " in row["code_version"]


def test_the_readme_example_is_a_valid_submission(tmp_path):
    """The method printed in the README passes submit's checks and trial run."""
    from bench.execute.isolation import call_isolated
    from bench.execute.submission import composition_for, smoke_test
    from bench.plugins import load_file

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = readme.split("# noisy_erm.py\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme_method.py"
    path.write_text(code.replace('"noisy_erm"', '"readme_noisy_erm"'))  # the fixture owns the name
    source = load_file(path)
    assert composition_for(source, None, None) == "readme_noisy_erm"
    result = call_isolated(smoke_test, source.ref, "readme_noisy_erm", {}, "digits",
                           "small_cnn", None, ("Linf", 0.1), plugins=[source.ref], timeout=300)
    assert result["steps"] == 2


def _show(board: Path, fmt: str, capsys) -> str:
    assert main(["show", str(board), "--format", fmt]) == 0
    return capsys.readouterr().out


def test_resubmitting_runs_nothing_new(submitted, capsys):
    board, _, _ = submitted
    before = file_hashes(board / "results")
    assert main(["submit", str(NOISY), "--leaderboard", str(board), "--authors", "A. Tester",
                 "--license", "MIT", "--link", "https://example.org/noisy", "--quiet"]) == 0
    assert "trained 0, evaluated 0, timed 0, failed 0" in capsys.readouterr().out
    assert file_hashes(board / "results") == before


# -- validation failures: a message saying what to fix, exit code 2, nothing written --------

HEAD = """\
import torch
from bench.api import Base, Batch, TrainContext
from bench.api import SGDBase, SGDConfig
from bench.plugins import METHODS
"""

BAD = {
    "syntax_error": ("", "def loss(self, ctx, batch)\n    return 1\n",
                     ["syntax_error.py:5: syntax error"]),
    "no_method": ("", "X = 1\n", ["registers no method", "@register_method"]),
    "missing_config": ("", """\
@METHODS.register()
class NoConfig(Base):
    name = "t_no_config"
    def loss(self, ctx, batch):
        batch.logits = ctx.model(batch.x)
        return ctx.criterion(batch.logits, batch.y).mean()
""", ["has no Config", "MethodConfig"]),
    "wrong_return": ("", """\
@METHODS.register()
class WrongReturn(SGDBase):
    name = "t_wrong_return"
    def loss(self, ctx, batch):
        batch.logits = ctx.model(batch.x)
        return float(ctx.criterion(batch.logits, batch.y).mean())
""", ["t_wrong_return.loss returned float", "scalar torch.Tensor", "Nothing was written"]),
    "raises": ("", """\
@METHODS.register()
class Raises(SGDBase):
    name = "t_raises"
    def loss(self, ctx, batch):
        raise ValueError("my bug")
""", ["ValueError: my bug", "raises.py:9"]),
    "nan_loss": ("", """\
@METHODS.register()
class NaNLoss(SGDBase):
    name = "t_nan"
    def loss(self, ctx, batch):
        batch.logits = ctx.model(batch.x)
        return ctx.criterion(batch.logits, batch.y).mean() * float("nan")
""", ["NonFiniteLossError", "loss is nan"]),
    "hangs": ("", """\
import time
@METHODS.register()
class Hangs(SGDBase):
    name = "t_hangs"
    def loss(self, ctx, batch):
        time.sleep(600)
""", ["timeout: no result after 8 s"]),
    "clashes": ("", """\
@METHODS.register()
class Clash(SGDBase):
    name = "erm"
    def loss(self, ctx, batch):
        return None
""", ["importing it raised ValueError", "'erm' is already registered"]),
    "import_error": ("import not_a_module_anywhere\n", "", ["importing it raised",
                                                            "ModuleNotFoundError"]),
}


@pytest.fixture(scope="module")
def small_board(tmp_path_factory):
    board = tmp_path_factory.mktemp("small") / "small"
    board.mkdir()
    (board / "grid.yaml").write_text(SMALL_GRID)
    return board


@pytest.mark.parametrize("case", sorted(BAD))
def test_broken_submission_says_what_to_fix_and_writes_nothing(case, finished, tmp_path, capsys):
    extra_head, body, expected = BAD[case]
    path = tmp_path / f"{case}.py"
    path.write_text(HEAD + extra_head + body)
    board = tmp_path / "tiny"
    shutil.copytree(finished, board)
    before = file_hashes(board / "results")
    # only the hang waits for the limit; the others get time for a slow, busy machine
    limit = "8" if case == "hangs" else "300"
    code = main(["submit", str(path), "--leaderboard", str(board), "--validate-timeout", limit,
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    for text in expected:
        assert text in err, err
    assert file_hashes(board / "results") == before


def test_unknown_leaderboard_and_bad_options(tmp_path, capsys):
    assert main(["submit", str(NOISY), "--leaderboard", str(tmp_path / "nope")]) == 2
    assert "no such leaderboard folder" in capsys.readouterr().err
    board = tmp_path / "b"
    board.mkdir()
    (board / "grid.yaml").write_text(SMALL_GRID)
    assert main(["submit", str(NOISY), "--leaderboard", str(board), "--config", "{sigma"]) == 2
    assert "--config: not valid JSON" in capsys.readouterr().err
    assert main(["submit", str(NOISY), "--leaderboard", str(board), "--config",
                 '{"sigma": -1}']) == 2
    assert "greater than or equal to 0" in capsys.readouterr().err
    assert main(["submit", str(NOISY), "--leaderboard", str(board), "--name", "erm"]) == 2
    assert "already a method" in capsys.readouterr().err
    assert main(["submit", str(NOISY), "--leaderboard", str(board), "--on", "pgd_at"]) == 2
    assert "is a base" in capsys.readouterr().err
    assert not (board / "results").exists()


# -- failures inside the grid: that cell fails with its reason, the grid goes on -------------

CELL_FAILURES = {
    # seed 0 fails after the trial run (which trains one epoch); seed 1 must still train.
    # The crash is a real one (a segfault): in the sandbox the process is its namespace's
    # init, which a kill(2) of itself cannot stop, but a fault the kernel raises does.
    "crash": ("import ctypes", "ctypes.string_at(0)", "killed by SIGSEGV"),
    "hang": ("import time", "time.sleep(600)", "timeout: no result after 45 s"),
    "nan": ("", "return loss * float('nan')", "loss is nan at epoch 1"),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "hang" else c
                                  for c in sorted(CELL_FAILURES)])  # the hang waits 45 s
def test_a_failing_cell_is_recorded_and_the_grid_goes_on(case, small_board, tmp_path, capsys):
    imports, action, reason = CELL_FAILURES[case]
    path = tmp_path / f"late_{case}.py"
    path.write_text(textwrap.dedent(f"""\
        {imports}
        from bench.api import METHODS, SGDBase, SGDConfig

        @METHODS.register()
        class Late(SGDBase):
            \"\"\"Trains, then fails in epoch 1 of seed 0 ({case}).\"\"\"
            name = "t_late_{case}"
            Config = SGDConfig

            def loss(self, ctx, batch):
                batch.logits = ctx.model(batch.x)
                loss = ctx.criterion(batch.logits, batch.y).mean()
                if ctx.seed == 0 and ctx.epoch == 1:
                    {action}
                return loss
        """))
    board = tmp_path / "small"
    shutil.copytree(small_board, board)
    # only the hang waits for its limit; a busy 2-core machine needs seconds per process
    limit = "45" if case == "hang" else "600"
    assert main(["submit", str(path), "--leaderboard", str(board), "--timeout", limit,
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "failed 1" in out and reason in out
    runs = read_table(board / "results", "runs").set_index("seed")
    assert runs.loc[0, "status"] == "failed" and reason in runs.loc[0, "error"]
    assert runs.loc[0, "submission_id"] == runs.loc[1, "submission_id"]
    assert runs.loc[1, "status"] == "ok"
    rob = read_table(board / "results", "robustness")
    assert rob["run_id"].tolist() == [runs.loc[1, "run_id"]]  # only the trained seed attacked


# -- entry points ----------------------------------------------------------------------------

@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package with a `perbench.methods` entry point, "installed" as a .dist-info folder
    on sys.path (what pip would leave in site-packages), without a network install."""
    pkg = tmp_path / "perbench_testplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(NOISY.read_text().replace('"noisy_erm"', '"ep_noisy_erm"')
                                     .replace("class NoisyERM(", "class EPNoisyERM("))
    info = tmp_path / "perbench_testplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: perbench-testplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[perbench.methods]\nep_noisy = perbench_testplugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "ep_noisy"
    sys.modules.pop("perbench_testplugin", None)


def test_entry_point_is_discovered_loaded_and_runs_isolated(installed_plugin, small_board):
    from bench.execute.isolation import call_isolated
    from bench.execute.submission import smoke_test
    from bench.plugins import ENTRY_POINT_PREFIX, entry_points, load_installed_plugins

    assert installed_plugin in [ep.name for ep in entry_points()]
    assert installed_plugin in load_installed_plugins()
    from bench.plugins import METHODS

    assert "ep_noisy_erm" in METHODS.list()
    # a fresh process finds it from the same sys.path, as submit's cells do
    result = call_isolated(smoke_test, ENTRY_POINT_PREFIX + installed_plugin, "ep_noisy_erm",
                           {}, "digits", "small_cnn", None, ("Linf", 0.1),
                           plugins=[ENTRY_POINT_PREFIX + installed_plugin], timeout=300)
    assert result["steps"] == 2 and result["loss"] > 0 and result["flops"] > 0


def test_unknown_entry_point_lists_the_installed_ones(installed_plugin, small_board, capsys):
    assert main(["submit", "no_such_plugin", "--leaderboard", str(small_board)]) == 2
    err = capsys.readouterr().err
    assert "no entry point 'no_such_plugin'" in err and installed_plugin in err


def test_the_template_is_a_valid_submission(small_board):
    """docs/method_template.py passes the same checks and trial run as a submission."""
    from bench.execute.isolation import call_isolated
    from bench.execute.submission import composition_for, smoke_test
    from bench.plugins import load_file

    source = load_file(TEMPLATE)
    assert composition_for(source, None, None) == "template_mix"
    result = call_isolated(smoke_test, source.ref, "template_mix", {}, "digits", "small_cnn",
                           None, ("Linf", 0.1), plugins=[source.ref], timeout=300)
    assert result["steps"] == 2 and pd.notna(result["loss"])
