"""``py:<module>:<function>`` or ``py:<path/to/file.py>:<function>``: a user's own model
factory, for models trained elsewhere (``perbench eval-model --factory``).

The factory is called with whichever of ``num_classes``, ``in_channels``, ``image_size``,
``mean`` and ``std`` it accepts and must return an ``nn.Module`` that takes pixels in
[0, 1] (normalisation inside the model, as every registry arch has it).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn

from bench.archs.base import ARCHS


def _import(target: str):
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"factory file {target!r} does not exist")
        name = "perbench_factory_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]
    return importlib.import_module(target)


def python_factory(ref: str) -> Callable[..., nn.Module]:
    target, sep, fn_name = ref.rpartition(":")
    if not sep or not target or not fn_name:
        raise ValueError(f"py:{ref}: expected py:<module or file.py>:<function>")
    fn = getattr(_import(target), fn_name, None)
    if not callable(fn):
        raise ValueError(f"py:{ref}: {target} has no function {fn_name!r}")
    accepted = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in accepted.values())

    def create(**kwargs) -> nn.Module:
        model = fn(**{k: v for k, v in kwargs.items() if takes_all or k in accepted})
        if not isinstance(model, nn.Module):
            raise TypeError(f"py:{ref} returned {type(model).__name__}, not a torch nn.Module")
        return model

    create.__doc__ = f"user factory {ref}"
    return create


ARCHS.register_prefix("py", python_factory)
