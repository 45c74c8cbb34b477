"""The Trade-offs, Method and Compare pages and the leaderboard's new columns, run headless
with streamlit's AppTest on full, empty, partial and failed fixture results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest
from test_leaderboard import run_row, write_results

from app._data import ENV_VAR
from bench.results import store

APP = Path(__file__).resolve().parent.parent / "app"
LEADERBOARD, TRADEOFFS, METHOD, COMPARE, CLAIMS, TRANSFER = (
    APP / "Leaderboard.py", APP / "pages" / "1_Trade-offs.py", APP / "pages" / "2_Method.py",
    APP / "pages" / "3_Compare.py", APP / "pages" / "4_Claims.py", APP / "pages" / "5_Transfer.py")
PAGES = [LEADERBOARD, TRADEOFFS, METHOD, COMPARE, CLAIMS, TRANSFER]


def run_page(monkeypatch, board: Path, page: Path) -> AppTest:
    monkeypatch.setenv(ENV_VAR, str(board))
    at = AppTest.from_file(page)
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def write_extras(results: Path) -> None:
    """pgd_at+caper (two seeds, clearly more robust), and for pgd_at: corruption, checks
    (one failed), history, an ε sweep, removed samples and layer sparsity; a transfer
    matrix of the seed-0 runs in which erm's examples fool pgd_at+caper more than its own."""
    for seed in (0, 1):
        run = run_row("pgd_at+caper", seed, clean_acc=0.93, train_flops=9e12, train_seconds=90.0,
                      infer_flops=2e5, params=5000, nonzero_params=5000)
        store.write_cell(results, "runs", run["run_id"], [run])
        store.write_cell(results, "robustness", f"{run['run_id']}-aa", [{
            "run_id": run["run_id"], "attack": "autoattack", "norm": "Linf", "eps": 0.1,
            "n_examples": 200, "robust_acc": 0.70 + seed / 100, "status": "ok"}])
        store.write_cell(results, "latency", run["run_id"], [{
            "run_id": run["run_id"], "hardware": "cpu-1t", "batch_size": 1,
            "latency_ms_p50": 0.4}])
    for method in ("erm", "pgd_at"):
        for seed in (0, 1):
            run_id = f"{method}-s{seed}"
            store.write_cell(results, "corruption", run_id, [
                {"run_id": run_id, "corruption": c, "severity": s, "n_examples": 100,
                 "acc": 0.8 - s / 20 - (method == "erm") * 0.2}
                for c in ("gaussian_noise", "fog") for s in (1, 2, 3)])
    for seed in (0, 1):
        run_id = f"pgd_at-s{seed}"
        store.write_cell(results, "checks", run_id, [
            {"run_id": run_id, "check": "zero_gradients", "passed": True, "detail": "0 of 100"},
            {"run_id": run_id, "check": "blackbox_beats_whitebox", "passed": seed == 1,
             "detail": "square beats pgd by 5%"}])
        store.write_cell(results, "history", run_id, [
            {"run_id": run_id, "epoch": e, "lr": 0.1 / (e + 1), "train_loss": 2.0 / (e + 1),
             "train_acc": 0.5 + e / 10, "val_acc": 0.5 + e / 12, "val_robust_acc": 0.3 + e / 20}
            for e in range(3)])
        store.write_cell(results, "robustness", f"{run_id}-sweep", [
            {"run_id": run_id, "attack": "pgd", "norm": "Linf", "eps": eps, "n_examples": 100,
             "robust_acc": 0.9 - 4 * eps, "status": "ok", "sweep": "pgd Linf doubling"}
            for eps in (0.025, 0.05, 0.1, 0.2)])
        store.write_cell(results, "removed_samples", run_id, [
            {"run_id": run_id, "sample_id": i, "label": i % 3, "score": 0.5} for i in range(9)])
        store.write_cell(results, "layer_sparsity", run_id, [
            {"run_id": run_id, "layer": name, "params": 100, "nonzero": nz}
            for name, nz in (("conv1", 90), ("fc", 20))])
    acc = {("erm", "erm"): 0.0, ("erm", "pgd_at"): 0.6, ("erm", "pgd_at+caper"): 0.5,
           ("pgd_at", "erm"): 0.1, ("pgd_at", "pgd_at"): 0.55, ("pgd_at", "pgd_at+caper"): 0.62,
           ("pgd_at+caper", "erm"): 0.2, ("pgd_at+caper", "pgd_at"): 0.58,
           ("pgd_at+caper", "pgd_at+caper"): 0.6}
    store.write_cell(results, "transfer", "seed-0", [
        {"source_run": f"{s}-s0", "target_run": f"{t}-s0", "eval_id": f"{s}>{t}", "attack": "pgd",
         "norm": "Linf", "eps": 0.1, "n_examples": 100, "acc": a, "clean_acc": 0.9,
         "robust_acc": a - 0.02, "source_robust_acc": acc[(s, s)]} for (s, t), a in acc.items()])


