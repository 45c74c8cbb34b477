"""RobustBench interoperability: runs exported as model_info entries, entries imported as
``reference`` rows, and both through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_leaderboard import write_results

from bench.cli import main
from bench.interop.robustbench import export_entry, import_entries
from bench.results import store
from bench.views.leaderboard import load_tables
from bench.views.render import render

RICE = {"link": "https://arxiv.org/abs/2002.11569",
        "name": "Overfitting in adversarially robust deep learning",
        "authors": "Leslie Rice, Eric Wong, J. Zico Kolter", "additional_data": False,
        "number_forward_passes": 1, "dataset": "cifar10", "venue": "ICML 2020",
        "architecture": "WideResNet-34-20", "eps": "8/255", "clean_acc": "85.34",
        "reported": "58", "autoattack_acc": "53.42"}
# an entry with only the paper's claim: imported, marked "reported"
CLAIM = {**{k: v for k, v in RICE.items() if k != "autoattack_acc"},
         "name": "A claim", "architecture": "ResNet-18", "reported": "61.5"}


@pytest.fixture
def results(tmp_path) -> Path:
    return write_results(tmp_path / "fixture" / "results")


@pytest.fixture
def clone(tmp_path) -> Path:
    """A RobustBench clone's layout: two valid entries and one broken file."""
    root = tmp_path / "robustbench"
    folder = root / "model_info" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    (folder / "Rice2020Overfitting.json").write_text(json.dumps(RICE))
    (folder / "Claim2024Only.json").write_text(json.dumps(CLAIM))
    (folder / "Broken2021.json").write_text('{"name": "truncated", "clean_acc": ')
    return root


def test_export_fields(results):
    entry = export_entry(load_tables(results), "trades-s1")
    assert {k: entry[k] for k in ("name", "architecture", "dataset", "threat_model", "eps")} == {
        "name": "trades", "architecture": "small_cnn", "dataset": "digits",
        "threat_model": "Linf", "eps": "0.1"}
    assert (entry["clean_acc"], entry["autoattack_acc"], entry["reported"]) == (
        "86.00", "60.00", "60.00")
    assert entry["additional_data"] is False and entry["number_forward_passes"] == 1
    ours = entry["perbench"]
    assert (ours["run_id"], ours["seed"], ours["n_examples"]) == ("trades-s1", 1, 200)
    assert ours["train_flops"] == pytest.approx(1.4e13)
    json.dumps(entry)  # numpy scalars would fail here


def test_export_eps_as_255ths_and_threat_model_choice(results):
    store.write_cell(results, "robustness", "trades-s0-aa-l2", [{
        "run_id": "trades-s0", "attack": "autoattack", "norm": "L2", "eps": 8 / 255,
        "n_examples": 100, "clean_acc": 0.88, "robust_acc": 0.123456, "status": "ok"}])
    tables = load_tables(results)
    assert export_entry(tables, "trades-s0")["threat_model"] == "Linf"  # the most common
    entry = export_entry(tables, "trades-s0", threat_model="L2")
    assert (entry["eps"], entry["autoattack_acc"]) == ("8/255", "12.35")
    assert entry["perbench"]["n_examples"] == 100


def test_export_errors(tmp_path, results):
    tables = load_tables(results)
    with pytest.raises(ValueError, match=r"'nope'.*known runs \(7\): erm-s0, erm-s1, fast_at-s0"):
        export_entry(tables, "nope")
    with pytest.raises(ValueError, match="'fast_at-s0' failed.*NonFiniteLossError"):
        export_entry(tables, "fast_at-s0")
    with pytest.raises(ValueError, match="'erm-s0' has no finished autoattack result at L2"):
        export_entry(tables, "erm-s0", threat_model="L2")
    no_aa = load_tables(write_results(tmp_path / "r", attacks=("fgsm", "pgd")))
    with pytest.raises(ValueError, match=r"'erm-s0'.*fgsm \(Linf 0.1\), pgd \(Linf 0.1\)"):
        export_entry(no_aa, "erm-s0")


