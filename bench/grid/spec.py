"""Grid specs: ``leaderboards/<name>/grid.yaml`` parsed and validated before any work.

Every error a user can cause names the file, the key and what is allowed; the CLI turns
:class:`SpecError` into exit code 2.
"""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# results_location lives with the light board reader; engine callers still import it here
from bench.results.board import (  # noqa: F401
    BoardError,
    read_yaml_mapping,
    results_location,
    validation_message,
)

NORMS = ("Linf", "L2")


class SpecError(ValueError):
    """A grid file that cannot run; the message says where and what is allowed."""


def parse_eps(value: Any) -> float:
    """Accept 0.031, "0.031" or "8/255" (pixel units in [0, 1])."""
    if isinstance(value, bool):
        raise ValueError("eps must be a number or a fraction like 8/255")
    if isinstance(value, (int, float)):
        eps = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9.]+\s*(/\s*[0-9.]+\s*)?", value):
        num, _, den = value.partition("/")
        eps = float(Fraction(num.strip())) / (float(Fraction(den.strip())) if den else 1.0)
    else:
        raise ValueError(f"eps must be a number or a fraction like 8/255, got {value!r}")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1] (pixel units), got {eps:g}")
    return eps


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MethodSpec(_Strict):
    name: str = Field(description="a method or a composition base+modifier+...")
    label: str | None = Field(None, description="display name; defaults to name")
    config: dict[str, Any] = Field(default_factory=dict)
    archs: list[str] | None = Field(None, description="train only on these of the grid's archs "
                                    "(a method made for residual nets); None = every arch")

    @property
    def display(self) -> str:
        return self.label or self.name


class AttackSpec(_Strict):
    name: str
    norm: Literal["Linf", "L2"] = "Linf"
    eps: float
    steps: int | None = Field(None, ge=0)
    restarts: int = Field(1, ge=1)
    n_eval: int | None = Field(None, ge=1, description="points evaluated; default budget.n_eval")
    seeds: list[int] | None = Field(None, description="evaluate only runs of these seeds "
                                    "(costly attacks on one seed); None = every seed")
    config: dict[str, Any] = Field(default_factory=dict)

    _eps = field_validator("eps", mode="before")(lambda cls, v: parse_eps(v))


class SweepSpec(_Strict):
    """Robust accuracy over a range of ε (thesis Algorithm 2): a list of ε, or doubling
    from ``doubling_from`` until robust accuracy falls below chance (1/classes) or ε would
    pass ``max_eps`` (after at least three radii). Each ε is an independent evaluation of
    every clean-correct point (bench/work/kinds/sweep.py says why)."""

    name: str
    norm: Literal["Linf", "L2"] = "Linf"
    eps: list[float] | None = Field(None, description="the ε values, ascending")
    doubling_from: float | None = Field(None, gt=0, description="first ε of a doubling sweep")
    max_eps: float = Field(1.0, gt=0, description="a doubling sweep stops before passing it")
    steps: int | None = Field(None, ge=0)
    restarts: int = Field(1, ge=1)
    n_eval: int | None = Field(None, ge=1, description="points evaluated; default budget.n_eval")
    seeds: list[int] | None = Field(None, description="sweep only runs of these seeds")
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("eps", mode="before")
    @classmethod
    def _eps_list(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list) or not v:
            raise ValueError("eps must be a non-empty list of ε values like [0.05, 8/255]")
        values = [parse_eps(e) for e in v]
        if values != sorted(set(values)):
            raise ValueError(f"eps values must be distinct and ascending, got {values}")
        return values

    _max = field_validator("doubling_from", "max_eps", mode="before")(
        lambda cls, v: v if v is None else parse_eps(v))

    @model_validator(mode="after")
    def _one_schedule(self) -> "SweepSpec":
        if (self.eps is None) == (self.doubling_from is None):
            raise ValueError("give exactly one of eps (a list) or doubling_from (a start ε)")
        return self

    def schedule(self) -> list[float]:
        """Every ε the sweep may visit, in order (a doubling sweep may stop earlier)."""
        if self.eps is not None:
            return list(self.eps)
        out, eps = [], self.doubling_from
        while eps <= self.max_eps + 1e-12:
            out.append(eps)
            eps *= 2
        return out

    @property
    def label(self) -> str:
        steps = "" if self.steps is None else f"-{self.steps}"
        how = "doubling" if self.eps is None else "list"
        return f"{self.name}{steps} {self.norm} {how}"


