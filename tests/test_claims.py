"""Paper claims checked against a leaderboard's numbers: the verdict rules on constructed
cases, and ``perbench claims`` on the tiny fixture grid (including its bad-input errors)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_e2e import perbench

from bench.results.board import BoardError
from bench.views.claims import (
    claim_verdict,
    evaluate,
    formatted,
    load_claims,
    metric_verdict,
)
from bench.views.evidence import Evidence


def row(expect: str, metric: str, diff: float, lo: float, hi: float, p: float | None = 0.01,
        test: str = "paired bootstrap", seeds: int = 3, margin: float = 0.0) -> dict:
    """One test as ``evaluate`` computes it: the difference, its interval, Holm's p."""
    return {"expect": expect, "metric": metric, "diff": diff, "lo": lo, "hi": hi,
            "p_adjusted": float("nan") if p is None else p, "test": test, "n_seeds": seeds,
            "margin": margin}


@pytest.mark.parametrize("case, verdict", [
    # higher/lower: the interval excludes 0 in the expected direction, and Holm's p < 0.05
    (row("higher", "robust_pgd", 0.05, 0.01, 0.09), "supported"),
    (row("higher", "robust_pgd", 0.05, 0.01, 0.09, p=0.06), "within noise"),  # Holm
    (row("higher", "robust_pgd", 0.04, -0.01, 0.09), "within noise"),
    (row("higher", "robust_pgd", -0.05, -0.09, -0.01), "contradicted"),
    (row("lower", "clean_acc", -0.10, -0.12, -0.08), "supported"),
    # an exact difference (FLOPs equal across seeds): its sign, no p-value
    (row("lower", "train_flops", 1e11, 1e11, 1e11, p=None, test="deterministic"),
     "contradicted"),
    # keep, accuracy: the interval above −1 point (the margin), or surely below it
    (row("keep", "clean_acc", -0.005, -0.008, -0.002, margin=-0.01), "supported"),
    (row("keep", "clean_acc", 0.10, 0.08, 0.12, margin=-0.01), "supported"),
    (row("keep", "clean_acc", -0.05, -0.06, -0.04, margin=-0.01), "contradicted"),
    (row("keep", "clean_acc", -0.01, -0.03, 0.01, margin=-0.01), "within noise"),
    (row("keep", "clean_acc", -0.005, -0.008, -0.002, p=0.2, margin=-0.01), "within noise"),
    # keep, a cost (lower is better): within 1% of the baseline, relative
    (row("keep", "train_flops", 5e9, 5e9, 5e9, p=None, test="deterministic", margin=1e10),
     "supported"),
    (row("keep", "train_flops", 2e11, 2e11, 2e11, p=None, test="deterministic", margin=1e10),
     "contradicted"),
    (row("keep", "train_flops", -5e11, -5e11, -5e11, p=None, test="deterministic",
         margin=1e10), "supported"),
    # a single seed: no seed-to-seed spread to judge by
    (row("higher", "robust_pgd", 0.1, 0.05, 0.15, seeds=1), "one seed"),
])
def test_metric_verdicts(case, verdict):
    assert metric_verdict(case) == verdict


def test_no_results_and_claim_verdicts():
    assert metric_verdict(None) == "no results"
    assert claim_verdict(["supported", "supported"]) == "supported"
    assert claim_verdict(["supported", "contradicted"]) == "not supported"
    assert claim_verdict(["supported", "within noise"]) == "inconclusive"
    assert claim_verdict(["supported", "one seed"]) == "inconclusive"
    assert claim_verdict(["no results"]) == "inconclusive"


def metrics_frame() -> pd.DataFrame:
    """per_run_metrics-shaped rows: pgd_at and pgd_at+x over 3 seeds on one arch."""
    rows = []
    for seed, (base, other) in enumerate([(0.50, 0.56), (0.51, 0.57), (0.52, 0.58)]):
        rows.append({"run_id": f"a{seed}", "dataset": "d", "arch": "net", "method": "pgd_at",
                     "seed": seed, "clean_acc": 0.8, "robust_pgd": base, "train_flops": 1e12})
        rows.append({"run_id": f"b{seed}", "dataset": "d", "arch": "net",
                     "method": "pgd_at+x", "seed": seed, "clean_acc": 0.8,
                     "robust_pgd": other, "train_flops": 0.9e12})
    return pd.DataFrame(rows)


