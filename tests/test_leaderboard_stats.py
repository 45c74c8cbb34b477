"""The leaderboard's ranking under uncertainty: the worst case over attacks, 95% intervals,
rank ranges and tie groups, AutoAttack's cross-check, and the fallback for boards written
before per-point results. Small synthetic boards with planted answers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_leaderboard import run_row, write_results

from bench.cli import main
from bench.results import store
from bench.results.points import pack
from bench.views.leaderboard import leaderboard_frame, load_tables, varying_counts
from bench.views.ranking import count_bits
from bench.views.render import render
from bench.views.stats import hierarchical_bootstrap_ci

N = 1000
SEEDS = (0, 1, 2)
# method -> (P(robust under pgd), P(robust under fgsm)), drawn independently per point, so
# the worst case (both failed to break the point) sits near the product: 0.60 against 0.45,
# a planted gap of 15 points on 1,000 points x 3 seeds.
RATES = {"strong": (0.75, 0.80), "weak": (0.60, 0.75)}


def draw(seed: int, p: float, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


def write_robustness(results: Path, run_id: str, attack: str, bits: np.ndarray | None,
                     acc: float | None = None) -> None:
    """One finished evaluation at Linf 0.1; ``bits`` None: a row from before per-point
    results (aggregate only)."""
    row = {"run_id": run_id, "attack": attack, "norm": "Linf", "eps": 0.1, "status": "ok",
           "n_examples": N if bits is None else len(bits),
           "robust_acc": float(bits.mean()) if bits is not None else acc}
    if bits is not None:
        row |= {"robust_points": pack(bits), "clean_points": pack(np.ones(len(bits), bool))}
    store.write_cell(results, "robustness", f"{run_id}-{attack}", [row])


def write_run(results: Path, method: str, seed: int, **fields) -> str:
    row = run_row(method, seed, clean_acc=0.9, n_test=2000, train_flops=1e12,
                  infer_flops=2e5, params=5000, nonzero_params=5000) | fields
    store.write_cell(results, "runs", row["run_id"], [row])
    return row["run_id"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict[str, dict[int, np.ndarray]]]:
    """strong and weak, 3 seeds each, pgd and fgsm with per-point results (weak's pgd on
    the first 800 points only), and the worst case each run should get."""
    results = tmp_path_factory.mktemp("planted") / "planted" / "results"
    worst: dict[str, dict[int, np.ndarray]] = {}
    for m, (method, (p_pgd, p_fgsm)) in enumerate(RATES.items()):
        for seed in SEEDS:
            run_id = write_run(results, method, seed)
            pgd = draw(100 * m + seed, p_pgd, 800 if method == "weak" else N)
            fgsm = draw(100 * m + seed + 50, p_fgsm)
            write_robustness(results, run_id, "pgd", pgd)
            write_robustness(results, run_id, "fgsm", fgsm)
            worst.setdefault(method, {})[seed] = pgd & fgsm[:len(pgd)]
    return results, worst


def test_worst_case_is_the_and_of_the_attacks(planted):
    results, worst = planted
    df, note = leaderboard_frame(load_tables(results))
    rows = df.set_index("method")
    assert set(df["rank_by"]) == {"robust_worst"} and set(df["ensemble"]) == {"fgsm,pgd"}
    for method, per_seed in worst.items():
        row = rows.loc[method]
        expected = np.mean([b.mean() for b in per_seed.values()])
        assert row["robust_worst"] == pytest.approx(expected)
        assert row["robust_acc"] == row["robust_worst"]  # the ranking column
        assert row["robust_worst"] < min(row["robust_pgd"], row["robust_fgsm"])
        # the interval is the hierarchical bootstrap of exactly those bits, seed 0
        _, lo, hi = hierarchical_bootstrap_ci([per_seed[s] for s in SEEDS], seed=0)
        assert (row["robust_worst_lo"], row["robust_worst_hi"]) == (lo, hi)
        assert row["robust_worst_seeds"] == 3
    # weak's pgd covers 800 points: its worst case covers the prefix both attacks share
    assert rows.loc["weak", "robust_worst_n"] == 800 and rows.loc["strong", "robust_worst_n"] == N
    assert "worst case over attacks (fgsm, pgd)" in note and "seeds 0, 1, 2" in note
    assert "the first 800 to 1000 points" in note


def test_a_planted_gap_gives_separate_tie_groups(planted):
    results, _ = planted
    df, _ = leaderboard_frame(load_tables(results))
    rows = df.set_index("method")
    assert list(df["method"]) == ["strong", "weak"]
    assert rows["tie_group"].to_dict() == {"strong": 1, "weak": 2}
    assert rows["rank_lo"].to_dict() == rows["rank_hi"].to_dict() == {"strong": 1, "weak": 2}
    assert rows.loc["weak", "robust_worst_hi"] < rows.loc["strong", "robust_worst_lo"]


def test_two_seeds_of_one_model_share_a_tie_group(tmp_path):
    """The same model's two seeds, entered as if they were two methods: they differ only
    by sampling noise, so the ranking must not tell them apart."""
    results = tmp_path / "twins" / "results"
    for name, seed in (("model@0", 0), ("model@1", 1)):
        run_id = write_run(results, name, seed)
        write_robustness(results, run_id, "pgd", draw(seed, 0.7))
        write_robustness(results, run_id, "fgsm", draw(seed + 50, 0.8))
    df, _ = leaderboard_frame(load_tables(results))
    assert df["robust_worst"].iloc[0] != df["robust_worst"].iloc[1]  # not trivially equal
    assert set(df["tie_group"]) == {1}
    assert set(df["rank_lo"]) == {1} and set(df["rank_hi"]) == {2}


def test_fallback_on_rows_without_points(tmp_path):
    """A board written before per-point results ranks as before (AutoAttack), says it has no
    worst case, and still has intervals: a mean of 0/1 outcomes bootstraps from counts."""
    results = write_results(tmp_path / "old" / "results")
    df, note = leaderboard_frame(load_tables(results))
    assert "robust_worst" not in df and set(df["rank_by"].dropna()) == {"robust_autoattack"}
    assert "no per-point worst case" in note and "Ranked by autoattack" in note
    trades = df.set_index("method").loc["trades"]
    # trades' autoattack: 0.58 and 0.60 on 200 points, rebuilt as counts
    _, lo, hi = hierarchical_bootstrap_ci([count_bits(0.58, 200), count_bits(0.60, 200)])
    assert (trades["robust_autoattack_lo"], trades["robust_autoattack_hi"]) == (lo, hi)
    assert trades["robust_autoattack_n"] == 200 and trades["robust_acc_lo"] == lo
    assert trades["tie_group"] == 1 and (trades["rank_lo"], trades["rank_hi"]) == (1, 2)
    # the fixture's runs table has no n_test: no interval for clean accuracy, its std stays
    assert trades[["clean_acc_lo", "clean_acc_hi"]].isna().all()
    assert "87.0 ± 1.4" in render(results)


def test_a_run_without_points_sends_the_board_to_the_fallback(planted, tmp_path):
    import shutil

    results = tmp_path / "mixed" / "results"
    shutil.copytree(planted[0], results)
    run_id = write_run(results, "legacy", 0)
    write_robustness(results, run_id, "pgd", None, acc=0.5)
    df, note = leaderboard_frame(load_tables(results))
    assert "robust_worst" not in df and set(df["rank_by"]) == {"robust_pgd"}
    assert "1 of 7 evaluated runs have no per-point results yet" in note


def test_counts_give_the_interval_the_bits_give():
    bits = [draw(s, 0.6, 500) for s in SEEDS]
    counted = [count_bits(b.mean(), b.size) for b in bits]
    assert [c.sum() for c in counted] == [b.sum() for b in bits]
    assert hierarchical_bootstrap_ci(counted) == hierarchical_bootstrap_ci(bits)


def test_autoattack_cross_check(tmp_path):
    """AutoAttack (100 points) breaks 4 points the ensemble left robust and leaves robust 1
    point the ensemble broke: counted per row on the points both evaluated."""
    results = tmp_path / "aa" / "results"
    run_id = write_run(results, "m", 0)
    pgd = draw(0, 0.7)
    write_robustness(results, run_id, "pgd", pgd)
    aa = pgd[:100].copy()
    robust, broken = np.flatnonzero(aa), np.flatnonzero(~aa)
    aa[robust[:4]] = False
    aa[broken[0]] = True
    write_robustness(results, run_id, "autoattack", aa)
    df, note = leaderboard_frame(load_tables(results))
    row = df.iloc[0]
    assert df["ensemble"].iloc[0] == "pgd"  # autoattack stays out of the ensemble
    assert (row["aa_only_breaks"], row["ensemble_only_breaks"], row["crosscheck_n"]) == (4, 1, 100)
    assert "broke 4 points the ensemble left robust" in note and "unexpected" in note
    table = render(results)
    assert "4/100" in table and "1/100" in table


def test_clean_and_corruption_intervals_from_counts(tmp_path):
    results = tmp_path / "counts" / "results"
    for seed, clean in zip(SEEDS, (0.90, 0.92, 0.91)):
        run_id = write_run(results, "m", seed, clean_acc=clean, n_test=2000)
        store.write_cell(results, "corruption", run_id, [
            {"run_id": run_id, "corruption": c, "severity": 1, "n_examples": 300,
             "acc": acc + seed / 100} for c, acc in (("fog", 0.7), ("noise", 0.5))])
    row = leaderboard_frame(load_tables(results))[0].iloc[0]
    _, lo, hi = hierarchical_bootstrap_ci([count_bits(c, 2000) for c in (0.90, 0.92, 0.91)])
    assert (row["clean_acc_lo"], row["clean_acc_hi"], row["clean_acc_n"]) == (lo, hi, 2000)
    _, lo, hi = hierarchical_bootstrap_ci([count_bits(0.6 + s / 100, 300) for s in SEEDS])
    assert (row["corruption_acc_lo"], row["corruption_acc_hi"]) == (lo, hi)
    assert row["corruption_acc_n"] == 300 and row["corruption_acc_std"] == pytest.approx(0.01)


def test_exact_counts_get_no_interval_only_a_marker(tmp_path):
    results = tmp_path / "flops" / "results"
    for seed, flops in zip(SEEDS, (1e12, 1e12, 1.3e12)):
        run_id = write_run(results, "m", seed, train_flops=flops)
        write_robustness(results, run_id, "pgd", draw(seed, 0.5, 100))
    df, note = leaderboard_frame(load_tables(results))
    assert df["deterministic"].iloc[0] == "infer_flops,params,nonzero_params"
    assert not any(c.startswith("train_flops_") for c in df)  # no interval columns
    assert varying_counts(df) == ["m (small_cnn): train_flops"]
    assert "exact counts, with no interval" in note
    table = render(results)
    assert "~1.1 TFLOPs" in table and "~: the seeds' counts differ" in table
    record = json.loads(render(results, "json"))[0]
    assert record["deterministic"] == {"train_flops": False, "infer_flops": True,
                                       "params": True, "nonzero_params": True}


def test_json_and_text_carry_the_ranking(planted):
    results, _ = planted
    records = json.loads(render(results, "json"))
    strong = records[0]["ranking"]
    assert strong == {"metric": "robust_worst", "value": records[0]["robust_worst"],
                      "n": N, "seeds": 3, "lo": records[0]["robust_worst_lo"],
                      "hi": records[0]["robust_worst_hi"], "rank": 1, "rank_lo": 1,
                      "rank_hi": 1, "tie_group": 1, "attacks": ["fgsm", "pgd"]}
    assert strong["lo"] < strong["value"] < strong["hi"]
    for record in records:
        for metric in ("clean_acc", "robust_worst", "robust_pgd", "robust_fgsm"):
            assert {f"{metric}_lo", f"{metric}_hi", f"{metric}_n", f"{metric}_std"} <= set(record)
    table = render(results)
    lo, hi = (100 * records[0][f"robust_worst_{b}"] for b in ("lo", "hi"))
    assert f"{100 * strong['value']:.1f} [{lo:.1f}, {hi:.1f}]" in table
    assert "worst case %" in table and "tie" in table.splitlines()[2]


def test_show_on_the_tiny_grid_ranks_by_the_worst_case(finished, capsys):
    assert main(["show", str(finished), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    ranking = [r["ranking"] for r in records]
    assert {r["metric"] for r in ranking} == {"robust_worst"}
    assert all(r["attacks"] == ["fgsm", "pgd"] and r["lo"] <= r["value"] <= r["hi"]
               and r["rank_lo"] <= r["rank"] <= r["rank_hi"] for r in ranking)
    assert main(["show", str(finished)]) == 0
    assert "Ranked by the worst case over attacks (fgsm, pgd)" in capsys.readouterr().out


def test_show_on_the_committed_board():
    """fashion-mnist (read only): whatever per-point results it holds, every ranked row
    has an interval, a rank range around its rank, and a tie group."""
    board = Path(__file__).resolve().parent.parent / "leaderboards" / "fashion-mnist"
    records = json.loads(render(board / "results", "json"))
    ranked = [r["ranking"] for r in records if r["rank"] is not None]
    assert len(ranked) > 10 and len({r["metric"] for r in ranked}) == 1
    assert all(r["tie_group"] is not None and r["lo"] <= r["hi"]
               and r["rank_lo"] <= r["rank"] <= r["rank_hi"] for r in ranked)
