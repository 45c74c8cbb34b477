"""What a leaderboard folder holds, read without the engine: where its tables live and the
few facts of its ``grid.yaml`` that the views and the app show (method labels in grid
order, archs, the mCE reference method, whether it has a transfer section).

``bench.grid.spec`` validates a grid before any work, which builds every method, attack
and arch registry; reading a leaderboard must not need any of that, so this module parses
the YAML with ``yaml.safe_load`` alone and is lenient where the views can fall back
(a missing or hand-broken grid still shows its results).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bench.results.store import Location, is_uri

GRID_FILE = "grid.yaml"
DEFAULT_MCE_REFERENCE = "erm"


class BoardError(ValueError):
    """A leaderboard file that cannot be read or names what the grid lacks; the message
    says where and what is allowed (the CLI turns it into exit code 2)."""


def read_yaml_mapping(path: str | Path, filename: str, model: type[BaseModel],
                      what: str) -> tuple[Path, dict]:
    """A leaderboard's YAML file (``path`` is the file or the folder holding ``filename``)
    as a mapping; a missing file, bad YAML or a non-mapping is a BoardError saying so."""
    path = Path(path)
    if path.is_dir():
        path = path / filename
    if not path.exists():
        raise BoardError(f"{path}: no such {what} (expected leaderboards/<name>/{filename})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BoardError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise BoardError(f"{path}: top level must be a mapping of keys "
                         f"({', '.join(model.model_fields)})")
    return path, raw


def validation_message(path: Path, exc: ValidationError, root: type[BaseModel],
                       what: str) -> str:
    """Each pydantic error as ``key.path: what is wrong`` (unknown keys list the allowed)."""
    lines = [f"{path}: invalid {what}"]
    for err in exc.errors():
        loc = _format_loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model = _model_at(err["loc"][:-1], root)
            allowed = ", ".join(model.model_fields) if model else "?"
            msg = f"unknown key; allowed keys: {allowed}"
        elif err["type"] == "missing":
            msg = "missing required key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model a key path leads to (list indices skipped), None past a leaf."""
    model = root
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


def grid_mapping(board: str | Path) -> dict[str, Any]:
    """``<board>/grid.yaml`` as a mapping; {} when it is missing, not YAML or not a mapping
    (the views still show results whose grid was never written here)."""
    try:
        raw = yaml.safe_load((Path(board) / GRID_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def results_location(board: str | Path, spec: Any = None) -> Path | str:
    """Where a leaderboard's tables live: ``grid.yaml``'s ``results`` (a folder relative to
    the leaderboard, or an fsspec URI), else ``<board>/results``. Works without a valid
    grid file (``show`` and the app read boards whose grid was never written here).
    ``spec``: a validated grid (anything with ``.results``), read instead of the file."""
    board = Path(board)
    value = spec.results if spec is not None else None
    if spec is None and (board / GRID_FILE).is_file():
        try:
            raw = yaml.safe_load((board / GRID_FILE).read_text())
        except yaml.YAMLError:
            raw = None
        value = raw.get("results") if isinstance(raw, dict) else None
    if not value:
        return board / "results"
    if "://" in str(value):
        return str(value).rstrip("/")
    return (board / str(value)).resolve()


def mce_reference(results_dir: Location, board: Path | None = None) -> str:
    """The grid's ``corruptions.reference`` (the grid in ``board``, else beside a local
    ``results/``), else ``erm``."""
    if board is None and is_uri(results_dir):
        return DEFAULT_MCE_REFERENCE
    grid = (Path(board) if board is not None else Path(results_dir).resolve().parent) / GRID_FILE
    try:
        ref = ((yaml.safe_load(grid.read_text()) or {}).get("corruptions") or {}).get("reference")
    except (OSError, AttributeError, yaml.YAMLError):
        ref = None
    return ref if isinstance(ref, str) else DEFAULT_MCE_REFERENCE


def method_label(entry: Any) -> str:
    """The display label of one ``methods:`` entry, as ``MethodSpec.display`` has it: a
    plain string is its own label; a mapping shows its ``label``, else its ``name``."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        label = entry.get("label")
        return label if label else entry["name"]
    raise BoardError(f"methods: {entry!r} is neither a method name nor a mapping with a name")


def method_labels(board: str | Path) -> list[str]:
    """The grid's method labels in grid order; a BoardError when the grid has no readable
    ``methods:`` list (callers fall back to the methods with results)."""
    methods = grid_mapping(board).get("methods")
    if not isinstance(methods, list) or not methods:
        raise BoardError(f"{Path(board) / GRID_FILE}: no methods list to read labels from")
    return [method_label(m) for m in methods]


def archs(board: str | Path) -> list[str]:
    """The grid's archs in grid order; a BoardError when there is no list of names."""
    value = grid_mapping(board).get("archs")
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise BoardError(f"{Path(board) / GRID_FILE}: no archs list to read")
    return list(value)


def has_transfer(board: str | Path) -> bool:
    """Whether the grid asks for a transfer matrix (a ``transfer:`` section)."""
    return grid_mapping(board).get("transfer") is not None
