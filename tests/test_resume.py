"""Resuming an interrupted training run from its per-epoch snapshot ends where a run never
stopped ends: the same weights, FLOPs, history and method tables, bit for bit on the CPU,
for every built-in base, modifier and grid composition."""
from __future__ import annotations

import io
import json
import math

import pytest
import torch
from method_cases import COMPOSITIONS, context, train_case

from bench.api import Execution, Modifier
from bench.plugins import compose
from bench.work.loop import ResumeError, train

pytestmark = pytest.mark.usefixtures("one_thread")


def serialized(state: dict) -> dict:
    """What the runner's file round trip gives back: torch.save, then a weights-only load
    onto the CPU (a snapshot that needs pickled objects fails here)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


def history_without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds_so_far"} for row in history]


def assert_same_run(got, ref) -> None:
    (stats, ctx), (ref_stats, ref_ctx) = got, ref
    ref_weights = ref_ctx.model.state_dict()
    for name, value in ctx.model.state_dict().items():
        assert torch.equal(value, ref_weights[name]), name
    assert stats.train_flops == ref_stats.train_flops
    assert stats.train_samples == ref_stats.train_samples
    assert history_without_time(stats.history) == history_without_time(ref_stats.history)
    assert ctx.tables == ref_ctx.tables
    assert ctx.run_fields == ref_ctx.run_fields


@pytest.mark.parametrize("name", COMPOSITIONS)
def test_resumed_run_ends_as_the_uninterrupted_one(name, digits_tensors):
    snapshots = []
    ref = train_case(name, digits_tensors, snapshot=lambda s: snapshots.append(serialized(s)))
    epochs = len(ref[0].history)  # 3; Free-AT divides them by its replays: 2
    assert [s["epoch"] for s in snapshots] == list(range(epochs))
    # Killed during epoch 1: continue from the snapshot after epoch 0, on fresh objects
    # (a new process builds a new model, methods and generator from the same cell).
    got = train_case(name, digits_tensors, resume=snapshots[0])
    assert got[0].resumed_after == [1]
    assert_same_run(got, ref)
    # Killed after the last epoch but before the checkpoint was written: nothing left to
    # train; the end-of-training hooks (ADMM's final masks) still run once.
    got = train_case(name, digits_tensors, resume=snapshots[-1])
    assert got[0].resumed_after == [epochs]
    assert_same_run(got, ref)


def test_taking_snapshots_changes_nothing(digits_tensors):
    name = "pgd_at+ews"  # the most state: a controller, its optimizer, a private stream
    assert_same_run(train_case(name, digits_tensors, snapshot=lambda s: serialized(s)),
                    train_case(name, digits_tensors))


def test_resumed_twice_records_both(digits_tensors):
    snaps = []
    train_case("erm+caper", digits_tensors, snapshot=lambda s: snaps.append(serialized(s)))
    again = []
    train_case("erm+caper", digits_tensors, resume=snaps[0],
               snapshot=lambda s: again.append(serialized(s)))
    stats, _ = train_case("erm+caper", digits_tensors, resume=again[0])
    assert stats.resumed_after == [1, 2]


class Stateful(Modifier):
    """A plugin that keeps a count between steps and never says so (no state_dict)."""

    name = "stateful_plugin"

    def __init__(self):
        self.steps = 0

    def after_step(self, ctx, batch):
        self.steps += 1


def test_a_method_without_state_dict_gets_no_snapshots(digits_tensors):
    snapshots = []
    comp = compose("erm")
    ctx = context("erm", digits_tensors)
    train(comp.base, [Stateful()], ctx, snapshot=snapshots.append)
    assert snapshots == []  # the cell would restart from epoch 0: slower, never wrong


def test_a_snapshot_of_another_composition_is_refused(digits_tensors):
    snapshots = []
    train_case("erm", digits_tensors, snapshot=snapshots.append)
    with pytest.raises(ResumeError, match="does not fit"):
        train_case("erm+caper", digits_tensors, resume=serialized(snapshots[0]))
    bad_format = {**serialized(snapshots[0]), "format": 0}
    with pytest.raises(ResumeError, match="format"):
        train_case("erm", digits_tensors, resume=bad_format)


def test_resumed_seconds_continue_from_the_snapshot(digits_tensors):
    snapshots = []
    train_case("erm", digits_tensors, snapshot=lambda s: snapshots.append(serialized(s)))
    snap = {**snapshots[0], "seconds": 1000.0}
    stats, _ = train_case("erm", digits_tensors, resume=snap)
    assert stats.train_seconds >= 1000.0
    assert all(math.isfinite(r["seconds_so_far"]) for r in stats.history)
    assert stats.history[-1]["seconds_so_far"] >= 1000.0


def test_runner_ignores_snapshots_it_cannot_use(tmp_path, digits_tensors, caplog):
    from bench.results.provenance import versions_json
    from bench.work.train import read_snapshot

    path = tmp_path / "resume" / "abc.pt"
    assert read_snapshot(path, "abc") is None  # none yet
    path.parent.mkdir()
    path.write_bytes(b"not a torch file")
    assert read_snapshot(path, "abc") is None
    assert "unreadable resume snapshot" in caplog.text
    snapshots = []
    train_case("erm", digits_tensors, snapshot=snapshots.append)
    good = {**snapshots[0], "cell_key": "abc", "versions": versions_json()}
    torch.save(good, path)
    assert read_snapshot(path, "abc")["epoch"] == 0
    assert read_snapshot(path, "another cell") is None
    # Another torch: the numbers may differ, so the run starts over; another commit of
    # PERBench alone does not stop a resume.
    versions = json.loads(versions_json())
    torch.save({**good, "versions": json.dumps({**versions, "torch": "1.0"})}, path)
    assert read_snapshot(path, "abc") is None
    assert "other versions of torch" in caplog.text
    torch.save({**good, "versions": json.dumps({**versions, "perbench_git": "0" * 40})}, path)
    assert read_snapshot(path, "abc")["epoch"] == 0
    # A snapshot that records no versions cannot show it was written under these.
    torch.save({k: v for k, v in good.items() if k != "versions"}, path)
    assert read_snapshot(path, "abc") is None
    assert "records no library versions" in caplog.text


@pytest.mark.parametrize("execution", [Execution(channels_last=True), Execution(precision="bf16")],
                         ids=["channels_last", "bf16"])
def test_resume_under_execution_options(execution, digits_tensors):
    """NHWC weights and bf16 autocast: the snapshot restores into the layout the loop set."""
    def ctx():
        c = context("pgd_at+ews", digits_tensors)
        c.execution = execution
        return c

    snapshots = []
    ref = train_case("pgd_at+ews", digits_tensors, ctx(),
                     snapshot=lambda s: snapshots.append(serialized(s)))
    got = train_case("pgd_at+ews", digits_tensors, ctx(), resume=snapshots[0])
    assert_same_run(got, ref)
    if execution.channels_last:
        conv = next(m for m in got[1].model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