@pytest.fixture
def full(tmp_path) -> Path:
    results = write_results(tmp_path / "full" / "results")
    write_extras(results)
    return tmp_path / "full"


@pytest.fixture
def partial(tmp_path) -> Path:
    """erm and pgd_at fully evaluated; ews trained but not evaluated yet."""
    results = write_results(tmp_path / "partial" / "results", failed=False)
    for seed in (0, 1):
        run = run_row("ews", seed, clean_acc=0.9, train_flops=2e12)
        store.write_cell(results, "runs", run["run_id"], [run])
    return tmp_path / "partial"


@pytest.fixture
def failed(tmp_path) -> Path:
    run = run_row("fast_at", 0, status="failed", error="NonFiniteLossError: loss is nan")
    store.write_cell(tmp_path / "failed" / "results", "runs", run["run_id"], [run])
    return tmp_path / "failed"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_page_on_empty_results(monkeypatch, tmp_path, page):
    (tmp_path / "empty" / "results").mkdir(parents=True)
    at = run_page(monkeypatch, tmp_path / "empty", page)
    assert any("No results yet" in i.value for i in at.info)
    assert not at.dataframe and not at.get("vega_lite_chart")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_page_on_failed_results(monkeypatch, failed, page):
    at = run_page(monkeypatch, failed, page)
    assert any("fail" in w.value.lower() for w in at.warning)
    assert not at.get("vega_lite_chart")


def test_leaderboard_on_partial_results(monkeypatch, partial):
    at = run_page(monkeypatch, partial, LEADERBOARD)
    shown = at.dataframe[0].value.set_index("method")
    assert shown.loc["ews", "pareto"] == ""  # no robust accuracy: never marked


def test_selection_is_shared_across_pages(monkeypatch, full):
    at = run_page(monkeypatch, full, LEADERBOARD)
    at.sidebar.selectbox(key="hardware").select("cuda").run(timeout=30)
    at.switch_page("pages/2_Method.py").run(timeout=30)
    assert not at.exception and at.title[0].value == "Method"
    assert at.sidebar.selectbox(key="hardware").value == "cuda"


def test_leaderboard_columns_search_and_downloads(monkeypatch, full):
    at = run_page(monkeypatch, full, LEADERBOARD)
    shown = at.dataframe[0].value.set_index("method")
    # pgd_at+caper is better on every axis than pgd_at and trades; erm is cheapest
    assert shown["pareto"].to_dict() == {"pgd_at+caper": "★", "pgd_at": "", "erm": "★",
                                         "trades": "", "fast_at": ""}
    assert shown.loc["pgd_at", "flags"] == "⚠ blackbox_beats_whitebox (1/2 seeds)"
    assert shown.loc["pgd_at", "corruption_acc"] == pytest.approx(70.0)
    assert shown.loc["erm", "mce"] == pytest.approx(100.0)  # the mCE reference
    assert shown.loc["pgd_at", "mce"] < 100 and shown["mce"].isna()["trades"]
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download parquet"]
    at.text_input[0].input("PGD").run(timeout=30)
    assert list(at.dataframe[0].value["method"]) == ["pgd_at+caper", "pgd_at"]
    at.text_input[0].input("nothing-like-this").run(timeout=30)
    assert any("No method matches" in i.value for i in at.info) and not at.dataframe


def test_tradeoffs_page(monkeypatch, full):
    at = run_page(monkeypatch, full, TRADEOFFS)
    scatter, parallel = charts(at)
    x, y = (scatter["layer"][1]["encoding"][c] for c in ("x", "y"))
    assert x["field"] == "train_flops" and x["scale"]["type"] == "log"
    assert y["field"] == "robust_autoattack" and "type" not in y["scale"]
    encoding = scatter["layer"][1]["encoding"]
    assert encoding["color"]["field"] == "method" and encoding["shape"]["field"] == "arch"
    assert {"method", "arch", "seeds"} <= {t["field"] for t in encoding["tooltip"]}
    assert parallel["encoding"]["y"]["field"] == "scaled"
    at.radio[0].set_value("one point per run").run(timeout=30)
    assert not at.exception and len(at.get("vega_lite_chart")) == 2


def test_tradeoffs_page_on_partial_results(monkeypatch, partial):
    at = run_page(monkeypatch, partial, TRADEOFFS)
    assert any("1 of 4 points" in i.value for i in at.info)  # ews: not evaluated yet
    assert len(at.get("vega_lite_chart")) == 2


