"""Grid specs: ``leaderboards/<name>/grid.yaml`` parsed and validated before any work.

Every error a user can cause names the file, the key and what is allowed; the CLI turns
:class:`SpecError` into exit code 2.
"""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class GridSpec(_Strict):
    name: str
    description: str = ""
    datasets: list[str] = Field(min_length=1)
    archs: list[str] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    attacks: list[AttackSpec] = Field(default_factory=list)
    hardware: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    budget: BudgetSpec
    train_threat: ThreatSpec = ThreatSpec()
    threads: int = Field(2, ge=1, description="torch threads per cell (recorded; changes results)")
    augment: Literal["none", "crop", "crop_flip"] | None = Field(
        None, description="training augmentation; None = the dataset's default")
    data_root: str | None = None

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


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_spec(path: str | Path) -> GridSpec:
    """Read and validate a grid file (or a leaderboard folder holding ``grid.yaml``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "grid.yaml"
    if not path.exists():
        raise SpecError(f"{path}: no such grid file (expected leaderboards/<name>/grid.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: top level must be a mapping of keys "
                        f"({', '.join(GridSpec.model_fields)})")
    raw.setdefault("name", path.parent.name)
    try:
        spec = GridSpec(**raw)
    except ValidationError as exc:
        raise SpecError(_validation_message(path, exc)) from None
    validate_names(spec, path)
    return spec


def _validation_message(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid grid spec"]
    for err in exc.errors():
        loc = _fmt_loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = err["loc"][:-1]
            model = _model_at(parent)
            allowed = ", ".join(model.model_fields) if model else "?"
            msg = f"unknown key; allowed keys: {allowed}"
        elif err["type"] == "missing":
            msg = "missing required key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = GridSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def validate_names(spec: GridSpec, path: Path) -> None:
    """Every name in the grid resolves in its registry; compositions are valid."""
    from bench.archs import ARCHS
    from bench.attacks import ATTACKS
    from bench.datasets import DATASETS
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
    for i, a in enumerate(spec.attacks):
        if a.name not in ATTACKS:
            problems.append(f"  attacks[{i}].name: unknown attack {a.name!r}; "
                            f"allowed: {', '.join(ATTACKS.allowed())}")
            continue
        try:
            ATTACKS.create(a.name, norm=a.norm, eps=a.eps, steps=a.steps, restarts=a.restarts,
                           **a.config)
        except (ValueError, TypeError) as exc:
            problems.append(f"  attacks[{i}] ({a.name}): {exc}")
    if problems:
        raise SpecError("\n".join([f"{path}: invalid grid spec", *problems]))


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
