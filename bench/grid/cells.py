"""The cells of a grid, and the stable keys that name them (docs/conventions.md#cell-keys).

A training key hashes everything that determines the trained model; an evaluation key
is the training key plus the evaluation's own spec. Adding an attack to a grid adds
evaluation cells only; existing checkpoints are reused. Which cells a grid has is each
cell kind's business (:mod:`bench.work.kinds`, ``expand``); the keys live here, one per cell
class, because existing results are found by them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bench.grid.spec import AttackSpec, CorruptionSpec, GridSpec, MethodSpec, SweepSpec

# Bump only when a change makes old trained models incomparable with new ones.
TRAIN_PROTOCOL = 1
EVAL_PROTOCOL = 1
# Evaluation subsets are the first n points of this one permutation of the test split,
# so subsets of different sizes are nested (docs/conventions.md#evaluation-subsets).
EVAL_PERMUTATION_SEED = 0


def stable_hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrainCell:
    leaderboard: str
    method: MethodSpec
    dataset: str
    arch: str
    seed: int
    epochs: int
    batch_size: int
    val_size: float
    threads: int
    threat_norm: str
    threat_eps: float
    data_root: str | None
    train_size: int | None = None
    augment: str | None = None  # None = the dataset's default
    # grid key `training`; None = the default (fp32, NCHW, eager), which keeps older keys
    precision: str | None = None
    channels_last: bool | None = None
    compile: bool | None = None

    @property
    def execution(self):
        """The cell's bench.api.Execution."""
        from bench.api import Execution

        return Execution(precision=self.precision or "fp32",
                         channels_last=bool(self.channels_last), compile=bool(self.compile))

    def resolved_config(self) -> dict[str, Any]:
        from bench.plugins import compose

        return compose(self.method.name, self.method.config).resolved_config()

    @property
    def key(self) -> str:
        payload = {
            "protocol": TRAIN_PROTOCOL, "method": self.method.name,
            "config": self.resolved_config(), "dataset": self.dataset, "arch": self.arch,
            "seed": self.seed, "epochs": self.epochs, "batch_size": self.batch_size,
            "val_size": self.val_size, "threads": self.threads,
            "threat": [self.threat_norm, round(self.threat_eps, 12)],
        }
        # Options added later enter the key only when set, so older keys stay valid.
        for option in ("train_size", "augment", "precision", "channels_last", "compile"):
            if getattr(self, option) is not None:
                payload[option] = getattr(self, option)
        return stable_hash(payload)

    def describe(self) -> str:
        return f"{self.method.display} · {self.dataset} · {self.arch} · seed {self.seed}"


@dataclass(frozen=True)
class AttackCell:
    train: TrainCell
    attack: AttackSpec
    n_eval: int

    @property
    def key(self) -> str:
        return stable_hash({"protocol": EVAL_PROTOCOL, "train": self.train.key,
                            # n_eval is keyed separately; seeds only select runs
                            "attack": self.attack.model_dump(exclude={"n_eval", "seeds"}),
                            "n_eval": self.n_eval, "perm_seed": EVAL_PERMUTATION_SEED})

    def describe(self) -> str:
        a = self.attack
        return f"{a.name} {a.norm} ε={a.eps:.4g} on {self.train.describe()}"


@dataclass(frozen=True)
class LatencyCell:
    train: TrainCell
    hardware: str

    @property
    def key(self) -> str:
        return stable_hash({"protocol": EVAL_PROTOCOL, "train": self.train.key,
                            "hardware": self.hardware})

    def describe(self) -> str:
        return f"latency {self.hardware} on {self.train.describe()}"


@dataclass(frozen=True)
class SweepCell:
    """One ε sweep of one run: several ``robustness`` rows, one per ε visited."""

    train: TrainCell
    sweep: SweepSpec
    n_eval: int

    @property
    def key(self) -> str:
        return stable_hash({"protocol": EVAL_PROTOCOL, "train": self.train.key,
                            "sweep": self.sweep.model_dump(exclude={"n_eval", "seeds"}),
                            "n_eval": self.n_eval, "perm_seed": EVAL_PERMUTATION_SEED})

    def describe(self) -> str:
        return f"ε sweep {self.sweep.label} on {self.train.describe()}"


