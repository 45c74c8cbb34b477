"""What a training method is and what it receives: the classes :mod:`bench.api` publishes.

A method is a **base** (owns the per-batch objective) or a **modifier** (hooks into the
shared training loop). Both are classes with a pydantic ``Config``; the harness builds
them from the grid, hands them a :class:`TrainContext`, runs the loop in
:mod:`bench.work.loop`, and owns the test split, the evaluation and the cost accounting.

A method must not read the test split (it never receives it), change the model's
architecture, or declare its own cost: every forward and backward pass it runs through
the context's model is counted by the FLOP meter.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn


class MethodConfig(BaseModel):
    """Base for every method's options; unknown keys are errors (typos must not pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Budget:
    """What the grid grants a training cell."""

    epochs: int
    batch_size: int


@dataclass(frozen=True)
class Execution:
    """How the loop runs a method's passes: faster on the right hardware, same method.
    These change results in the last bits (bf16 a little more), so a grid records them."""

    precision: str = "fp32"  # "bf16": the step's passes, attacks included, under autocast
    channels_last: bool = False  # NHWC weights and batches for conv nets
    compile: bool = False  # torch.compile the model the step calls (ctx.model)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', not {self.precision!r}")


@dataclass
class ThreatModel:
    """The grid's training threat model; adversarial bases use it unless their config overrides."""

    norm: str = "Linf"
    eps: float = 8 / 255


