"""The leaderboard frame: results tables aggregated to one ranked row per (method, dataset, arch).

Ranked under one threat model by the per-point worst case over the attacks every evaluated
run shares (``robust_worst``: a point is robust only where all of them failed). Where the
rows predate per-point results, ranked like RobustBench instead: by AutoAttack robust
accuracy, else the strongest attack present; the returned note says which and why.

Every accuracy carries a 95% hierarchical bootstrap interval (``<name>_lo``, ``<name>_hi``,
points per seed ``<name>_n``; ``bench.views.ranking``), and the ranking column's intervals
give each row a rank range (``rank_lo``–``rank_hi``) and a ``tie_group``. Accuracies stay
fractions in [0, 1]; formatting is the caller's job.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bench.formats import format_eps
from bench.results.board import mce_reference
from bench.results.store import Location, empty_table, location, read_table
from bench.views.ranking import (
    BOOT_SEED,
    DETERMINISTIC_MEASURES,
    ENSEMBLE_EXCLUDE,
    INTERVAL_SUFFIXES,
    LEVEL,
    N_BOOT,
    WORST,
    WorstCase,
    autoattack_crosscheck,
    bits_frame,
    counted_bits,
    deterministic_measures,
    interval_columns,
    rank_columns,
    row_or_counted_bits,
    worst_case_runs,
)

KEYS = ["method", "dataset", "arch"]
STANDARD_ATTACK = "autoattack"
# (history, removed_samples, layer_sparsity and mechanism: whether a modifier's mechanism
# acted, for claims; bench.views.mechanism)
TABLES_USED = ("runs", "robustness", "latency", "corruption", "checks", "submissions",
               "history", "removed_samples", "layer_sparsity", "mechanism")
NO_RESULTS = "No results yet: `perbench run leaderboards/<name>` fills in the grid."

BASE_COLUMNS = [
    "rank", "rank_lo", "rank_hi", "tie_group", *KEYS, "status", "seeds", "failed",
    "clean_acc", "clean_acc_std", "clean_acc_lo", "clean_acc_hi", "clean_acc_n",
    "clean_acc_seeds", "rank_attack", "rank_by", "ensemble", "robust_acc", "robust_acc_std",
    "robust_acc_lo", "robust_acc_hi", "robust_acc_n", "robust_acc_seeds", "train_flops",
    "train_pflops", "train_seconds", "infer_flops", "params", "nonzero_params",
    "deterministic", "error", "run_ids",
    # provenance: who submitted it ("built-in" for PERBench's own methods), with which
    # code (PERBench git commit; the submission's code sha) and options
    "source", "submission_id", "code_version", "config",
]


def load_tables(results: Location) -> dict[str, pd.DataFrame]:
    """The tables a leaderboard reads, from ``leaderboards/<name>/results`` (or a URI)."""
    return {name: read_table(location(results), name) for name in TABLES_USED}


def accuracy_columns(frame: pd.DataFrame) -> list[str]:
    """Mean accuracy columns (fractions), in frame order; each has ``<name>_std``,
    ``<name>_lo`` and ``<name>_hi`` partners (and ``<name>_n``, points per seed)."""
    return [c for c in frame.columns
            if (c in ("clean_acc", "corruption_acc") or c.startswith("robust_"))
            and not c.endswith(INTERVAL_SUFFIXES)]


def threat_models(tables: Mapping[str, pd.DataFrame], *, dataset: str | None = None,
                  arch: str | None = None) -> list[tuple[str, float]]:
    """(norm, eps) pairs evaluated for the selection, most common first."""
    runs = _select(table_or_empty(tables, "runs"), dataset, arch)
    return list(_threat_model_counts(run_robustness(tables, runs[runs["status"] != "failed"])).index)


def leaderboard_frame(tables: Mapping[str, pd.DataFrame], *, dataset: str | None = None,
                      arch: str | None = None, norm: str | None = None,
                      eps: float | None = None, hardware: str | None = None,
                      mce_reference: str = "erm") -> tuple[pd.DataFrame, str]:
    """One ranked row per (method, dataset, arch), aggregated over seeds, and a note.

    The note names what ranked the table (the worst case's ensemble of attacks, its points
    and seeds; or the attack and why there is no per-point worst case), the threat model,
    AutoAttack's cross-check and how the intervals were drawn. Means and sample standard
    deviations (ddof=1, NaN for one seed) are over the seeds that finished.
    ``mce_reference`` is the method whose corruption errors normalise mCE.
    """
    all_runs = table_or_empty(tables, "runs")
    if all_runs.empty:
        return pd.DataFrame(columns=BASE_COLUMNS), NO_RESULTS
    runs = _select(all_runs, dataset, arch)
    if runs.empty:
        return pd.DataFrame(columns=BASE_COLUMNS), (
            f"No runs for dataset={dataset}, arch={arch}; available datasets: "
            f"{', '.join(sorted(all_runs['dataset'].unique()))}; archs: "
            f"{', '.join(sorted(all_runs['arch'].unique()))}.")
    runs = runs.assign(_failed=runs["status"] == "failed")
    ok_runs = runs[~runs["_failed"]]
    board = _aggregate_runs(runs)
    rob, threat_note, threat = _pick_threat_model(tables, runs, norm, eps)
    per_run = best_row_per_attack(rob)
    worst = worst_case_runs(rob, *threat) if threat else WorstCase(why="no robustness results")
    rank_attack, rank_note = _ranking_attack(per_run, worst, ok_runs)
    board = board.join(_attack_columns(per_run, rank_attack, board.index, worst, ok_runs))
    check_note = ""
    if worst and threat:
        check = autoattack_crosscheck(worst.bits, rob, ok_runs, KEYS, norm=threat[0],
                                      eps=threat[1])
        board = board.join(check)
        check_note = _crosscheck_note(check)
    board = board.join(_latency_columns(table_or_empty(tables, "latency"), runs, hardware, board.index))
    board = board.join(corruption_columns(table_or_empty(tables, "corruption"), runs, mce_reference,
                                          board.index))
    board["flags"] = check_flags(table_or_empty(tables, "checks"), runs).reindex(board.index)
    board["error"] = _errors(runs, rob).reindex(board.index)
    board = board.join(provenance(runs, table_or_empty(tables, "submissions")))
    board = _rank(board.reset_index(), rank_attack, worst)
    notes = (rank_note, _coverage_note(board), threat_note, check_note, INTERVALS_NOTE)
    return board, " ".join(part for part in notes if part)


INTERVALS_NOTE = (
    f"Intervals are {LEVEL:.0%}: a hierarchical bootstrap over seeds, then points within a "
    f"seed ({N_BOOT} resamples, seed {BOOT_SEED}); the rank range and tie group come from the "
    "ranking column's intervals (a tie group holds the rows whose interval reaches its best "
    "row's). FLOPs and parameter counts are exact counts, with no interval.")


def table_or_empty(tables: Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """``tables[name]``, or the table's empty frame (its columns) when it was not read."""
    frame = tables.get(name)
    return empty_table(name) if frame is None else frame