class CorruptionSpec(_Strict):
    """Accuracy under common corruptions (CIFAR-10-C protocol, Hendrycks & Dietterich 2019)."""

    names: list[str] | Literal["all"] = Field("all", description="corruptions, or all 15")
    severities: list[int] = Field([1, 2, 3, 4, 5], min_length=1)
    n_eval: int | None = Field(None, ge=1, description="points per corruption and severity")
    reference: str = Field("erm", description="method (label) whose errors normalise mCE")
    files: str | None = Field(None, description="folder of official CIFAR-10-C / CIFAR-100-C "
                              ".npy files; None = generate the corruptions (seeded)")
    seeds: list[int] | None = Field(None, description="evaluate only runs of these seeds")

    @field_validator("severities")
    @classmethod
    def _severities(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if s not in range(1, 6)]
        if bad:
            raise ValueError(f"severities must lie in 1..5, got {bad}")
        return sorted(set(v))


class TransferSpec(_Strict):
    """Transfer attacks (thesis Algorithm 3): examples crafted on each source run, scored on
    every target run of the same dataset."""

    attack: AttackSpec
    n_eval: int | None = Field(None, ge=1, description="points crafted; default budget.n_eval")
    seeds: list[int] | None = Field([0], description="runs of these seeds are sources and "
                                    "targets (every pair costs a forward pass); None = all")


class LargeEpsSpec(_Strict):
    """The attack of the ``large_eps_zero`` check (bench/work/checks.py), run on the checks'
    points at a radius where every point must fall. Under L∞ the grey image lies within
    0.5 of every input, hence the default; under L2 that radius is 0.5·sqrt(pixels), which
    depends on the dataset, so an L2 grid's check is skipped unless ``eps`` is given."""

    name: str = "pgd"
    norm: Literal["Linf", "L2"] | None = Field(None, description="default: train_threat's")
    eps: float | None = Field(None, description="default: 0.5 under Linf; none under L2")
    steps: int | None = Field(20, ge=1)
    restarts: int = Field(1, ge=1)
    config: dict[str, Any] = Field(default_factory=dict)

    _eps = field_validator("eps", mode="before")(lambda cls, v: v if v is None else parse_eps(v))

    def radius(self, threat_norm: str) -> tuple[str, float | None]:
        """(norm, ε) on a grid whose train_threat has ``threat_norm``; ε None: no default."""
        norm = self.norm or threat_norm
        return norm, self.eps if self.eps is not None else (0.5 if norm == "Linf" else None)


class ChecksSpec(_Strict):
    """Reliability checks run after each run's evaluations (AutoAttack's checks habit)."""

    enabled: bool = True
    n_eval: int = Field(200, ge=1, description="points for the model-level checks")
    large_eps: LargeEpsSpec | None = Field(
        LargeEpsSpec(), description="the large_eps_zero check's attack; null: no such check")


class ThreatSpec(_Strict):
    norm: Literal["Linf", "L2"] = "Linf"
    eps: float = 8 / 255

    _eps = field_validator("eps", mode="before")(lambda cls, v: parse_eps(v))


class BudgetSpec(_Strict):
    epochs: int = Field(ge=1)
    batch_size: int = Field(128, ge=1)
    n_eval: int = Field(500, ge=1, description="test points per attack (nested subsets)")
    val_size: float = Field(0.1, gt=0, description="validation split: fraction (<1) or count")
    train_size: int | None = Field(
        None, ge=1, description="train on a seeded class-stratified subset of this many "
        "training points (after the validation split); None = all")