def test_method_page(monkeypatch, full):
    at = run_page(monkeypatch, full, METHOD)
    at.selectbox(key="method").select("pgd_at").run(timeout=30)
    assert not at.exception
    marks = [c.get("mark", {}).get("type") if "layer" not in c else "layer" for c in charts(at)]
    # radar, ε sweep, training curves (facet), latency, corruption heatmap, removed, sparsity
    assert len(marks) == 7 and marks[0] == "layer" and marks[1] == "line"
    (checks,) = at.dataframe
    assert list(checks.value.columns) == ["seed", "check", "passed", "detail"]
    assert len(checks.value) == 4
    assert any("blackbox_beats_whitebox" in w.value for w in at.warning)


def test_method_page_on_partial_results(monkeypatch, partial):
    at = run_page(monkeypatch, partial, METHOD)
    at.selectbox(key="method").select("ews").run(timeout=30)
    assert not at.exception
    messages = " ".join(i.value for i in at.info)
    for text in ("No robustness", "No ε sweep", "No training history", "No latency",
                 "No reliability checks"):
        assert text in messages
    assert not at.get("vega_lite_chart") and not at.dataframe


def test_compare_page(monkeypatch, full):
    at = run_page(monkeypatch, full, COMPARE)
    assert [s.value for s in at.selectbox if s.label.startswith("Method")] == [
        "pgd_at", "pgd_at+caper"]
    (table,) = at.dataframe
    rows = table.value.set_index("metric")
    aa = rows.loc["robust_autoattack"]
    # two seeds of 200 points a side, without per-point results: unpaired, from counts
    assert aa["b"] == "70.5 [66.0, 75.0]" and aa["difference"].startswith("+14.5 [+")
    assert (aa["n"], aa["test"], aa["beyond_noise"]) == ("2×200", "unpaired", True)
    assert any("beyond noise" in c.value for c in at.caption)


def test_compare_page_on_partial_results(monkeypatch, partial):
    at = run_page(monkeypatch, partial, COMPARE)
    assert len(at.dataframe) == 1  # erm vs pgd_at: the first two methods


def test_claims_page(monkeypatch, full):
    at = run_page(monkeypatch, full, CLAIMS)
    assert any("has no claims.yaml" in i.value for i in at.info)
    (full / "claims.yaml").write_text(yaml.safe_dump({"claims": [
        {"paper": "CAPER", "claim": "CAPER atop PGD-AT is more robust", "baseline": "pgd_at",
         "method": "pgd_at+caper", "expect": {"robust_autoattack": "higher"}},
        {"paper": "CAPER", "claim": "CAPER atop PGD-AT is cheaper", "baseline": "pgd_at",
         "method": "pgd_at+caper", "expect": {"train_flops": "lower"}}]}))
    at = run_page(monkeypatch, full, CLAIMS)
    shown = at.dataframe[0].value.set_index("claim")
    assert shown.loc["CAPER atop PGD-AT is more robust", "verdict"] == "supported"
    cheaper = shown.loc["CAPER atop PGD-AT is cheaper"]
    assert cheaper["method vs baseline"] == "pgd_at+caper vs pgd_at"
    # pgd_at's FLOPs vary by seed: two seeds a side cannot be significant (the exact
    # permutation test's smallest p is 1/3), though every resample says cheaper
    assert (cheaper["test"], cheaper["p"], cheaper["verdict"]) == ("seeds", "0.33",
                                                                   "within noise")
    assert [m.value for m in at.metric] == ["1", "0", "1"]
    (full / "claims.yaml").write_text(yaml.safe_dump({"claims": [
        {"paper": "P", "claim": "c", "baseline": "pgd_at", "method": "pgd_at+capper",
         "expect": {"clean_acc": "keep"}}]}))
    at = run_page(monkeypatch, full, CLAIMS)
    assert "unknown method 'pgd_at+capper'" in at.error[0].value


def test_transfer_page(monkeypatch, full):
    at = run_page(monkeypatch, full, TRANSFER)
    (spec,) = charts(at)
    y = spec["layer"][0]["encoding"]["y"]
    # One seed per method in the matrix: labels need no seed, though the runs have two.
    assert y["field"] == "source" and y["sort"] == ["erm · small_cnn", "pgd_at · small_cnn",
                                                    "pgd_at+caper · small_cnn"]
    (warning,) = at.warning
    assert "gradient masking" in warning.value and warning.value.endswith("pgd_at+caper · small_cnn")
    summary = at.dataframe[0].value.set_index("target")
    assert summary.loc["pgd_at+caper · small_cnn", "strongest_source"] == "erm · small_cnn"
    assert summary.loc["pgd_at · small_cnn", "white_box"] == pytest.approx(55.0)
    at.radio(key="transfer_value").set_value("robust_acc").run(timeout=30)
    summary = at.dataframe[0].value.set_index("target")
    assert summary.loc["pgd_at · small_cnn", "white_box"] == pytest.approx(53.0)


def test_transfer_page_without_transfer_results(monkeypatch, partial):
    at = run_page(monkeypatch, partial, TRANSFER)
    assert any("No transfer results" in i.value for i in at.info)