def _select(runs: pd.DataFrame, dataset: str | None, arch: str | None) -> pd.DataFrame:
    keep = np.ones(len(runs), dtype=bool)
    if dataset is not None:
        keep &= (runs["dataset"] == dataset).to_numpy()
    if arch is not None:
        keep &= (runs["arch"] == arch).to_numpy()
    return runs[keep]


def _aggregate_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Counts over all seeds; accuracy and costs over the seeds that finished."""
    board = runs.groupby(KEYS).agg(
        failed=("_failed", "sum"), seeds=("_failed", lambda f: int((~f).sum())),
        run_ids=("run_id", lambda ids: ",".join(sorted(ids))))
    ok = runs[~runs["_failed"]]
    stats = ok.groupby(KEYS).agg(
        clean_acc=("clean_acc", "mean"), clean_acc_std=("clean_acc", "std"),
        train_flops=("train_flops", "mean"), train_seconds=("train_seconds", "mean"),
        infer_flops=("infer_flops", "mean"), params=("params", "mean"),
        nonzero_params=("nonzero_params", "mean"))
    board = board.join(stats.astype(float))
    # clean accuracy is stored per run on its n_test points: its interval comes from counts
    counted = ok.assign(bits=counted_bits(ok, "clean_acc", "n_test"))
    board = board.join(interval_columns("clean_acc", counted[counted["bits"].notna()], KEYS,
                                        mean=False))
    board["deterministic"] = deterministic_measures(ok, KEYS).reindex(board.index)
    board["train_pflops"] = board["train_flops"] / 1e15
    for col in ("params", "nonzero_params"):  # pruning can vary nonzero counts across seeds
        board[col] = board[col].round().astype("Int64")
    board["status"] = np.where(board["failed"] == 0, "ok",
                               np.where(board["seeds"] == 0, "failed", "partial"))
    return board


def run_robustness(tables: Mapping[str, pd.DataFrame], runs: pd.DataFrame) -> pd.DataFrame:
    """Robustness rows of the selected runs' attacks (ε sweeps are curves, not columns),
    joined to their (method, dataset, arch, seed)."""
    rob = table_or_empty(tables, "robustness")
    if "sweep" in rob:
        rob = rob[rob["sweep"].isna()]
    return rob.merge(runs[["run_id", *KEYS, "seed"]], on="run_id")


def corruption_errors(corruption: pd.DataFrame, runs: pd.DataFrame, reference: str
                      ) -> pd.DataFrame:
    """Per run: ``corruption_acc`` (mean over corruptions and severities) and ``mce``.

    mCE as Hendrycks & Dietterich (2019) define it and EWS (Table 2) reports it: for each
    corruption, the run's error summed over severities divided by the reference method's
    on the same (dataset, arch) (its mean over seeds), then the mean over corruptions.
    NaN where the reference has no corruption results for that (dataset, arch).
    """
    rows = corruption.merge(runs.loc[~runs["_failed"], ["run_id", *KEYS]], on="run_id")
    if rows.empty:
        return pd.DataFrame(columns=["run_id", *KEYS, "corruption_acc", "mce"])
    rows = rows.assign(err=1.0 - rows["acc"])
    per_c = rows.groupby(["run_id", *KEYS, "corruption"], as_index=False)["err"].sum()
    ref = (per_c[per_c["method"] == reference].groupby(["dataset", "arch", "corruption"])["err"]
           .mean().rename("ref_err").reset_index())
    per_c = per_c.merge(ref, on=["dataset", "arch", "corruption"], how="left")
    per_c["ce"] = per_c["err"] / per_c["ref_err"]
    out = per_c.groupby(["run_id", *KEYS]).agg(mce=("ce", lambda ce: ce.mean(skipna=False)))
    out["corruption_acc"] = rows.groupby(["run_id", *KEYS])["acc"].mean()
    return out.reset_index()


def corruption_columns(corruption: pd.DataFrame, runs: pd.DataFrame, reference: str,
                       index: pd.MultiIndex) -> pd.DataFrame:
    """``corruption_acc`` (mean, std and interval over seeds) and ``mce`` (mean and std),
    per group.

    Corruption accuracy is stored per (corruption, severity) only, so its interval is
    bootstrapped from counts: each seed as ``round(acc · n)`` ones out of ``n``, with ``n``
    the run's evaluation points (its fewest over corruptions). The corrupted copies of
    one image are not independent points, so counting each image once is the cautious
    choice (a wider interval than counting every copy)."""
    per_run = corruption_errors(corruption, runs, reference)
    if per_run.empty:
        return pd.DataFrame(index=index)
    grouped = per_run.groupby(KEYS)
    frame = pd.DataFrame({
        "corruption_acc": grouped["corruption_acc"].mean(),
        "corruption_acc_std": grouped["corruption_acc"].std(),
        "mce": grouped["mce"].mean(), "mce_std": grouped["mce"].std(),
    }, index=index, dtype=float)
    points = corruption.groupby("run_id")["n_examples"].min().rename("n")
    counted = per_run.merge(points, left_on="run_id", right_index=True).merge(
        runs[["run_id", "seed"]], on="run_id")
    counted = counted.assign(bits=counted_bits(counted, "corruption_acc", "n"))
    ci = interval_columns("corruption_acc", counted[counted["bits"].notna()], KEYS, index,
                          mean=False)
    for i, suffix in enumerate(("_lo", "_hi", "_n", "_seeds"), start=2):
        frame.insert(i, f"corruption_acc{suffix}", ci[f"corruption_acc{suffix}"])
    return frame


def check_flags(checks: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    """Per group, the reliability checks that failed and on how many of its seeds:
    ``"blackbox_beats_whitebox (1/3 seeds)"``; empty where every check passed."""
    rows = checks.merge(runs.loc[~runs["_failed"], ["run_id", *KEYS]], on="run_id")
    seeds = runs[~runs["_failed"]].groupby(KEYS)["run_id"].nunique()
    failed = rows[rows["passed"] == False]  # noqa: E712  (nullable booleans)
    flags = {}
    for key, group in failed.groupby(KEYS):
        counts = group.groupby("check")["run_id"].nunique()
        flags[key] = ", ".join(f"{c} ({n}/{seeds.get(key, n)} seeds)" for c, n in counts.items())
    checked = rows.groupby(KEYS).size().index
    series = pd.Series("", index=checked, dtype=object)
    for key, text in flags.items():
        series[key] = text
    return series


def _finished(rob: pd.DataFrame) -> pd.DataFrame:
    return rob[(rob["status"] != "failed") & rob["robust_acc"].notna()]


def _threat_model_counts(rob: pd.DataFrame) -> pd.Series:
    """Finished evaluations per (norm, eps), most first; ties in (norm, eps) order."""
    counts = _finished(rob).groupby(["norm", "eps"]).size()
    return counts.sort_values(ascending=False, kind="stable")


def _pick_threat_model(tables: Mapping[str, pd.DataFrame], runs: pd.DataFrame,
                       norm: str | None, eps: float | None
                       ) -> tuple[pd.DataFrame, str, tuple[str, float] | None]:
    """Rows of one (norm, eps): the caller's choice, else the most common one; a note, and
    the (norm, eps) chosen (None where there is none)."""
    rob = run_robustness(tables, runs[~runs["_failed"]])
    found = _threat_model_counts(rob)
    if found.empty:
        return rob, "", None
    available = ", ".join(f"{n} {format_eps(e)}" for n, e in found.index)
    wanted = [(n, e) for n, e in found.index
              if (norm is None or n == norm) and (eps is None or np.isclose(e, eps))]
    if not wanted:
        return rob.iloc[:0], (f"No robustness results for norm={norm}, eps={eps}; "
                              f"available threat models: {available}."), None
    chosen_norm, chosen_eps = wanted[0]
    rob = rob[(rob["norm"] == chosen_norm) & np.isclose(rob["eps"], chosen_eps)]
    note = f"Threat model: {chosen_norm}, eps {format_eps(chosen_eps)}"
    if len(found) > 1 and norm is None and eps is None:
        note += f" (the most common of {available}; pass norm/eps to pick another)"
    return rob, note + ".", (str(chosen_norm), float(chosen_eps))


def best_row_per_attack(rob: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, attack): the most points evaluated, then the worst case found.

    An attack may be run twice on one model (more steps, more points); the larger
    evaluation is the more precise and the lower robust accuracy the more reliable.
    """
    done = _finished(rob).sort_values(["n_examples", "robust_acc"], ascending=[False, True],
                                      na_position="last")
    return done.drop_duplicates(["run_id", "attack"])


