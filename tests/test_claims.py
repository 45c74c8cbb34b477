"""Paper claims checked against a leaderboard's numbers: the verdict rules on constructed
cases, and ``perbench claims`` on the tiny fixture grid (including its bad-input errors)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_e2e import perbench

from bench.results.board import BoardError
from bench.views.claims import claim_verdict, evaluate, load_claims, metric_verdict


def row(metric: str, a: float, a_std: float, b: float, b_std: float, seeds: int = 3) -> pd.Series:
    return pd.Series({"metric": metric, "a": a, "a_std": a_std, "b": b, "b_std": b_std,
                      "a_seeds": seeds, "b_seeds": seeds, "delta": b - a})


@pytest.mark.parametrize("expect, case, verdict", [
    # higher/lower: beyond the spread (sum of the stds, here 0.02) in the expected direction
    ("higher", row("robust_pgd", 0.50, 0.01, 0.55, 0.01), "supported"),
    ("higher", row("robust_pgd", 0.50, 0.01, 0.51, 0.01), "within noise"),
    ("higher", row("robust_pgd", 0.50, 0.01, 0.45, 0.01), "contradicted"),
    ("lower", row("clean_acc", 0.70, 0.01, 0.60, 0.01), "supported"),
    ("lower", row("train_flops", 1e12, 0.0, 1.1e12, 0.0), "contradicted"),
    # keep, accuracy: within 1 point (absolute) or better
    ("keep", row("clean_acc", 0.80, 0.002, 0.795, 0.002), "supported"),
    ("keep", row("clean_acc", 0.80, 0.002, 0.90, 0.002), "supported"),
    ("keep", row("clean_acc", 0.80, 0.002, 0.75, 0.002), "contradicted"),
    ("keep", row("clean_acc", 0.80, 0.05, 0.75, 0.05), "within noise"),
    # keep, a cost (lower is better): within 1% of the baseline, relative
    ("keep", row("train_flops", 1e12, 0.0, 1.005e12, 0.0), "supported"),
    ("keep", row("train_flops", 1e12, 0.0, 1.2e12, 0.0), "contradicted"),
    ("keep", row("train_flops", 1e12, 0.0, 0.5e12, 0.0), "supported"),
    # a single seed on either side: no spread to judge by
    ("higher", row("robust_pgd", 0.50, float("nan"), 0.60, float("nan"), seeds=1), "one seed"),
])
def test_metric_verdicts(expect, case, verdict):
    assert metric_verdict(expect, case, tolerance=0.01) == verdict


def test_no_results_and_claim_verdicts():
    assert metric_verdict("higher", None, 0.01) == "no results"
    assert claim_verdict(["supported", "supported"]) == "supported"
    assert claim_verdict(["supported", "contradicted"]) == "not supported"
    assert claim_verdict(["supported", "within noise"]) == "inconclusive"
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
    result = evaluate(load_claims(path), metrics_frame())
    first = result[result["claim_id"] == 0].set_index("metric")
    assert first["verdict"].to_dict() == {"robust_pgd": "supported", "train_flops": "supported",
                                          "clean_acc": "supported"}
    assert first.loc["robust_pgd", "baseline_value"] == "51.0 ± 1.0"
    assert first.loc["robust_pgd", "method_value"] == "57.0 ± 1.0 (+6.0)"
    assert first.loc["train_flops", "method_value"].endswith("(-10.0%)")
    assert set(first["claim_verdict"]) == {"supported"}
    second = result[result["claim_id"] == 1]
    assert list(second["verdict"]) == ["no results"]


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


def test_cli_on_the_fixture_grid(finished, tmp_path):
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
    assert (frame["delta"] > 0).all()  # FGSM-trained: more robust, and costlier to train
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