def test_evaluate_one_claim_per_metric(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [
        {"paper": "P", "claim": "x helps", "baseline": "pgd_at", "method": "pgd_at+x",
         "expect": {"robust_pgd": "higher", "train_flops": "lower", "clean_acc": "keep"}},
        {"paper": "P", "claim": "y exists", "baseline": "pgd_at", "method": "pgd_at+y",
         "expect": {"robust_pgd": "higher"}},
    ]}))
    metrics = metrics_frame()
    # rows without per-point results: robust_pgd on 1,000 points per run, clean_acc on 10,000
    evidence = Evidence(sizes={"robust_pgd": dict.fromkeys(metrics["run_id"], 1000),
                               "clean_acc": dict.fromkeys(metrics["run_id"], 10_000)})
    result = evaluate(load_claims(path), metrics, evidence)
    first = result[result["claim_id"] == 0].set_index("metric")
    assert first["test"].to_dict() == {"robust_pgd": "unpaired (no per-point results)",
                                       "train_flops": "deterministic",
                                       "clean_acc": "unpaired (no per-point results)"}
    # +6 points on 3×1000 points: supported; equal clean accuracy on 3×10,000 points is
    # non-inferior within 1 point; 10% fewer FLOPs, exactly
    assert first["verdict"].to_dict() == {"robust_pgd": "supported", "train_flops": "supported",
                                          "clean_acc": "supported"}
    assert first.loc["clean_acc", "lo"] > -0.01 and first.loc["clean_acc", "margin"] == -0.01
    # Holm over the two tests with a p-value (the exact FLOPs difference has none)
    assert first["p_adjusted"].notna().sum() == 2
    text = formatted(result)[result["claim_id"] == 0].set_index(first.index)
    assert text.loc["robust_pgd", "baseline"].startswith("51.0 [")
    assert text.loc["robust_pgd", "difference"].startswith("+6.0 [")
    assert text.loc["robust_pgd", "n"] == "3×1000"
    assert text.loc["train_flops", "difference"] == "-10.0% (exact)"
    assert set(first["claim_verdict"]) == {"supported"}
    second = result[result["claim_id"] == 1]
    assert list(second["verdict"]) == ["no results"]
    assert second["claim_verdict"].iloc[0] == "inconclusive"
    # without the point counts, three seeds a side can never be significant
    seeds_only = evaluate(load_claims(path), metrics).set_index("metric").iloc[:3]
    assert seeds_only.loc["robust_pgd", "test"] == "unpaired bootstrap over seeds"
    assert seeds_only.loc["robust_pgd", "p"] == pytest.approx(0.1)
    assert seeds_only.loc["robust_pgd", "verdict"] == "within noise"


def test_claims_file_errors_name_the_key(tmp_path):
    path = tmp_path / "claims.yaml"
    with pytest.raises(BoardError, match="no such claims file"):
        load_claims(path)
    path.write_text(yaml.safe_dump({"claims": [
        {"paper": "P", "claim": "c", "baseline": "erm", "method": "fast_at",
         "expect": {"clean_acc": "better"}, "colour": "red"}]}))
    with pytest.raises(BoardError) as err:
        load_claims(path)
    text = str(err.value)
    assert "claims[0].expect.clean_acc" in text and "'higher', 'lower' or 'keep'" in text
    assert "claims[0].colour: unknown key; allowed keys: paper, claim" in text


