"""Leaderboard frame and ``perbench show`` rendering, on results written through the store."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.results import store
from bench.views.leaderboard import (
    NO_RESULTS,
    leaderboard_frame,
    load_tables,
    threat_models,
)
from bench.views.render import FORMATS, render

# method -> per-seed (clean, fgsm, pgd, autoattack, train_flops). AutoAttack ranks trades
# first, PGD ranks pgd_at first: the two orders differ so a test can tell which one ranked.
RESULTS = {
    "erm": [(0.98, 0.20, 0.02, 0.01, 1.0e12), (0.96, 0.10, 0.04, 0.03, 1.2e12)],
    "pgd_at": [(0.90, 0.70, 0.66, 0.55, 1.1e13), (0.92, 0.72, 0.68, 0.57, 1.3e13)],
    "trades": [(0.88, 0.74, 0.62, 0.58, 1.2e13), (0.86, 0.76, 0.64, 0.60, 1.4e13)],
}
ATTACKS = ("fgsm", "pgd", "autoattack")


def run_row(method: str, seed: int, **fields) -> dict:
    return {"run_id": f"{method}-s{seed}", "leaderboard": "fixture", "method": method,
            "dataset": "digits", "arch": "small_cnn", "seed": seed, "status": "ok", **fields}


def write_results(results: Path, attacks: tuple[str, ...] = ATTACKS,
                  failed: bool = True) -> Path:
    """3 methods x 2 seeds, the given attacks at Linf 0.1, latency on cpu-1t, cuda skipped,
    and (when ``failed``) one fast_at run that diverged."""
    for method, seeds in RESULTS.items():
        for seed, (clean, *robust, flops) in enumerate(seeds):
            row = run_row(method, seed, clean_acc=clean, train_flops=flops,
                          train_seconds=flops / 1e11, infer_flops=2e5, params=5000,
                          nonzero_params=5000)
            store.write_cell(results, "runs", row["run_id"], [row])
            for attack, acc in zip(ATTACKS, robust):
                if attack in attacks:
                    store.write_cell(results, "robustness", f"{row['run_id']}-{attack}", [{
                        "run_id": row["run_id"], "attack": attack, "norm": "Linf", "eps": 0.1,
                        "steps": 10, "n_examples": 200, "clean_acc": clean, "robust_acc": acc,
                        "status": "ok"}])
            store.write_cell(results, "latency", f"{row['run_id']}-cpu-1t", [
                {"run_id": row["run_id"], "hardware": "cpu-1t", "batch_size": 1,
                 "latency_ms_p50": 0.5 + seed * 0.1},
                {"run_id": row["run_id"], "hardware": "cpu-1t", "batch_size": 64,
                 "latency_ms_p50": 9.0}])
            store.write_cell(results, "latency", f"{row['run_id']}-cuda", [
                {"run_id": row["run_id"], "hardware": "cuda", "batch_size": 1,
                 "skipped_reason": "no CUDA device on this machine"}])
    if failed:
        row = run_row("fast_at", 0, status="failed",
                      error="NonFiniteLossError: loss is nan at epoch 3\nTraceback ...")
        store.write_cell(results, "runs", row["run_id"], [row])
    return results


@pytest.fixture
def results(tmp_path) -> Path:
    return write_results(tmp_path / "fixture" / "results")


def test_ranked_by_autoattack(results):
    df, note = leaderboard_frame(load_tables(results))
    assert list(df["method"]) == ["trades", "pgd_at", "erm", "fast_at"]
    assert list(df["rank"][:3]) == [1, 2, 3] and pd.isna(df["rank"].iloc[3])
    assert set(df["rank_attack"]) == {"autoattack"} and "autoattack" in note
    assert df["robust_acc"].tolist()[:3] == df["robust_autoattack"].tolist()[:3]
    for col in ["robust_fgsm", "robust_pgd", "robust_autoattack_std", "latency_ms_cpu-1t",
                "train_pflops", "params", "nonzero_params", "run_ids"]:
        assert col in df, col


def test_falls_back_to_strongest_attack(tmp_path):
    results = write_results(tmp_path / "r", attacks=("fgsm", "pgd"))
    df, note = leaderboard_frame(load_tables(results))
    assert set(df["rank_attack"]) == {"pgd"}
    assert list(df["method"][:3]) == ["pgd_at", "trades", "erm"]
    assert "no autoattack" in note and "strongest" in note and "pgd" in note
    assert "robust_autoattack" not in df


def test_mean_and_std_over_seeds(results):
    df, _ = leaderboard_frame(load_tables(results))
    row = df.set_index("method").loc["pgd_at"]
    assert row["seeds"] == 2 and row["failed"] == 0 and row["status"] == "ok"
    assert row["clean_acc"] == pytest.approx(0.91)
    assert row["clean_acc_std"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    assert row["robust_autoattack"] == pytest.approx(0.56)
    assert row["robust_pgd_std"] == pytest.approx(np.std([0.66, 0.68], ddof=1))
    assert row["train_flops"] == pytest.approx(1.2e13)
    assert row["train_pflops"] == pytest.approx(0.012)
    # single-stream latency: the batch-1 rows, not the batch-64 throughput rows
    assert row["latency_ms_cpu-1t"] == pytest.approx(0.55)
    assert row["latency_skipped_cuda"] == "no CUDA device on this machine"
    assert 0 <= df["clean_acc"].min() and df["robust_acc"].max() <= 1


def test_failed_run_shown_with_error(results):
    df, _ = leaderboard_frame(load_tables(results))
    row = df.set_index("method").loc["fast_at"]
    assert row["status"] == "failed" and row["seeds"] == 0 and row["failed"] == 1
    assert row["error"] == "seed 0: NonFiniteLossError: loss is nan at epoch 3"
    assert pd.isna(row["clean_acc"]) and pd.isna(row["robust_acc"])


def test_partially_failed_group(results):
    row = run_row("erm", 2, status="failed", error="RuntimeError: out of memory")
    store.write_cell(results, "runs", row["run_id"], [row])
    df, _ = leaderboard_frame(load_tables(results))
    erm = df.set_index("method").loc["erm"]
    assert (erm["status"], erm["seeds"], erm["failed"]) == ("partial", 2, 1)
    assert erm["clean_acc"] == pytest.approx(0.97)  # the failed seed does not count


def test_threat_model_choice(results):
    for run_id in ["erm-s0", "pgd_at-s0"]:
        store.write_cell(results, "robustness", f"{run_id}-l2", [{
            "run_id": run_id, "attack": "pgd", "norm": "L2", "eps": 0.5, "n_examples": 200,
            "robust_acc": 0.3, "status": "ok"}])
    tables = load_tables(results)
    assert threat_models(tables)[0] == ("Linf", 0.1)
    _, note = leaderboard_frame(tables)
    assert "most common" in note and "L2 0.5" in note
    df, note = leaderboard_frame(tables, norm="L2")
    assert set(df["rank_attack"]) == {"pgd"} and "L2, eps 0.5" in note
    assert df.set_index("method").loc["erm", "robust_pgd"] == pytest.approx(0.3)
    df, note = leaderboard_frame(tables, norm="Linf", eps=8 / 255)
    assert df["robust_acc"].isna().all() and "available threat models" in note


def test_filters_and_groups(results):
    df, _ = leaderboard_frame(load_tables(results), dataset="digits", hardware="cpu-1t")
    assert len(df) == 4 and "latency_ms_cuda" not in df
    row = run_row("erm", 0, arch="resnet18", run_id="erm-r18", clean_acc=0.99)
    store.write_cell(results, "runs", row["run_id"], [row])
    store.write_cell(results, "robustness", "erm-r18-aa", [{
        "run_id": "erm-r18", "attack": "autoattack", "norm": "Linf", "eps": 0.1,
        "n_examples": 200, "robust_acc": 0.0, "status": "ok"}])
    df, _ = leaderboard_frame(load_tables(results))
    assert list(zip(df["arch"], df["rank"]))[:2] == [("resnet18", 1), ("small_cnn", 1)]
    df, _ = leaderboard_frame(load_tables(results), arch="resnet18")
    assert list(df["method"]) == ["erm"] and df["clean_acc_std"].isna().all()  # one seed
    df, note = leaderboard_frame(load_tables(results), dataset="cifar10")
    assert df.empty and "digits" in note


def test_empty_results(tmp_path):
    df, note = leaderboard_frame(load_tables(tmp_path / "nothing"))
    assert df.empty and note == NO_RESULTS
    assert "No results yet" in render(tmp_path / "nothing")


def test_render_formats(results):
    table = render(results, "table")
    assert table.splitlines()[0].startswith("fixture (digits, small_cnn): The ranking has no "
                                            "per-point worst case")
    assert "Ranked by autoattack" in table.splitlines()[0]
    # mean [95% interval] where there is one; mean ± std where not (no n_test: clean)
    assert "59.0 [53.8, 64.0]" in table and "87.0 ± 1.4" in table
    assert "1 (1–2)" in table  # trades ranks first, but its interval allows second
    assert "TFLOPs" in table and "fast_at" in table and "NonFiniteLossError" in table

    records = json.loads(render(results, "json"))
    assert [r["method"] for r in records] == ["trades", "pgd_at", "erm", "fast_at"]
    assert records[0]["robust_autoattack"] == pytest.approx(0.59)
    assert records[0]["ranking"]["metric"] == "robust_autoattack"
    assert records[0]["ranking"]["tie_group"] == 1 and records[2]["ranking"]["tie_group"] == 2

    csv = pd.read_csv(io.StringIO(render(results, "csv")))
    assert csv.columns[0] == "rank" and csv.loc[0, "method"] == "trades"
    assert csv.loc[1, "clean_acc"] == pytest.approx(0.91, abs=1e-15)

    markdown = render(results, "markdown")
    assert markdown.startswith("## fixture (digits, small_cnn)")
    assert "| method" in markdown and "|:--" in markdown and "- failed: fast_at" in markdown


def test_render_rejects_unknown_format(results):
    with pytest.raises(ValueError, match="html.*" + ".*".join(FORMATS)):
        render(results, "html")
