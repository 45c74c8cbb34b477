"""Table schemas: the column contract with the app and with users' notebooks (docs/conventions.md#tables).

Extend, don't rename. Each parquet file carries ``schema_version`` in its metadata.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"

_s, _i, _f, _b, _t = pa.string(), pa.int64(), pa.float64(), pa.bool_(), pa.timestamp("us", tz="UTC")

TABLES: dict[str, pa.Schema] = {
    "runs": pa.schema([
        ("run_id", _s), ("leaderboard", _s), ("method", _s), ("method_config", _s),
        ("dataset", _s), ("arch", _s), ("seed", _i), ("epochs", _i), ("batch_size", _i),
        ("threads", _i), ("status", _s), ("error", _s), ("train_flops", _f),
        ("train_samples", _i), ("train_seconds", _f), ("peak_mem_bytes", _i), ("params", _i),
        ("nonzero_params", _i), ("infer_flops", _f), ("clean_acc", _f), ("val_acc", _f),
        ("n_test", _i), ("checkpoint", _s), ("submission_id", _s), ("host", _s),
        ("device", _s), ("versions", _s), ("created_at", _t),
        # added with the seed methods: the training subset actually granted, and the
        # fraction of prunable weights that are exactly zero at the end (pruning methods).
        ("train_size", _i), ("sparsity", _f), ("augment", _s),
        # the host's 1-minute load average as the cell ended: timings taken beside other
        # work (a load above the cell's threads) read high, and this says so.
        ("load_avg", _f),
        # why the same cell may not repeat bit for bit on this platform (CUDA's atomic adds
        # and cuDNN's algorithm choice); null where training is deterministic (CPU)
        ("nondeterminism", _s),
        # how the loop ran the passes (grid key `training`): fp32/bf16 autocast, NHWC
        # layout, torch.compile. Null in runs written before these options existed (fp32).
        ("precision", _s), ("channels_last", _b), ("compiled", _b),
        # JSON list of the epochs already done each time an interrupted run was resumed
        # from its snapshot ("[3]"); null when trained in one go. train_seconds then
        # leaves out the epoch lost to the interruption.
        ("resumed_after_epochs", _s),
        # what the process's malloc did (bench.allocator): it changes CPU timings, never
        # numbers. Null in runs written before it was recorded.
        ("allocator", _s),
        # where the method ran: "bwrap" (the training sandbox, bench/sandbox.py) or "none"
        # (--no-sandbox, trusted code); null in runs written before sandboxing. And the CPU
        # seconds (user + system, every thread) of the process that ran it, as the kernel
        # counted them: what the uncounted_work check holds train_flops against.
        ("sandbox", _s), ("train_cpu_seconds", _f),
        # of which starting the sandboxed process (interpreter, torch, PERBench, no
        # training) took, measured once per driver process on this host
        ("startup_cpu_seconds", _f),
    ]),
    "history": pa.schema([
        ("run_id", _s), ("epoch", _i), ("lr", _f), ("train_loss", _f), ("train_acc", _f),
        ("val_acc", _f), ("val_robust_acc", _f), ("samples_seen", _i), ("flops_so_far", _f),
        ("seconds_so_far", _f), ("extra", _s),  # extra: json of method-logged fields
    ]),
    "robustness": pa.schema([
        ("run_id", _s), ("eval_id", _s), ("attack", _s), ("norm", _s), ("eps", _f),
        ("steps", _i), ("restarts", _i), ("n_examples", _i), ("clean_acc", _f),
        ("robust_acc", _f), ("attack_seconds", _f), ("attack_config", _s), ("status", _s),
        ("error", _s), ("created_at", _t), ("load_avg", _f),
        # the ε sweep a row belongs to (thesis Algorithm 2), null for the grid's attacks:
        # leaderboard columns use the attacks, robustness-vs-ε curves the sweeps.
        ("sweep", _s),
        # per point (bench.results.points): clean-correct, and robust (clean-correct and
        # never fooled), one bit each. Null in rows written before per-point results.
        ("clean_points", pa.binary()), ("robust_points", pa.binary()),
    ]),
    "latency": pa.schema([
        ("run_id", _s), ("eval_id", _s), ("hardware", _s), ("device_name", _s), ("threads", _i),
        ("dtype", _s), ("compiled", _b), ("batch_size", _i), ("latency_ms_p50", _f),
        ("latency_ms_p90", _f), ("throughput_per_s", _f), ("skipped_reason", _s),
        ("created_at", _t),
        ("execution", _s),  # "dense", or "sparse" for pruned weights run as sparse tensors
        ("load_avg", _f),
        # the spread of the timed calls around their median (p50) and how many there were;
        # null in rows written before they were recorded, and in skipped rows
        ("latency_ms_p10", _f), ("latency_ms_p25", _f), ("latency_ms_p75", _f),
        ("latency_repeats", _i),
    ]),
    "corruption": pa.schema([
        ("run_id", _s), ("eval_id", _s), ("corruption", _s), ("severity", _i),
        ("n_examples", _i), ("acc", _f), ("clean_acc", _f),  # clean: the same points
        ("source", _s),  # "generated" (seeded, bench.corruptions) or "files" (official .npy)
        ("seconds", _f), ("created_at", _t),
    ]),
    "transfer": pa.schema([
        ("source_run", _s), ("target_run", _s), ("eval_id", _s), ("attack", _s), ("norm", _s),
        ("eps", _f), ("n_examples", _i),
        ("acc", _f),  # target's accuracy on the source's adversarial examples
        ("clean_acc", _f),  # target's accuracy on the same clean points
        ("robust_acc", _f),  # target correct on both (docs/conventions.md#robust-accuracy)
        ("source_robust_acc", _f),  # the source's own white-box robust accuracy on them
        ("attack_config", _s), ("created_at", _t),
    ]),
    # Reliability checks (bench.work.checks): one row per (run, check). value: the measured number
    # behind the verdict (null where none); kind: "model" or "result", the check's level.
    "checks": pa.schema([
        ("run_id", _s), ("check", _s), ("passed", _b), ("detail", _s), ("value", _f),
        ("created_at", _t), ("kind", _s),
    ]),
    # Written by methods through ``TrainContext.emit`` (docs/conventions.md#tables).
    "removed_samples": pa.schema([
        ("run_id", _s), ("sample_id", _i), ("label", _i), ("score", _f), ("epoch", _i),
        ("method", _s),
    ]),  # sample_id: index into the dataset's original training set
    "layer_sparsity": pa.schema([
        ("run_id", _s), ("layer", _s), ("params", _i), ("nonzero", _i),
    ]),
    # What a modifier's mechanism did, one row per event (``TrainContext.record_mechanism``):
    # modifier: its registry name; epoch: the epoch the event belongs to (0-based; an event
    # after the last epoch has epoch = the run's epochs); event: the modifier's word for it
    # (``removed``, ``lr_change``, ``subnets``, ``hard_prune``, ...); value: its one number;
    # detail: JSON of the rest. Runs trained before the table existed have no rows.
    "mechanism": pa.schema([
        ("run_id", _s), ("modifier", _s), ("epoch", _i), ("event", _s), ("value", _f),
        ("detail", _s),
    ]),
    # Who submitted what (``perbench submit`` / ``perbench eval-model``): runs.submission_id
    # points here; built-in methods have none. source: the submitted file's name, or
    # ``entry-point:<name>``; code_path: its copy under results/ (files only); config: the
    # resolved options as JSON; code_sha: sha256 of the file (of "dist==version" for an
    # entry point, of the weights for an external model).
    "submissions": pa.schema([
        ("submission_id", _s), ("name", _s), ("authors", _s), ("link", _s), ("license", _s),
        ("method", _s), ("code_sha", _s), ("created_at", _t), ("source", _s),
        ("code_path", _s), ("config", _s), ("leaderboard", _s), ("versions", _s),
        ("kind", _s),  # "method" (trained by PERBench) or "external model" (eval-model)
    ]),
    # Results reported elsewhere (bench.interop.robustbench imports RobustBench's model_info files):
    # shown beside the leaderboard, never ranked in it. Accuracies are fractions like ours;
    # robust_attack: "autoattack", or "reported" where the entry has only the paper's number.
    "reference": pa.schema([
        ("source", _s), ("entry", _s), ("name", _s), ("architecture", _s), ("dataset", _s),
        ("threat_model", _s), ("eps", _f), ("clean_acc", _f), ("robust_acc", _f),
        ("robust_attack", _s), ("venue", _s), ("link", _s), ("additional_data", _b),
        ("unreliable", _b), ("reported_elsewhere", _b), ("created_at", _t),
    ]),
    # Measured speed of PERBench against plain PyTorch on one machine (``perbench bench``):
    # one row per figure. value/reference: the same unit, PERBench and the plain loop (or
    # the peak) measured in the same run; ratio: the figure's ratio as its target states it.
    "speed": pa.schema([
        ("bench_id", _s), ("figure", _s), ("value", _f), ("reference", _f), ("unit", _s),
        ("ratio", _f), ("ratio_meaning", _s), ("target", _f), ("target_met", _b),
        ("detail", _s), ("hardware", _s), ("device_name", _s), ("threads", _i), ("host", _s),
        ("versions", _s), ("created_at", _t), ("load_avg", _f),
    ]),
}

# Tables a method may write through ``TrainContext.emit``; run_id is filled in by the harness.
METHOD_TABLES = ("removed_samples", "layer_sparsity", "mechanism")


def register_table(name: str, schema: pa.Schema) -> None:
    """Add a table (a plugin's cell kind writes it); its columns may not change later."""
    if name in TABLES and not TABLES[name].equals(schema):
        raise ValueError(f"table {name!r} is already registered with other columns")
    TABLES[name] = schema