def test_cli_on_the_fixture_grid(finished, tmp_path, capsys):
    from bench.cli import main

    board = tmp_path / "tiny"
    shutil.copytree(finished, board)
    claims = yaml.safe_load((board / "claims.yaml").read_text())  # the fixture's one claim
    proc = perbench("claims", str(board))
    assert proc.returncode == 0, proc.stderr
    assert "FGSM training resists FGSM (fast_at vs erm): INCONCLUSIVE" in proc.stdout
    assert proc.stdout.count("one seed") == 2  # the fixture grid has seed 0 only
    md = perbench("claims", str(board), "--format", "markdown")
    assert md.returncode == 0, md.stderr
    assert ("| **Wong et al. 2020**: FGSM training resists FGSM (`fast_at` vs `erm`) → "
            "**inconclusive** | small_cnn | robust_fgsm (higher) |") in md.stdout
    csv = perbench("claims", str(board), "--format", "csv")
    frame = pd.read_csv(pd.io.common.StringIO(csv.stdout))
    assert list(frame["verdict"]) == ["one seed", "one seed"]
    assert (frame["diff"] > 0).all()  # FGSM-trained: more robust, and costlier to train
    assert main(["claims", str(board), "--format", "json"]) == 0  # in process: no start-up
    (claim,) = json.loads(capsys.readouterr().out)
    assert claim["verdict"] == "inconclusive" and claim["method"] == "fast_at"
    fgsm, flops = claim["metrics"]
    # the fixture's rows carry per-point results: paired on seed 0's 100 points
    assert (fgsm["metric"], fgsm["test"], fgsm["n_seeds"], fgsm["n_points"]) == (
        "robust_fgsm", "paired bootstrap", 1, 100)
    assert fgsm["lo"] <= fgsm["diff"] <= fgsm["hi"] and 0 < fgsm["p"] <= 1
    assert fgsm["p_adjusted"] is None  # one seed: not judged, so not in Holm's family
    assert flops["test"] == "unpaired bootstrap over seeds" and flops["p"] is None
    # Bad input: exit code 2 and a message naming the file, the key and what is allowed.
    claims["claims"][0]["method"] = "fast_att"
    (board / "claims.yaml").write_text(yaml.safe_dump(claims))
    proc = perbench("claims", str(board))
    assert proc.returncode == 2
    assert "claims[0].method: unknown method 'fast_att'; the grid's methods: erm, fast_at" \
        in proc.stderr
    claims["claims"][0]["method"] = "fast_at"
    claims["claims"][0]["expect"] = {"robustness": "higher"}
    (board / "claims.yaml").write_text(yaml.safe_dump(claims))
    proc = perbench("claims", str(board))
    assert proc.returncode == 2 and "unknown metric 'robustness'; metrics: clean_acc" in proc.stderr
    claims["claims"][0]["expect"] = {"clean_acc": "keep"}
    claims["claims"][0]["archs"] = ["small_cn"]
    (board / "claims.yaml").write_text(yaml.safe_dump(claims))
    proc = perbench("claims", str(board))
    assert proc.returncode == 2
    assert "claims[0].archs: unknown arch 'small_cn'; the grid's archs: small_cnn" in proc.stderr
    proc = perbench("claims", str(board), "--file", str(tmp_path / "none.yaml"))
    assert proc.returncode == 2 and "none.yaml: no such claims file" in proc.stderr


def test_fashion_mnist_claims_name_the_grids_methods_and_metrics():
    from bench.grid.spec import load_spec
    from bench.results.store import TABLES, empty_table
    from bench.views.claims import check_names
    from bench.views.compare import per_run_metrics

    board = Path(__file__).resolve().parent.parent / "leaderboards" / "fashion-mnist"
    claims = load_claims(board)
    assert {c.paper for c in claims} == {"CAPER", "EWS", "AccelAT", "ADMM pruning"}
    metrics = per_run_metrics({t: empty_table(t) for t in TABLES})
    spec = load_spec(board)
    check_names(claims, metrics, [m.display for m in spec.methods], board, spec.archs)


def test_output_cut_short_by_a_pipe_is_not_an_error(finished, tmp_path):
    """`perbench claims … | head`: the reader closes the pipe early; exit 0, no traceback."""
    import os
    import subprocess
    import sys

    board = tmp_path / "tiny"
    shutil.copytree(finished, board)
    claims = yaml.safe_load((board / "claims.yaml").read_text())
    (board / "claims.yaml").write_text(yaml.safe_dump({"claims": claims["claims"] * 500}))
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "claims", str(board)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ})
    assert proc.stdout.readline().startswith(b"tiny:")
    proc.stdout.close()  # more than a pipe's buffer is still to come
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