def test_import_clone_skips_broken_file(clone):
    with pytest.warns(UserWarning, match="Broken2021.json"):
        rows = import_entries(clone, "cifar10", "Linf")
    by_entry = {r["entry"]: r for r in rows}
    assert sorted(by_entry) == ["Claim2024Only", "Rice2020Overfitting"]
    rice = by_entry["Rice2020Overfitting"]
    assert rice["eps"] == pytest.approx(8 / 255) and rice["threat_model"] == "Linf"
    assert rice["clean_acc"] == pytest.approx(0.8534) and rice["robust_acc"] == pytest.approx(0.5342)
    assert (rice["robust_attack"], rice["source"], rice["reported_elsewhere"]) == (
        "autoattack", "robustbench", True)
    assert rice["venue"] == "ICML 2020" and rice["link"].startswith("https://arxiv.org")
    claim = by_entry["Claim2024Only"]
    assert claim["robust_attack"] == "reported" and claim["robust_acc"] == pytest.approx(0.615)


def test_import_single_file_and_bad_entries(tmp_path, clone):
    one = clone / "model_info" / "cifar10" / "Linf" / "Rice2020Overfitting.json"
    assert [r["entry"] for r in import_entries(one, "cifar10", "Linf")] == ["Rice2020Overfitting"]
    bad = tmp_path / "NoEps.json"
    bad.write_text(json.dumps({k: v for k, v in RICE.items() if k != "eps"}))
    with pytest.warns(UserWarning, match=r"NoEps.json: missing fields \['eps'\]"):
        assert import_entries(bad, "cifar10", "Linf") == []
    bad.write_text(json.dumps({**RICE, "clean_acc": "high"}))
    with pytest.warns(UserWarning, match="clean_acc='high' is not a percentage"):
        assert import_entries(bad, "cifar10", "Linf") == []
    with pytest.raises(FileNotFoundError, match="model_info/cifar100/Linf.*expected"):
        import_entries(clone, "cifar100", "Linf")


def test_cli_round_trip(tmp_path, clone, capsys):
    board = tmp_path / "fixture"
    write_results(board / "results")
    args = ["robustbench", "import", str(board), str(clone), "--dataset", "cifar10",
            "--threat-model", "Linf"]
    with pytest.warns(UserWarning, match="Broken2021"):
        assert main(args) == 0
    with pytest.warns(UserWarning, match="Broken2021"):
        assert main(args) == 0  # the same import again overwrites, no duplicates
    assert len(list((board / "results" / "reference").glob("*.parquet"))) == 1
    assert len(store.read_table(board / "results", "reference")) == 2
    capsys.readouterr()

    assert main(["show", str(board)]) == 0
    out = capsys.readouterr().out
    ranked, reference = out.split("Reported elsewhere (RobustBench; not run by PERBench)")
    assert "trades" in ranked and "Overfitting" not in ranked
    assert "Overfitting in adversarially robust deep learning" in reference
    assert "85.34" in reference and "53.42" in reference and "61.50 (reported)" in reference
    assert "Linf 8/255" in reference and "trades" not in reference
    assert "Reported elsewhere" in render(board / "results", "markdown")
    assert "Overfitting" not in render(board / "results", "csv")  # the ranked frame only

    out_file = tmp_path / "entry.json"
    assert main(["robustbench", "export", str(board), "--run", "pgd_at-s0", "-o",
                 str(out_file)]) == 0
    assert json.loads(out_file.read_text())["autoattack_acc"] == "55.00"
    assert capsys.readouterr().out == f"wrote {out_file}\n"
    assert main(["robustbench", "export", str(board), "--run", "pgd_at-s0"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "pgd_at"


def test_cli_errors_exit_2(tmp_path, capsys):
    board = tmp_path / "fixture"
    write_results(board / "results")
    missing = tmp_path / "no-clone"
    assert main(["robustbench", "import", str(board), str(missing), "--dataset", "cifar10",
                 "--threat-model", "Linf"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["robustbench", "export", str(board), "--run", "nope"]) == 2
    assert "unknown run 'nope'" in capsys.readouterr().err
    assert not (board / "results" / "reference").exists()
