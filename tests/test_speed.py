"""`perbench bench` and the speed figures, on the tiny fixture grid's checkpoints: what is
stored and printed, and that each figure measures the thing it names. Speeds themselves
are measured in tests/benchmarks (`tox -e bench`), never asserted here."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_e2e import perbench

from bench.results import store
from bench.speed import figures as speed
from bench.speed.quickstart import classify, shares


@pytest.fixture(scope="module")
def subject(finished):
    return speed.load_subject(finished, method="fast_at")


def test_bench_prints_and_stores_the_figures_with_the_machine(finished, tmp_path):
    board = tmp_path / "tiny"
    shutil.copytree(finished, board)
    proc = perbench("bench", str(board), "--method", "fast_at", "--figures",
                    "matmul_peak,pgd10_eval,train_pgd_at,meter_overhead", "--points", "64",
                    "--images", "64", "--repeats", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for name in ("matmul_peak", "pgd10_eval", "train_pgd_at", "meter_overhead"):
        assert name in proc.stdout
    table = store.read_table(board / "results", "speed")
    assert list(table["figure"]) == ["matmul_peak", "pgd10_eval", "train_pgd_at",
                                     "meter_overhead"]
    assert table["bench_id"].nunique() == 1
    for col in ("host", "device_name", "versions", "created_at", "hardware"):
        assert table[col].notna().all(), col
    assert (table["threads"] == 2).all() and (table["hardware"] == "cpu-2t").all()
    pgd = table.set_index("figure").loc["pgd10_eval"]
    detail = json.loads(pgd["detail"])
    assert detail["points"] == 64 and detail["model"].startswith("fast_at")
    assert pgd["ratio"] == pytest.approx(pgd["value"] / pgd["reference"])
    assert pgd["target"] == 1.5 and pgd["target_met"] == (pgd["ratio"] >= 1.5)
    shown = perbench("show", str(board))  # beside the leaderboard, per machine
    assert "Harness speed on each machine" in shown.stdout
    assert "pgd10_eval" in shown.stdout and "cpu-2t" in shown.stdout


def test_bench_rejects_bad_input(finished):
    proc = perbench("bench", str(finished), "--figures", "pgd10_eval,warp_speed")
    assert proc.returncode == 2 and "warp_speed" in proc.stderr and "matmul_peak" in proc.stderr
    proc = perbench("bench", str(finished), "--method", "trades")
    assert proc.returncode == 2 and "no a finished trades run" in proc.stderr
    assert "erm" in proc.stderr  # says which runs there are


def test_pgd_figure_scores_the_same_model_both_ways(subject):
    """Both sides attack the same points of the same model: clean-wrong points are never
    robust, and PERBench's per-point worst case (it keeps the first fooling iterate) is
    at most the plain loop's final-iterate robust accuracy."""
    fig = speed.pgd10_eval(subject, points=100, batch_size=50, repeats=1)
    d = fig.detail
    assert d["points"] == 100
    assert 0 < d["robust_acc"] <= d["clean_acc"]
    assert d["robust_acc"] <= d["plain_robust_acc"] + 1e-9
    assert fig.ratio == pytest.approx(d["plain_s"] / d["perbench_s"])


def test_train_figure_counts_flops_and_overhead(subject):
    fig, overhead = speed.train_throughput(subject, "pgd_at", images=64,
                                           batch_size=32, repeats=1, pgd_steps=2)
    d = fig.detail
    # 2 PGD steps (forward + input-gradient backward each: ~2F) and the update (~3F):
    # with the model's inference FLOPs F per image, the count is ~7F per image.
    from bench.measures import inference_flops

    per_image = inference_flops(subject.model, tuple(subject.test_x.shape[1:]))
    assert 6.0 <= d["train_flops"] / (64 * per_image) <= 7.0
    # The roof is a float32 matmul timed in the same rounds as the training.
    assert d["peak_dtype"] == "float32" and d["peak_gflops"] > 0
    assert fig.ratio == pytest.approx(d["achieved_gflops"] / d["peak_gflops"])
    assert (d["precision"], d["channels_last"], d["compile"]) == ("fp32", False, False)
    assert overhead is not None and overhead.figure == "meter_overhead"
    assert overhead.ratio == pytest.approx(d["metered_s"] / d["perbench_s"] - 1)
    with pytest.raises(ValueError, match="erm and pgd_at"):
        speed.train_throughput(subject, "trades", None)


def test_matmul_peak_is_the_rate_of_the_product_it_times():
    fig = speed.matmul_peak(torch.device("cpu"), n=128, repeats=2)
    assert fig.value == pytest.approx(2 * 128**3 / fig.detail["seconds"] / 1e9)


