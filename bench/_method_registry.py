"""The method registry: every base and modifier, built-in or plugin, is added here with
``@METHODS.register()`` on its class (named by its ``name`` attribute).

Apart from :mod:`bench.plugins` (which loads and composes methods) so that
:mod:`bench.api` can publish the decorator without importing the loading machinery.
"""
from __future__ import annotations

from bench._method import Base, Modifier
from bench.registry import Registry


def _check_method(name: str, cls) -> None:
    """A method class must carry its registry name: compositions, configs and results
    find it by ``cls.name``."""
    own = getattr(cls, "name", None)
    if not isinstance(own, str) or not own:
        raise ValueError(f"{cls.__name__}: set a class attribute `name` (the registry name, "
                         "e.g. name = \"my_method\") before @METHODS.register()")
    if own != name:
        raise ValueError(f"{cls.__name__}: registered as {name!r} but its `name` is {own!r}; "
                         "use @METHODS.register() and let the class attribute name it")


METHODS: Registry[type[Base] | type[Modifier]] = Registry("method", check=_check_method)


def register_method(cls):
    """``@register_method``: the same as ``@METHODS.register()``, kept for plugins written
    before every registry took one decorator style."""
    return METHODS.register()(cls)
