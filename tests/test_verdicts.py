"""Paired comparisons and claim verdicts with known answers, on small synthetic boards: a
planted difference is found, two samples of one model are not, ``keep`` is judged as
non-inferiority both ways, Holm's correction turns a borderline verdict, rows without
per-point results take the unpaired route, and a claim's verdict can be overridden when
its method's mechanism did not act."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.results.points import pack
from bench.results.store import empty_table
from bench.views.claims import Claim, evaluate, to_json
from bench.views.compare import compare, per_run_metrics
from bench.views.difference import EXACT, PAIRED, SEEDS, UNPAIRED
from bench.views.evidence import metric_evidence

N, SEEDS_ = 1000, (0, 1, 2)


def base_bits(seed: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).random(N) < 0.6


def shifted(bits: np.ndarray, up: int, down: int, seed: int) -> np.ndarray:
    """``bits`` with ``up`` of its zeros turned to ones and ``down`` of its ones to zeros:
    the same points, a planted difference of (up − down) / n."""
    rng = np.random.default_rng(200 + seed)
    out = bits.copy()
    out[rng.choice(np.flatnonzero(~bits), up, replace=False)] = True
    out[rng.choice(np.flatnonzero(bits), down, replace=False)] = False
    return out


def board(methods: dict[str, dict[str, list[np.ndarray]]], *, points: bool = True,
          flops: dict[str, float] | None = None,
          seconds: dict[str, list[float]] | None = None) -> dict[str, pd.DataFrame]:
    """Tables of a board: per method, per attack, one bit array per seed (clean bits all
    ones, except under the key "clean"). ``points=False``: rows as written before per-point
    results (no bits, only accuracies)."""
    runs, rob = [], []
    for method, attacks in methods.items():
        for k, seed in enumerate(SEEDS_):
            run_id = f"{method}-s{seed}"
            clean = attacks.get("clean", [np.ones(N, bool)] * 3)[k]
            runs.append({"run_id": run_id, "method": method, "dataset": "d", "arch": "net",
                         "seed": seed, "status": "ok", "clean_acc": 0.9, "n_test": 10_000,
                         "train_flops": (flops or {}).get(method, 1e12),
                         "train_seconds": (seconds or {}).get(method, [100.0] * 3)[k],
                         "infer_flops": 2e5, "params": 5000, "nonzero_params": 5000})
            for attack, per_seed in attacks.items():
                if attack == "clean":
                    continue
                bits = per_seed[k]
                rob.append({"run_id": run_id, "eval_id": f"{run_id}-{attack}", "attack": attack,
                            "norm": "Linf", "eps": 0.1, "n_examples": bits.size,
                            "clean_acc": clean[:bits.size].mean(), "robust_acc": bits.mean(),
                            "status": "ok",
                            "robust_points": pack(bits) if points else None,
                            "clean_points": pack(clean[:bits.size]) if points else None})
    return {"runs": pd.DataFrame(runs, columns=empty_table("runs").columns),
            "robustness": pd.DataFrame(rob, columns=empty_table("robustness").columns)}


def judged(tables, claims: list[dict], **kw) -> pd.DataFrame:
    claims = [Claim(paper="P", claim=f"c{i}", baseline="a", method="b", **c)
              for i, c in enumerate(claims)]
    return evaluate(claims, per_run_metrics(tables), metric_evidence(tables), **kw)


def one(result: pd.DataFrame, metric: str) -> pd.Series:
    rows = result[result["metric"] == metric]
    assert len(rows) == 1
    return rows.iloc[0]


def planted(up: int, down: int, **kw) -> dict[str, pd.DataFrame]:
    a = [base_bits(s) for s in SEEDS_]
    return board({"a": {"pgd": a}, "b": {"pgd": [shifted(x, up, down, s)
                                                 for x, s in zip(a, SEEDS_)]}}, **kw)


def test_a_planted_five_point_difference_is_found():
    tables = planted(50, 0)
    row = one(judged(tables, [{"expect": {"robust_pgd": "higher"}}]), "robust_pgd")
    assert row["test"] == PAIRED and row["n_seeds"] == 3 and row["n_points"] == N
    assert row["diff"] == pytest.approx(0.05)
    assert 0 < row["lo"] < 0.05 < row["hi"]
    assert row["p"] < 0.001 and row["verdict"] == "supported"
    assert row["method_mean"] - row["baseline_mean"] == pytest.approx(row["diff"])
    # the same models the other way round
    row = one(judged(tables, [{"expect": {"robust_pgd": "lower"}}]), "robust_pgd")
    assert row["verdict"] == "contradicted"


def test_two_samples_of_one_model_are_within_noise():
    a = [base_bits(s) for s in SEEDS_]
    same = board({"a": {"pgd": a}, "b": {"pgd": [x.copy() for x in a]}})
    row = one(judged(same, [{"expect": {"robust_pgd": "higher"}}]), "robust_pgd")
    assert (row["diff"], row["lo"], row["hi"], row["p"]) == (0, 0, 0, 1)
    assert row["verdict"] == "within noise"
    # the same model evaluated twice by a randomised attack: 20 points of 1,000 per seed
    # come out the other way, as many each way
    again = board({"a": {"pgd": a}, "b": {"pgd": [shifted(x, 10, 10, s)
                                                  for x, s in zip(a, SEEDS_)]}})
    row = one(judged(again, [{"expect": {"robust_pgd": "higher"}}]), "robust_pgd")
    assert row["diff"] == 0 and row["lo"] < 0 < row["hi"] and row["p"] > 0.5
    assert row["verdict"] == "within noise"


@pytest.mark.parametrize("down, verdict", [
    (5, "supported"),       # 0.5 points worse: surely within the 1-point tolerance
    (30, "contradicted"),   # 3 points worse: surely beyond it
    (10, "within noise"),   # 1 point worse: on the margin
])
def test_keep_is_non_inferiority(down, verdict):
    row = one(judged(planted(0, down), [{"expect": {"robust_pgd": "keep"}}]), "robust_pgd")
    assert row["margin"] == pytest.approx(-0.01)
    assert row["verdict"] == verdict


def test_keep_on_a_cost_is_relative_and_exact():
    a = [base_bits(s) for s in SEEDS_]
    for flops_b, verdict in ((1.005e12, "supported"), (1.2e12, "contradicted"),
                             (0.5e12, "supported")):
        tables = board({"a": {"pgd": a}, "b": {"pgd": a}}, flops={"a": 1e12, "b": flops_b})
        row = one(judged(tables, [{"expect": {"train_flops": "keep"}}]), "train_flops")
        assert row["test"] == EXACT and np.isnan(row["p"]) and np.isnan(row["p_adjusted"])
        assert row["margin"] == pytest.approx(0.01e12)
        assert row["diff"] == pytest.approx(flops_b - 1e12) == row["lo"] == row["hi"]
        assert row["verdict"] == verdict


def test_holm_turns_a_borderline_verdict():
    """Net +0.5 points (10 points up, 5 down per seed): p ≈ 0.03 alone, supported; beside two
    more tests of no difference Holm multiplies it by 3 and it is within noise."""
    a = [base_bits(s) for s in SEEDS_]
    tables = board({"a": {"pgd": a, "fgsm": a},
                    "b": {"pgd": [shifted(x, 10, 5, s) for x, s in zip(a, SEEDS_)],
                          "fgsm": a}})
    alone = one(judged(tables, [{"expect": {"robust_pgd": "higher"}}]), "robust_pgd")
    assert alone["lo"] > 0 and 0.0167 < alone["p"] < 0.05
    assert alone["p_adjusted"] == alone["p"] and alone["verdict"] == "supported"
    many = judged(tables, [{"expect": {"robust_pgd": "higher"}},
                           {"expect": {"robust_fgsm": "higher", "clean_acc": "higher"}}])
    row = one(many, "robust_pgd")
    assert row["p"] == alone["p"] and row["lo"] == alone["lo"]
    assert row["p_adjusted"] == pytest.approx(3 * row["p"])
    assert row["verdict"] == "within noise"
    assert set(many["claim_verdict"]) == {"inconclusive"}
    # the same comparison in two claims is one test, not two
    twice = judged(tables, [{"expect": {"robust_pgd": "higher"}},
                            {"expect": {"robust_pgd": "higher"}}])
    assert list(twice["p_adjusted"]) == [alone["p"]] * 2
    assert list(twice["verdict"]) == ["supported"] * 2


def test_rows_without_points_take_the_unpaired_route():
    tables = planted(50, 0, points=False)
    result = judged(tables, [{"expect": {"robust_pgd": "higher", "clean_acc": "keep"}}])
    row = one(result, "robust_pgd")
    assert row["test"] == UNPAIRED and row["n_points"] == N and row["n_seeds"] == 3
    assert row["diff"] == pytest.approx(0.05)
    paired = one(judged(planted(50, 0), [{"expect": {"robust_pgd": "higher"}}]), "robust_pgd")
    # without the pairing the same models' difference is far less certain
    assert row["hi"] - row["lo"] > 2 * (paired["hi"] - paired["lo"])
    clean = one(result, "clean_acc")  # the runs' own accuracy on their 10,000 test points
    assert clean["test"] == UNPAIRED and clean["n_points"] == 10_000
    # one run of b without points: no half-paired test
    mixed = planted(50, 0)
    rob = mixed["robustness"]
    rob.loc[rob["run_id"] == "b-s2", ["robust_points", "clean_points"]] = None
    assert one(judged(mixed, [{"expect": {"robust_pgd": "higher"}}]),
               "robust_pgd")["test"] == UNPAIRED


def test_clean_accuracy_pairs_the_largest_evaluations_clean_bits():
    a_clean = [base_bits(s) for s in SEEDS_]
    b_clean = [shifted(x, 60, 0, s) for x, s in zip(a_clean, SEEDS_)]
    tables = board({"a": {"clean": a_clean, "pgd": [x.copy() for x in a_clean],
                          "fgsm": [x[:500] for x in a_clean]},
                    "b": {"clean": b_clean, "pgd": [x.copy() for x in b_clean],
                          "fgsm": [x[:500] for x in b_clean]}})
    row = one(judged(tables, [{"expect": {"clean_acc": "higher"}}]), "clean_acc")
    assert row["test"] == PAIRED and row["n_points"] == N  # the 1,000-point pgd rows
    assert row["diff"] == pytest.approx(0.06) and row["verdict"] == "supported"


def test_compare_reports_each_side_and_the_test():
    tables = planted(50, 0, seconds={"a": [100.0, 101.0, 102.0], "b": [90.0, 91.0, 92.0]})
    result = compare(per_run_metrics(tables), "a", "b",
                     metric_evidence(tables)).set_index("metric")
    pgd = result.loc["robust_pgd"]
    assert pgd["test"] == PAIRED and pgd["beyond_noise"] and pgd["b_better"]
    assert pgd["a_lo"] < pgd["a"] < pgd["a_hi"] and pgd["b_lo"] < pgd["b"] < pgd["b_hi"]
    flops = result.loc["train_flops"]
    assert flops["test"] == EXACT and flops["diff"] == 0 and not flops["beyond_noise"]
    # three seeds against three, completely separated: the exact permutation test's
    # smallest p (2/20) bounds the bootstrap's, so no verdict from so few seeds
    seconds = result.loc["train_seconds"]
    assert seconds["test"] == SEEDS and seconds["hi"] < 0
    assert seconds["p"] == pytest.approx(0.1) and not seconds["beyond_noise"]
    again = compare(per_run_metrics(tables), "a", "b", metric_evidence(tables))
    pd.testing.assert_frame_equal(again, result.reset_index()[again.columns])  # fixed seed


def test_a_claim_whose_mechanism_did_not_act():
    tables = planted(50, 0)
    claims = [{"expect": {"robust_pgd": "higher"}}, {"expect": {"robust_pgd": "higher"}}]
    result = judged(tables, claims, not_acted={"b": "no sample was removed"})
    assert set(result["verdict"]) == {"supported"}  # the metrics' own verdicts stay
    assert set(result["claim_verdict"]) == {"mechanism did not act"}
    assert set(result["claim_reason"]) == {"no sample was removed"}
    other = judged(tables, claims, not_acted={"c": "never ran"})
    assert set(other["claim_verdict"]) == {"supported"} and other["claim_reason"].isna().all()
    (first, _) = json.loads(to_json(result))
    assert first["verdict"] == "mechanism did not act"
    assert first["reason"] == "no sample was removed"
    assert {"diff", "lo", "hi", "p", "p_adjusted", "n_seeds", "n_points", "test",
            "verdict"} <= set(first["metrics"][0])