WORST_CASE = "worst case"  # ``rank_attack`` when the worst case over attacks ranks


def _ranking_attack(per_run: pd.DataFrame, worst: WorstCase, runs: pd.DataFrame
                    ) -> tuple[str | None, str]:
    """What ranks the table and the note that says so: the worst case over attacks where
    every evaluated run has per-point results, else AutoAttack, else the strongest attack."""
    if per_run.empty:
        return None, "No robustness results for this selection; ranked by clean accuracy."
    if worst:
        sizes = sorted({b.size for b in worst.bits.values()})
        points = (f"the first {sizes[0]} points" if len(sizes) == 1 else
                  f"the first {sizes[0]} to {sizes[-1]} points (per run)")
        seeds = sorted({int(s) for s in runs.loc[runs["run_id"].isin(list(worst.bits)), "seed"]})
        left_out = sorted(set(per_run["attack"]) & set(ENSEMBLE_EXCLUDE))
        return WORST_CASE, (
            f"Ranked by the worst case over attacks ({', '.join(worst.attacks)}): a point counts "
            f"as robust only where every one of them failed, on {points} all of a run's "
            f"evaluations share; seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}." + (
                f" {', '.join(left_out)} stays out of the ensemble (an AutoAttack subset is "
                "usually small and would shrink the points it covers) and is its own column."
                if left_out else ""))
    fallback = f"The ranking has no per-point worst case: {worst.why}. "
    if (per_run["attack"] == STANDARD_ATTACK).any():
        return STANDARD_ATTACK, fallback + (f"Ranked by {STANDARD_ATTACK} robust accuracy, the "
                                            "standardized evaluation.")
    means = per_run.groupby("attack")["robust_acc"].mean().sort_values(kind="stable")
    strongest = str(means.index[0])
    ladder = " < ".join(f"{a} {m:.1%}" for a, m in means.items())
    return strongest, fallback + (
        f"Ranked by {strongest} robust accuracy: no {STANDARD_ATTACK} results for this "
        f"selection, so the strongest attack present ranks it (lowest mean robust accuracy: "
        f"{ladder}).")