class TrainingSpec(_Strict):
    """How training cells run their passes (the method is unchanged; speed and the last
    bits of results are not). Set values enter each training cell's key."""

    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: forward passes and attacks under bfloat16 autocast")
    channels_last: bool = Field(False, description="NHWC weights and batches (conv nets)")
    compile: bool = Field(False, description="torch.compile the model each step calls")


class GridSpec(_Strict):
    name: str
    description: str = ""
    datasets: list[str] = Field(min_length=1)
    archs: list[str] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    attacks: list[AttackSpec] = Field(default_factory=list)
    eps_sweeps: list[SweepSpec] = Field(default_factory=list)
    corruptions: CorruptionSpec | None = None
    transfer: TransferSpec | None = None
    checks: ChecksSpec = ChecksSpec()
    hardware: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    budget: BudgetSpec
    train_threat: ThreatSpec = ThreatSpec()
    training: TrainingSpec = TrainingSpec()
    threads: int = Field(2, ge=1, description="torch threads per cell (recorded; changes results)")
    augment: Literal["none", "crop", "crop_flip"] | None = Field(
        None, description="training augmentation; None = the dataset's default")
    data_root: str | None = None
    results: str | None = Field(
        None, description="where the result tables go: a folder (relative to the leaderboard) "
                          "or an fsspec URI such as s3://bucket/board; default <leaderboard>/results")

    @field_validator("results")
    @classmethod
    def _known_filesystem(cls, v: str | None) -> str | None:
        if v is None or "://" not in v:
            return v
        import fsspec

        protocol = v.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            raise ValueError(f"{v!r}: fsspec cannot open {protocol}:// here ({exc})") from None
        return v.rstrip("/")

    @field_validator("methods", mode="before")
    @classmethod
    def _method_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @model_validator(mode="after")
    def _unique(self) -> "GridSpec":
        labels = [m.display for m in self.methods]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"methods: duplicate entries {sorted(dup)}; give each a distinct label")
        return self


def read_board_yaml(path: str | Path, filename: str, model: type[BaseModel],
                    what: str) -> tuple[Path, dict]:
    """A leaderboard's YAML file as a mapping (bench.results.board reads it); a missing
    file, bad YAML or a non-mapping is a SpecError saying so."""
    try:
        return read_yaml_mapping(path, filename, model, what)
    except BoardError as exc:
        raise SpecError(str(exc)) from None


def load_spec(path: str | Path) -> GridSpec:
    """Read and validate a grid file (or a leaderboard folder holding ``grid.yaml``)."""
    path, raw = read_board_yaml(path, "grid.yaml", GridSpec, "grid file")
    raw.setdefault("name", path.parent.name)
    try:
        spec = GridSpec(**raw)
    except ValidationError as exc:
        raise SpecError(_validation_message(path, exc)) from None
    validate_names(spec, path)
    return spec


def _validation_message(path: Path, exc: ValidationError, root: type[BaseModel] | None = None,
                        what: str = "grid spec") -> str:
    return validation_message(path, exc, root or GridSpec, what)