@dataclass
class Batch:
    """One minibatch as it flows through a step. Bases put what they craft here (``x_adv``)
    so modifiers reuse it instead of attacking again."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the training split, for per-sample bookkeeping
    replay: int = 0
    x_adv: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainContext:
    """Everything a method receives. There is deliberately no test split here."""

    model: nn.Module
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    budget: Budget
    threat: ThreatModel
    device: torch.device
    seed: int
    generator: torch.Generator
    attack: Callable[..., torch.Tensor]  # bench.attacks.train.perturb, bound to nothing
    # log(**fields): extra fields for this epoch's history row; None = the default below
    log: Callable[..., None] | None = None
    optimizer: torch.optim.Optimizer | None = None
    train_mask: torch.Tensor | None = None  # bool over the training split; None = all samples
    epoch: int = 0
    epochs: int = 0  # passes over the data this run makes (the base may scale the budget)
    step: int = 0
    steps_per_epoch: int = 0
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(
        default=lambda logits, y: F.cross_entropy(logits, y, reduction="none")
    )  # per-example loss; a modifier may replace it (label smoothing, loss mixes)
    state: dict[str, Any] = field(default_factory=dict)
    # Index of each training-split row in the dataset's original training set: what a
    # method reports when it names samples (CAPER's removed samples).
    train_ids: torch.Tensor | None = None
    tables: dict[str, list[dict]] = field(default_factory=dict)
    run_fields: dict[str, Any] = field(default_factory=dict)
    # Set by the loop from the base, for modifiers that must adapt to it (AccelAT monitors
    # adversarial validation accuracy under AT and starts from the base's peak LR).
    base_adversarial: bool = False
    peak_lr: float | None = None
    # ``step_loss(batch)`` runs the base's objective on a batch: an LR finder's probe steps.
    # When ``batch.x_adv`` is already set, the base does not attack again: its
    # ``ctx.attack`` returns that ``x_adv`` (AWP's weight ascent on the step's own examples).
    step_loss: Callable[[Batch], torch.Tensor] | None = None
    execution: Execution = field(default_factory=Execution)

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = lambda **fields: self.state.setdefault("log", {}).update(fields)

    def emit(self, table: str, rows: list[dict]) -> None:
        """Add rows to a method table (``removed_samples``, ``layer_sparsity``,
        ``mechanism``); the harness fills in ``run_id`` and writes them with the run."""
        # Here, not at the top: the schema imports pyarrow, which a method never needs.
        from bench.results.schema import METHOD_TABLES

        if table not in METHOD_TABLES:
            raise ValueError(f"methods may write tables {METHOD_TABLES}, not {table!r}")
        self.tables.setdefault(table, []).extend(rows)

    def record_mechanism(self, modifier: str, event: str, value: float | None = None, *,
                         epoch: int | None = None, **detail: Any) -> None:
        """Record one thing a modifier's mechanism did (a ``mechanism`` table row): CAPER's
        removal, an AccelAT LR change, EWS's subnet choices, ADMM's hard prune. ``value`` is
        the event's one number, ``epoch`` defaults to the current one, and ``detail`` goes
        in as JSON (numbers, strings, lists, dicts). Views read these rows to say whether
        the mechanism acted before training ended."""
        import json  # here, as emit's import: most methods never record an event

        self.emit("mechanism", [{
            "modifier": modifier, "event": event,
            "epoch": self.epoch if epoch is None else int(epoch),
            "value": None if value is None else float(value),
            "detail": json.dumps(detail, sort_keys=True, default=float),
        }])

    def charged(self):
        """A no-op kept for methods written when epoch-end hooks ran unmetered: the loop now
        charges everything a method runs (its set-up and epoch-end hooks included)."""
        return nullcontext()

    def active_indices(self) -> torch.Tensor:
        n = self.train_x.shape[0]
        if self.train_mask is None:
            return torch.arange(n, device=self.train_x.device)
        return self.train_mask.nonzero().flatten()


def planning_context(budget: Budget) -> TrainContext:
    """A context holding ``budget`` and nothing to train on: what a base's ``epochs`` reads
    when a grid is validated, before any data or model exists."""
    empty = torch.empty(0)
    return TrainContext(
        model=nn.Module(), train_x=empty, train_y=empty.long(), val_x=empty,
        val_y=empty.long(), num_classes=0, budget=budget, threat=ThreatModel(),
        device=torch.device("cpu"), seed=0, generator=torch.Generator(), attack=_no_attack)


def _no_attack(*args: Any, **kwargs: Any) -> torch.Tensor:
    raise RuntimeError("a planning context has no attack: nothing trains in it")


class Resumable:
    """What a method keeps between epochs, for resuming an interrupted training cell.

    After each epoch the loop snapshots the model, optimizer, random streams, meter and
    ``ctx`` together with each method's ``state_dict()``; a cell killed mid-run continues
    from its last finished epoch and ends with the weights, FLOPs and history of a run
    never stopped (tests/test_resume.py checks every built-in, bit for bit on the CPU).
    """

    def state_dict(self) -> dict | None:
        """What this method carries across epochs besides the model, the optimizer, ``ctx``
        and the run's generator, as tensors, numbers, strings, lists and dicts (a private
        ``torch.Generator``: its ``get_state()``; a module or optimizer: its
        ``state_dict()``). ``{}`` when it keeps nothing. None, the default, says the
        loop cannot know: it writes no snapshots for the composition, and an interrupted
        cell restarts from epoch 0 (slower, never wrong)."""
        return None

    def load_state_dict(self, state: dict) -> None:
        """Take back what ``state_dict`` returned, tensors on the CPU. On a resumed run it
        is called after ``on_train_start`` (so what that builds exists) and after the
        model's weights are restored."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} returned state it cannot load")