def test_quickstart_samples_are_classified_by_stack():
    compute = ("<module> (bench/cli/__init__.py:1);train (bench/work/loop.py:90);"
               "_call_impl (torch/nn/modules/module.py:1786);forward (torch/nn/modules/conv.py:5)")
    backward = "train (bench/work/loop.py:100);backward (torch/_tensor.py:630)"
    store_write = "run_local (bench/execute/sequential.py:1);write_cell (bench/results/store.py:200)"
    imports = "<module> (bench/cli/__init__.py:1);_find_and_load (<frozen importlib._bootstrap>:1176)"
    assert classify(compute) == classify(backward) == "model compute"
    assert classify(store_write) == "results store"
    assert classify(imports) == "imports"
    total, by_class = shares(f"{compute} 6\n{backward} 2\n{store_write} 1\n{imports} 1\n")
    assert total == 10
    assert by_class == {"model compute": 0.8, "results store": 0.1, "imports": 0.1}
    # Every pyautoattack stack passes through our wrapper: the library's own code is the
    # attack's algorithm, our wrapper's and our attacks' code is the harness's.
    wrapper = "evaluate (bench/attacks/evaluate.py:90);run (bench/attacks/autoattack.py:70)"
    library = f"{wrapper};attack_single_run (pyautoattack/square.py:246)"
    in_model = f"{library};_call_impl (torch/nn/modules/module.py:1786)"
    ours = "ascend (bench/attacks/ascent.py:123)"
    assert classify(library) == "attack library (pyautoattack, outside the model)"
    assert classify(in_model) == "model compute"
    assert classify(wrapper) == classify(ours) == "attacks (our code, outside the model)"


def test_synthetic_subject_trains_bf16_channels_last_against_a_bf16_roof():
    """The GPU recipe (bf16 autocast, NHWC, CIFAR-shaped data, no checkpoint) on CPU: both
    sides run it, the roof is a bf16 matmul, and the FLOPs are the fp32 run's."""
    from bench.api import Execution

    subject = speed.synthetic_subject("small_cnn", torch.device("cpu"), images=32)
    assert subject.train_x.shape == (32, 3, 32, 32) and not subject.trained
    fast = Execution(precision="bf16", channels_last=True)
    fig, _ = speed.train_throughput(subject, "pgd_at", images=32, batch_size=16, repeats=1,
                                    pgd_steps=1, execution=fast)
    plain, _ = speed.train_throughput(subject, "pgd_at", images=32, batch_size=16, repeats=1,
                                      pgd_steps=1)
    d = fig.detail
    assert (d["precision"], d["channels_last"], d["peak_dtype"]) == ("bf16", True, "bfloat16")
    assert d["train_flops"] == plain.detail["train_flops"] > 0
    assert fig.target == 0.6  # CPU; 0.35 on CUDA
    with pytest.raises(ValueError, match="trained checkpoint"):
        speed.measure(subject, ("pgd10_eval",))


def test_bench_synthetic_refuses_evaluation_figures(finished):
    proc = perbench("bench", str(finished), "--synthetic", "small_cnn", "--figures",
                    "pgd10_eval", "--no-save")
    assert proc.returncode == 2 and "trained checkpoint" in proc.stderr
    proc = perbench("bench", str(finished), "--synthetic", "resnet9000", "--no-save")
    assert proc.returncode == 2 and "resnet9000" in proc.stderr and "small_cnn" in proc.stderr
    proc = perbench("bench", str(finished), "--batch-size", "0")
    assert proc.returncode == 2 and "positive integer" in proc.stderr


def test_timed_reads_the_call_it_wraps():
    seconds, out = speed.timed(lambda: sum(range(10_000)))
    assert out == sum(range(10_000)) and 0 < seconds < 60


def test_paired_ratio_is_the_median_of_back_to_back_ratios():
    rounds = {"a": [2.0, 4.0, 9.0], "b": [1.0, 2.0, 3.0]}  # the third round ran slow for a
    assert speed.paired_ratio(rounds, "a", "b") == 2.0


def test_show_keeps_each_figures_latest_value_per_setting():
    """A later bench of one figure (the quickstart alone) must not hide the others, and
    the same figure run in two training settings shows twice, each labelled."""
    import pandas as pd

    from bench.views.speed import latest_speed

    def row(bench, figure, value, when, **detail):
        return {"bench_id": bench, "figure": figure, "value": value, "reference": None,
                "unit": "x", "ratio": None, "ratio_meaning": "", "target_met": None,
                "detail": json.dumps(detail), "host": "h", "hardware": "cpu-2t",
                "device_name": "cpu", "created_at": pd.Timestamp(when, tz="UTC")}

    speed = pd.DataFrame([
        row("a", "train_erm", 1.0, "2026-01-01", precision="fp32", channels_last=False),
        row("a", "pgd10_eval", 2.0, "2026-01-01"),
        row("b", "train_erm", 3.0, "2026-01-02", precision="bf16", channels_last=True),
        row("c", "train_erm", 4.0, "2026-01-03", precision="fp32", channels_last=False),
        row("d", "quickstart", 5.0, "2026-01-04"),
    ])
    shown = latest_speed(speed).set_index("figure")["PERBench"].to_dict()
    assert shown == {"pgd10_eval": "2", "train_erm (bf16, channels_last)": "3",
                     "train_erm": "4", "quickstart": "5"}