def _coverage_note(board: pd.DataFrame) -> str:
    """Where the ranking column covers fewer seeds than a row finished (an attack run on
    seed 0 only), say so: its interval then holds no seed-to-seed spread."""
    metric = board["rank_by"].iloc[0] if len(board) else None
    if not isinstance(metric, str) or f"{metric}_seeds" not in board:
        return ""
    covered = board[f"{metric}_seeds"]
    short = board[covered.notna() & (covered < board["seeds"])]
    if short.empty:
        return ""
    return (f"The ranking column ({metric}) covers fewer seeds than finished on {len(short)} "
            f"of {int(covered.notna().sum())} ranked rows (e.g. {short['method'].iloc[0]}: "
            f"{int(short[f'{metric}_seeds'].iloc[0])} of {int(short['seeds'].iloc[0])} seeds); "
            "there its interval leaves out the other seeds' spread.")


def _crosscheck_note(check: pd.DataFrame) -> str:
    """AutoAttack against the ensemble, point by point, summed over the rows."""
    if check.empty:
        return ""
    n, aa_only, ens_only = (int(check[c].sum()) for c in
                            ("crosscheck_n", "aa_only_breaks", "ensemble_only_breaks"))
    text = (f"Cross-check on the {n} points {STANDARD_ATTACK} and the ensemble both evaluated: "
            f"{STANDARD_ATTACK} broke {aa_only} points the ensemble left robust (expected: it is "
            f"the stronger attack); the ensemble broke {ens_only} points {STANDARD_ATTACK} left "
            "robust")
    return text + (" (unexpected: see the ensemble-only column)." if ens_only else ".")