class Base(Resumable):
    """Owns the per-batch objective. Subclasses set ``name``, ``Config`` and ``loss``."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    adversarial: ClassVar[bool] = False  # crafts adversarial examples during training
    citation: ClassVar[str] = ""

    def __init__(self, config: MethodConfig):
        self.config = config

    # -- optimisation: SGD 0.1, momentum 0.9, wd 5e-4, cosine (docs/methods.md)
    def optimizer(self, ctx: TrainContext) -> torch.optim.Optimizer:
        cfg = self.config
        return torch.optim.SGD(
            ctx.model.parameters(), lr=getattr(cfg, "lr", 0.1),
            momentum=getattr(cfg, "momentum", 0.9), weight_decay=getattr(cfg, "weight_decay", 5e-4),
        )

    def learning_rate(self, ctx: TrainContext, progress: float) -> float:
        """LR at ``progress`` in [0, 1) of the whole run; cosine by default."""
        lr = getattr(self.config, "lr", 0.1)
        return 0.5 * lr * (1 + math.cos(math.pi * progress))

    def momentum(self, ctx: TrainContext, progress: float) -> float | None:
        """SGD momentum at ``progress``; None keeps the optimizer's (one-cycle varies it)."""
        return None

    def epochs(self, ctx: TrainContext) -> int:
        """Passes over the data; Free-AT divides the budget by its replays."""
        return ctx.budget.epochs

    def replays(self, ctx: TrainContext) -> int:
        """Optimizer steps taken on each minibatch (Free-AT's m)."""
        return 1

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        """Scalar loss for one step; must set ``batch.logits`` to the logits it trained on."""
        raise NotImplementedError

    def after_backward(self, ctx: TrainContext, batch: Batch) -> None:
        """After ``loss.backward()``, before the optimizer step (Free-AT updates δ here)."""

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> Hashable | None:
        """What, besides the batch shape and the replay, this step's FLOPs depend on: a
        hashable (``()`` when nothing) lets the FLOP meter count one such step op by op
        and charge the rest the same, auditing now and then; None (the default) has every
        step counted op by op. Return a key only when the step's matrix products and
        convolutions cannot depend on the data (no early stopping on some inputs)."""
        return None


class Modifier(Resumable):
    """Hooks into the shared loop. Implement only the hooks you need."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    requires_adversarial: ClassVar[bool] = False  # only valid atop an adversarial base
    controls_lr: ClassVar[bool] = False  # at most one LR controller per composition
    replaces_criterion: ClassVar[bool] = False  # at most one criterion per composition
    citation: ClassVar[str] = ""

    def __init__(self, config: MethodConfig):
        self.config = config

    @classmethod
    def check_model(cls, model: nn.Module) -> str | None:
        """Why this modifier cannot train ``model`` (e.g. EWS needs residual blocks), or None.
        Called at spec validation on a meta-device build of each grid arch, and on the real
        model before training."""
        return None

    def check_budget(self, epochs: int) -> str | None:
        """Why this modifier's mechanism could not act before a run of ``epochs`` passes
        over the data ends (AccelAT's window, CAPER's τ), or None. ``epochs`` is what the
        base makes of the grid's budget (Free-AT: the budget's epochs / replays). Called at
        spec validation, so a grid that asks for a mechanism it cannot get fails before
        any work (exit code 2). Refuse only what cannot act: a rule that may legitimately
        not fire (a flat validation curve) is for the ``mechanism`` table to report."""
        return None

    def on_train_start(self, ctx: TrainContext) -> None: ...
    def on_epoch_start(self, ctx: TrainContext) -> None: ...
    def criterion(self, ctx: TrainContext) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        return None
    def after_attack(self, ctx: TrainContext, batch: Batch, x_adv: torch.Tensor) -> None:
        """Inside the base's loss, once per step: right after the base's first ``ctx.attack``
        returns ``x_adv`` and before the base trains on it (AWP perturbs the weights here).
        Never called for attacks run outside a step (AccelAT's validation), nor for bases
        that craft their examples without ``ctx.attack``."""
    def extra_loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor | None:
        return None
    def before_step(self, ctx: TrainContext, batch: Batch) -> None: ...
    def after_step(self, ctx: TrainContext, batch: Batch) -> None: ...
    def learning_rate(self, ctx: TrainContext, progress: float, base_lr: float) -> float | None:
        return None
    def on_epoch_end(self, ctx: TrainContext, metrics: dict[str, float]) -> None: ...
    def on_train_end(self, ctx: TrainContext) -> None: ...

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> Hashable | None:
        """As ``Base.step_cost_key``, for the work this modifier adds to a step."""
        return None
