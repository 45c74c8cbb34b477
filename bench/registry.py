"""One registry shape for every axis (methods, datasets, archs, attacks, hardware,
corruptions).

Modelled on timm: ``register`` decorates a factory or a class, ``create`` builds by name,
``list`` filters names with shell wildcards. A reader who learns one registry knows them
all: every entry of every axis is added the same way, ``@REGISTRY.register()`` (the name
is the object's ``name`` attribute when it has one, else its ``__name__``) or
``@REGISTRY.register("name")``.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry (and no prefix handler) answers to."""

    def __init__(self, kind: str, name: str, allowed: list[str]):
        self.kind, self.name, self.allowed = kind, name, allowed
        super().__init__(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}")

    def __str__(self) -> str:  # KeyError would otherwise print the repr with quotes
        return self.args[0]


class Registry(Generic[T]):
    """Name -> factory, with optional prefix handlers such as ``timm:<name>``."""

    def __init__(self, kind: str, check: Callable[[str, Callable[..., T]], None] | None = None):
        """``check(name, entry)`` runs before each registration and raises ``ValueError``
        for an entry this axis cannot use (a method class without its ``name``)."""
        self.kind = kind
        self.check = check
        self._entries: dict[str, Callable[..., T]] = {}
        self._docs: dict[str, str] = {}
        self._prefixes: dict[str, Callable[[str], Callable[..., T]]] = {}

    def register(self, name: str | None = None, *, doc: str | None = None) -> Callable:
        """Decorator: ``@REG.register()`` or ``@REG.register("name")``. Without a name, the
        entry's ``name`` attribute (a class's ``name = "pgd_at"``) or else its ``__name__``;
        ``doc`` defaults to the first line of its docstring."""

        def wrap(fn: Callable[..., T]) -> Callable[..., T]:
            key = name or default_name(fn)
            if self.check is not None:
                self.check(key, fn)
            if key in self._entries and self._entries[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = fn
            text = doc if doc is not None else (fn.__doc__ or "")
            self._docs[key] = (text.strip().splitlines() or [""])[0]
            return fn

        return wrap

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a refused submission's methods); unknown names are ignored."""
        self._entries.pop(name, None)
        self._docs.pop(name, None)

    def register_prefix(self, prefix: str, resolver: Callable[[str], Callable[..., T]]) -> None:
        """``prefix:rest`` names resolve through ``resolver(rest)`` (e.g. ``timm:resnet18``)."""
        self._prefixes[prefix] = resolver

    def get(self, name: str) -> Callable[..., T]:
        if name in self._entries:
            return self._entries[name]
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._prefixes:
            return self._prefixes[prefix](rest)
        raise UnknownNameError(self.kind, name, self.allowed())

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def allowed(self) -> list[str]:
        return self.list() + [f"{p}:<name>" for p in sorted(self._prefixes)]

    def describe(self, name: str) -> str:
        return self._docs.get(name, "")

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except (UnknownNameError, ValueError):
            return False
        return True


def default_name(entry: Callable) -> str:
    """The registry name of an entry registered without one."""
    own = getattr(entry, "name", None)
    return own if isinstance(own, str) and own else entry.__name__