def _attack_columns(per_run: pd.DataFrame, rank_attack: str | None, index: pd.MultiIndex,
                    worst: WorstCase, runs: pd.DataFrame) -> pd.DataFrame:
    """``robust_worst`` (when there is a worst case) and ``robust_<attack>`` per group, each
    with its std and interval (the ranking attack first, then strongest); ``robust_acc`` and
    its partners repeat the column that ranks."""
    strength = per_run.groupby("attack")["robust_acc"].mean().sort_values(kind="stable")
    parts = []
    if worst:
        parts.append(interval_columns(WORST, bits_frame(worst.bits, runs, KEYS), KEYS, index))
    for attack in sorted(strength.index, key=lambda a: a != rank_attack):
        rows = per_run[per_run["attack"] == attack]
        acc = rows.groupby(KEYS)["robust_acc"]
        name = f"robust_{attack}"
        counted = rows.assign(bits=row_or_counted_bits(rows))
        ci = interval_columns(name, counted[counted["bits"].notna()], KEYS, index, mean=False)
        parts.append(pd.concat([acc.mean().rename(name).reindex(index).astype(float),
                                acc.std().rename(f"{name}_std").reindex(index).astype(float),
                                ci], axis=1))
    frame = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=index)
    ranked = WORST if rank_attack == WORST_CASE else f"robust_{rank_attack}"
    for i, suffix in enumerate(("", "_std", "_lo", "_hi", "_n", "_seeds")):
        count = suffix in ("_n", "_seeds")
        frame.insert(i, f"robust_acc{suffix}",
                     frame[ranked + suffix] if rank_attack else
                     pd.Series(pd.NA if count else np.nan, index=index,
                               dtype="Int64" if count else float))
    return frame