def validate_names(spec: GridSpec, path: Path) -> None:
    """Every name in the grid resolves in its registry; compositions are valid."""
    from bench.archs import ARCHS
    from bench.attacks import ATTACKS
    from bench.data.datasets import DATASETS
    from bench.hardware import HARDWARE
    from bench.plugins import CompositionError, compose

    problems = []

    def check(registry, key: str, names: list[str]) -> None:
        for i, n in enumerate(names):
            if n not in registry:
                problems.append(f"  {key}[{i}]: unknown {registry.kind} {n!r}; "
                                f"allowed: {', '.join(registry.allowed())}")

    check(DATASETS, "datasets", spec.datasets)
    check(ARCHS, "archs", spec.archs)
    check(HARDWARE, "hardware", spec.hardware)
    meta_models: dict = {}  # arch -> model on the meta device, built once per validation
    for i, m in enumerate(spec.methods):
        try:
            comp = compose(m.name, m.config)
        except CompositionError as exc:
            problems.append(f"  methods[{i}] ({m.name}): {exc}")
            continue
        for j, arch in enumerate(m.archs or []):
            if arch not in spec.archs:
                problems.append(f"  methods[{i}].archs[{j}]: {arch!r} is not one of the grid's "
                                f"archs; allowed: {', '.join(spec.archs)}")
        for arch in [a for a in (m.archs or spec.archs) if a in spec.archs]:
            problem = _model_problem(comp, arch, meta_models)
            if problem is not None:
                problems.append(f"  methods[{i}] ({m.name}) on arch {arch!r}: {problem}")
        for problem in _budget_problems(comp, spec.budget):
            problems.append(f"  methods[{i}] ({m.display}): {problem}")

    def check_attack(key: str, a: AttackSpec | SweepSpec | LargeEpsSpec, eps: float) -> None:
        if a.name not in ATTACKS:
            problems.append(f"  {key}.name: unknown attack {a.name!r}; "
                            f"allowed: {', '.join(ATTACKS.allowed())}")
            return
        try:
            ATTACKS.create(a.name, norm=a.norm, eps=eps, steps=a.steps, restarts=a.restarts,
                           **a.config)
        except (ValueError, TypeError) as exc:
            problems.append(f"  {key} ({a.name}): {exc}")

    for i, a in enumerate(spec.attacks):
        check_attack(f"attacks[{i}]", a, a.eps)
    for i, sw in enumerate(spec.eps_sweeps):
        check_attack(f"eps_sweeps[{i}]", sw, sw.schedule()[0])
    labels = [m.display for m in spec.methods]
    if spec.corruptions is not None:
        from bench.corruptions import CORRUPTION_NAMES

        names = [] if spec.corruptions.names == "all" else spec.corruptions.names
        for j, n in enumerate(names):
            if n not in CORRUPTION_NAMES:
                problems.append(f"  corruptions.names[{j}]: unknown corruption {n!r}; "
                                f"allowed: all, {', '.join(CORRUPTION_NAMES)}")
        if spec.corruptions.reference not in labels:
            problems.append(f"  corruptions.reference: {spec.corruptions.reference!r} is not a "
                            f"method of this grid; allowed: {', '.join(labels)}")
    if spec.transfer is not None:
        check_attack("transfer.attack", spec.transfer.attack, spec.transfer.attack.eps)
    if spec.checks.large_eps is not None:
        large = spec.checks.large_eps
        norm, eps = large.radius(spec.train_threat.norm)
        check_attack("checks.large_eps", large.model_copy(update={"norm": norm}),
                     0.5 if eps is None else eps)
    if problems:
        raise SpecError("\n".join([f"{path}: invalid grid spec", *problems]))


def _budget_problems(comp, budget: BudgetSpec) -> list[str]:
    """Why a modifier's mechanism could not act before training ends (AccelAT's window,
    CAPER's τ, ADMM's schedule), from each modifier's ``check_budget``."""
    from bench.api import Budget

    granted = Budget(budget.epochs, budget.batch_size)
    try:
        comp.epochs(granted)
    except Exception:  # noqa: BLE001  (a submitted base whose epochs() reads the data:
        return []      # its training cells will say what goes wrong)
    return comp.budget_problems(granted)


def _model_problem(comp, arch: str, cache: dict) -> str | None:
    """A modifier's objection to ``arch`` (EWS needs residual blocks). The arch is built on
    the meta device (no memory, milliseconds), and only for modifiers that check models."""
    import torch

    from bench.api import Modifier
    from bench.archs import ARCHS

    checkers = [mod for mod in comp.modifiers
                if type(mod).check_model.__func__ is not Modifier.check_model.__func__]
    if not checkers or arch not in ARCHS:  # an unknown arch is reported under archs[i]
        return None
    if arch not in cache:
        try:
            with torch.device("meta"):
                cache[arch] = ARCHS.create(arch, num_classes=10, in_channels=3, image_size=32,
                                           mean=[0.5] * 3, std=[0.5] * 3)
        except Exception:  # noqa: BLE001  (not buildable on meta: the runner checks the model)
            cache[arch] = None
    if cache[arch] is None:
        return None
    for mod in checkers:
        problem = mod.check_model(cache[arch])
        if problem is not None:
            return problem
    return None
