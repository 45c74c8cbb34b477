"""Latency rows per hardware profile: schema, protocol bookkeeping, skipped profiles.

No wall-clock assertions: timings on a shared CI machine are noise; tests check only
what the protocol guarantees (ordering of quantiles, positivity, recorded conditions).
"""
from __future__ import annotations

import copy

import pandas as pd
import pyarrow as pa
import pytest
import torch
from conftest import tiny_cnn

from bench.hardware import HARDWARE, available_cpus
from bench.latency import latency_quantiles, measure_latency, sparse_layers, to_sparse_execution
from bench.results.schema import TABLES

FAST = {"batch_sizes": (1, 8), "warmup": 1, "iters": 5}


def as_arrow(rows: list[dict]) -> pa.Table:
    schema = TABLES["latency"]
    return pa.Table.from_pandas(pd.DataFrame(rows)[schema.names], schema=schema,
                                preserve_index=False)


def test_profiles_registered():
    assert {"cpu-1t", "cpu", "cuda", "cuda-bf16"} <= set(HARDWARE.list())
    assert HARDWARE.create("cpu-1t").threads == 1
    assert HARDWARE.create("cpu", threads=3).resolved_threads() == 3
    assert HARDWARE.create("cuda-bf16").dtype == "bfloat16"


@pytest.mark.parametrize("name", ["cpu-1t", "cpu"])
def test_cpu_profiles_measure(name):
    model = tiny_cnn().train()
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    original = torch.get_num_threads()
    torch.set_num_threads(3)  # differs from both profiles' counts, so a restore shows
    try:
        rows = measure_latency(model, (1, 8, 8), HARDWARE.create(name), run_id="r", eval_id="e",
                               **FAST)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(original)
    assert model.training and all(torch.equal(v, before_state[k])
                                  for k, v in model.state_dict().items())
    assert set(rows[0]) == set(TABLES["latency"].names)
    as_arrow(rows)  # types fit the table schema
    expected_threads = 1 if name == "cpu-1t" else available_cpus()
    assert [r["batch_size"] for r in rows] == [1, 8]
    for r in rows:
        assert r["skipped_reason"] is None and r["hardware"] == name
        assert r["run_id"] == "r" and r["eval_id"] == "e"
        assert r["threads"] == expected_threads and r["dtype"] == "float32" and not r["compiled"]
        assert r["execution"] == "dense"
        assert r["device_name"]
        assert 0 < r["latency_ms_p10"] <= r["latency_ms_p25"] <= r["latency_ms_p50"] \
            <= r["latency_ms_p75"] <= r["latency_ms_p90"]
        assert r["latency_repeats"] == FAST["iters"]
        assert r["throughput_per_s"] == pytest.approx(r["batch_size"] * 1000 / r["latency_ms_p50"])
        assert r["created_at"].tz is not None


@pytest.mark.parametrize("name", ["cuda", "cuda-bf16"])
def test_cuda_profiles_skipped_without_gpu(name):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the profile is measured, not skipped")
    rows = measure_latency(tiny_cnn(), (1, 8, 8), HARDWARE.create(name), run_id="r", **FAST)
    assert [r["batch_size"] for r in rows] == [1, 8]
    for r in rows:
        assert "CUDA" in r["skipped_reason"]
        assert r["latency_ms_p50"] is None and r["latency_ms_p90"] is None
        assert r["latency_ms_p10"] is None and r["latency_repeats"] is None
        assert r["throughput_per_s"] is None and r["device_name"] is None
    as_arrow(rows)


def test_quantiles_of_the_timed_calls():
    # numpy's linear interpolation on 1..10 ms: p = 1 + q/100 · 9
    q = latency_quantiles([float(t) for t in range(10, 0, -1)])
    assert q == {"latency_ms_p10": pytest.approx(1.9), "latency_ms_p25": pytest.approx(3.25),
                 "latency_ms_p50": pytest.approx(5.5), "latency_ms_p75": pytest.approx(7.75),
                 "latency_ms_p90": pytest.approx(9.1), "latency_repeats": 10}
    assert set(latency_quantiles(None).values()) == {None}


def test_rejects_empty_protocol():
    with pytest.raises(ValueError, match="iters"):
        measure_latency(tiny_cnn(), (1, 8, 8), HARDWARE.create("cpu-1t"), iters=0)


def pruned_tiny_cnn() -> torch.nn.Module:
    model = tiny_cnn()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p[torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) < 0.8] = 0
    return model


def test_sparse_execution_rows():
    rows = measure_latency(pruned_tiny_cnn(), (1, 8, 8), HARDWARE.create("cpu-1t"),
                           execution="sparse", run_id="r", **FAST)
    as_arrow(rows)
    assert [r["execution"] for r in rows] == ["sparse", "sparse"]
    assert all(r["skipped_reason"] is None and 0 < r["latency_ms_p50"] <= r["latency_ms_p90"]
               for r in rows)


def test_sparse_execution_without_a_kernel_is_skipped(monkeypatch):
    def missing(*args, **kwargs):
        raise NotImplementedError("no sparse kernel here")

    monkeypatch.setattr(torch.sparse, "mm", missing)
    rows = measure_latency(pruned_tiny_cnn(), (1, 8, 8), HARDWARE.create("cpu-1t"),
                           execution="sparse", **FAST)
    as_arrow(rows)
    for r in rows:
        assert r["execution"] == "sparse" and r["latency_ms_p50"] is None
        assert "no sparse kernel here" in r["skipped_reason"]


def test_sparse_execution_matches_dense():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2, bias=False),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=4), torch.nn.Flatten(),
        torch.nn.Linear(16 * 3 * 3, 5),
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p[torch.rand(p.shape, generator=torch.Generator().manual_seed(p.numel())) < 0.7] = 0
    assert sparse_layers(model) == ["0", "2", "3", "5"]
    sparse = to_sparse_execution(copy.deepcopy(model))
    x = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(sparse(x), model(x), atol=1e-5)


def test_dense_model_has_nothing_to_run_sparse():
    assert sparse_layers(tiny_cnn()) == []
    rows = measure_latency(tiny_cnn(), (1, 8, 8), HARDWARE.create("cpu-1t"), execution="sparse",
                           **FAST)
    assert all("nothing to run sparse" in r["skipped_reason"] for r in rows)