def _latency_columns(latency: pd.DataFrame, runs: pd.DataFrame, hardware: str | None,
                     index: pd.MultiIndex) -> pd.DataFrame:
    """``latency_ms_<hardware>`` (mean p50 over seeds) and ``latency_skipped_<hardware>``.

    Single-stream latency is the smallest batch size measured (batch 1 under the protocol);
    larger batches measure throughput, not the latency a user waits for. A skip reason is
    kept only for groups where no seed was measured on that profile.
    """
    lat = latency.merge(runs.loc[~runs["_failed"], ["run_id", *KEYS]], on="run_id")
    if hardware is not None:
        lat = lat[lat["hardware"] == hardware]
    measured = lat[lat["latency_ms_p50"].notna()].sort_values("batch_size", kind="stable")
    measured = measured.drop_duplicates(["run_id", "hardware"])
    skipped = lat[lat["latency_ms_p50"].isna() & lat["skipped_reason"].notna()]
    columns: dict[str, pd.Series] = {}
    for hw in sorted(lat["hardware"].unique()):
        p50 = measured[measured["hardware"] == hw].groupby(KEYS)["latency_ms_p50"].mean()
        reasons = skipped[skipped["hardware"] == hw].groupby(KEYS)["skipped_reason"].first()
        columns[f"latency_ms_{hw}"] = p50.astype(float)
        if not reasons.empty:
            columns[f"latency_skipped_{hw}"] = reasons.drop(p50.index, errors="ignore")
    return pd.DataFrame(columns, index=index)


def provenance(runs: pd.DataFrame, submissions: pd.DataFrame) -> pd.DataFrame:
    """Per group: ``source`` (the submission's name and authors, or "built-in"),
    ``submission_id``, ``code_version`` (PERBench commit(s) and the submitted code's sha)
    and ``config`` (the resolved options), each the distinct values over its runs."""
    import json

    subs = submissions.drop_duplicates("submission_id").set_index("submission_id")

    def commit(versions) -> str:
        try:
            sha = json.loads(versions).get("perbench_git") if isinstance(versions, str) else None
        except ValueError:
            sha = None
        return "?" if not sha else sha[:10] + ("+dirty" if sha.endswith("+dirty") else "")

    def joined(values) -> str:
        return "; ".join(sorted({v for v in values if isinstance(v, str) and v}))

    rows = {}
    for key, group in runs.groupby(KEYS):
        sids = sorted({s for s in group["submission_id"] if isinstance(s, str)})
        sources, codes = [], [f"perbench {joined(group['versions'].map(commit))}"]
        for sid in sids:
            if sid in subs.index:
                sub = subs.loc[sid]
                by = f" by {sub['authors']}" if isinstance(sub["authors"], str) else ""
                sources.append(f"submission {sid}{by}")
                codes.append(f"code {str(sub['code_sha'])[:12]}")
            else:
                sources.append(f"submission {sid} (no submissions row)")
        rows[key] = {"source": "; ".join(sources) or "built-in",
                     "submission_id": ",".join(sids) or None,
                     "code_version": "; ".join(codes), "config": joined(group["method_config"])}
    if not rows:
        return pd.DataFrame(columns=["source", "submission_id", "code_version", "config"])
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=KEYS)
    return frame


def _errors(runs: pd.DataFrame, rob: pd.DataFrame) -> pd.Series:
    """'seed 1: <first line>' for failed training runs and failed evaluations, per group."""
    def first_line(text) -> str:
        return str(text).strip().splitlines()[0] if isinstance(text, str) and text.strip() else "?"

    failed_runs = runs[runs["_failed"]]
    lines = [(tuple(r[k] for k in KEYS), f"seed {r['seed']}: {first_line(r['error'])}")
             for _, r in failed_runs.iterrows()]
    failed_evals = rob[rob["status"] == "failed"]
    lines += [(tuple(r[k] for k in KEYS), f"{r['attack']} seed {r['seed']}: {first_line(r['error'])}")
              for _, r in failed_evals.iterrows()]
    if not lines:
        return pd.Series(dtype=object)
    keys, texts = zip(*lines)
    series = pd.Series(texts, index=pd.MultiIndex.from_tuples(keys, names=KEYS), dtype=object)
    return series.groupby(level=KEYS).agg("; ".join)