@dataclass(frozen=True)
class CorruptionCell:
    """Every (corruption, severity) of one run: ``corruption`` rows."""

    train: TrainCell
    spec: CorruptionSpec
    n_eval: int

    @property
    def key(self) -> str:
        return stable_hash({"protocol": EVAL_PROTOCOL, "train": self.train.key,
                            # the reference only normalises mCE when the table is read
                            "corruptions": self.spec.model_dump(exclude={"n_eval", "seeds",
                                                                         "reference"}),
                            "n_eval": self.n_eval, "perm_seed": EVAL_PERMUTATION_SEED})

    def describe(self) -> str:
        return f"corruptions on {self.train.describe()}"


@dataclass(frozen=True)
class TransferCell:
    """Examples crafted on ``source`` by ``attack``, scored on ``target``: one ``transfer`` row."""

    source: TrainCell
    target: TrainCell
    attack: AttackSpec
    n_eval: int

    @property
    def key(self) -> str:
        return stable_hash({"protocol": EVAL_PROTOCOL, "source": self.source.key,
                            "target": self.target.key,
                            "attack": self.attack.model_dump(exclude={"n_eval", "seeds"}),
                            "n_eval": self.n_eval, "perm_seed": EVAL_PERMUTATION_SEED})

    def describe(self) -> str:
        return (f"transfer {self.attack.name} ε={self.attack.eps:.4g} "
                f"{self.source.method.display} → {self.target.describe()}")


class Grid:
    """The cells of a grid, per cell kind (:mod:`bench.work.kinds`), in the kinds' order.

    ``grid["attack"]`` is one kind's cells; ``grid.attacks`` the same by the kind's label
    (its row in ``--plan``), so code and tests read a grid by the names they always used.
    A kind the grid has no cells of reads as empty.
    """

    def __init__(self, cells: dict[str, list], labels: dict[str, str] | None = None):
        self.cells = cells
        self.labels = dict(labels or {})  # label -> kind name

    def __getitem__(self, kind: str) -> list:
        return self.cells.get(kind, [])

    def __getattr__(self, label: str) -> list:
        labels = self.__dict__.get("labels", {})
        if label in labels:
            return self[labels[label]]
        raise AttributeError(f"a grid has no kind labelled {label!r}")

    def __iter__(self):
        return iter(self.cells.items())

    def keep(self, chosen) -> "Grid":
        """The grid of the cells for which ``chosen(kind name, cell)`` is true."""
        return Grid({kind: [c for c in cells if chosen(kind, c)] for kind, cells in self},
                    self.labels)

    def count(self) -> int:
        return sum(len(cells) for cells in self.cells.values())


def _training_options(spec: GridSpec) -> dict[str, Any]:
    """The grid's non-default `training` options (defaults stay None: unchanged keys)."""
    t = spec.training
    return {"precision": None if t.precision == "fp32" else t.precision,
            "channels_last": t.channels_last or None, "compile": t.compile or None}


def train_cells(spec: GridSpec) -> list[TrainCell]:
    """The training cells of ``spec``: every (dataset, arch, method, seed) it names."""
    return [
        TrainCell(leaderboard=spec.name, method=m, dataset=d, arch=a, seed=s,
                  epochs=spec.budget.epochs, batch_size=spec.budget.batch_size,
                  val_size=spec.budget.val_size, threads=spec.threads,
                  threat_norm=spec.train_threat.norm, threat_eps=spec.train_threat.eps,
                  data_root=spec.data_root, train_size=spec.budget.train_size,
                  augment=spec.augment, **_training_options(spec))
        for d in spec.datasets for a in spec.archs for m in spec.methods for s in spec.seeds
        if m.archs is None or a in m.archs
    ]