def _rank(board: pd.DataFrame, rank_attack: str | None, worst: WorstCase) -> pd.DataFrame:
    """Sort within each (dataset, arch) by the ranking score; rows without one are unranked.
    Each ranked row also gets the rank range and tie group its score's interval allows."""
    score = "robust_acc" if rank_attack is not None else "clean_acc"
    board["rank_attack"] = rank_attack
    board["rank_by"] = (WORST if rank_attack == WORST_CASE else
                        f"robust_{rank_attack}" if rank_attack is not None else "clean_acc")
    board["ensemble"] = ",".join(worst.attacks) if worst else None
    board = board.sort_values(["dataset", "arch", score, "clean_acc", "method"],
                              ascending=[True, True, False, False, True], na_position="last")
    ranked = board[score].notna()
    board["rank"] = ranked.groupby([board["dataset"], board["arch"]]).cumsum().astype("Int64")
    board.loc[~ranked, "rank"] = pd.NA
    board = board.join(rank_columns(board, score, ["dataset", "arch"]))
    rest = [c for c in board.columns if c not in BASE_COLUMNS]
    tail = ["error", "run_ids", "source", "submission_id", "code_version", "config"]
    ordered = [c for c in BASE_COLUMNS if c not in tail]
    return board[[*ordered, *rest, *tail]].reset_index(drop=True)


def failures(frame: pd.DataFrame) -> list[str]:
    """One line per group with failed runs or evaluations, with their errors."""
    return [f"{m} ({d}, {a}) {err}"
            for m, d, a, err in zip(frame["method"], frame["dataset"], frame["arch"],
                                    frame["error"]) if isinstance(err, str)]


def skipped_profiles(frame: pd.DataFrame) -> list[str]:
    """Why a hardware profile has no latency: recorded as skipped, never silently dropped."""
    return [f"{col.removeprefix('latency_skipped_')} latency skipped: {reason}"
            for col in frame.columns if col.startswith("latency_skipped_")
            for reason in frame[col].dropna().unique()]


def varying_counts(frame: pd.DataFrame) -> list[str]:
    """Rows whose exact counts (FLOPs, parameters) differ across seeds, with those counts:
    ``"caper (small_cnn): train_flops"``; their tables show the mean."""
    if "deterministic" not in frame:
        return []
    lines = []
    for row in frame.itertuples():
        equal = row.deterministic.split(",") if isinstance(row.deterministic, str) else None
        if equal is None:
            continue
        differ = [m for m in DETERMINISTIC_MEASURES if m in frame and not pd.isna(getattr(row, m))
                  and m not in equal]
        if differ:
            lines.append(f"{row.method} ({row.arch}): {', '.join(differ)}")
    return lines


def ranks(results, label: str, board: Path | None = None) -> list[str]:
    """Where ``label`` stands on each (dataset, arch) it ran on, one line each."""
    tables = load_tables(results)
    runs = tables["runs"]
    mine = runs[runs["method"] == label]
    lines = []
    for (dataset, arch), _ in mine.groupby(["dataset", "arch"]):
        frame, _note = leaderboard_frame(tables, dataset=dataset, arch=arch,
                                         mce_reference=mce_reference(results, board))
        row = frame[frame["method"] == label]
        ranked = frame["rank"].notna().sum()
        attack = frame["rank_attack"].iloc[0]
        by = f"{attack} robust" if attack else "clean"
        if row.empty or row["rank"].isna().all():
            lines.append(f"{label} on {dataset}/{arch}: not ranked (no finished run)")
            continue
        r = row.iloc[0]
        score = r["robust_acc"] if attack else r["clean_acc"]
        span = ("" if pd.isna(r["rank_lo"]) or r["rank_lo"] == r["rank_hi"] else
                f"; its interval allows ranks {int(r['rank_lo'])}–{int(r['rank_hi'])}")
        lines.append(f"{label} ranks #{int(r['rank'])} of {ranked} on {dataset}/{arch} by "
                     f"{by} accuracy ({100 * score:.1f}%; clean {100 * r['clean_acc']:.1f}%"
                     f"{span})")
    return lines

