"""The method registry, compositions and their validation."""
from __future__ import annotations

import pytest

from bench.plugins import METHODS, CompositionError, compose, load_builtin_methods


def test_builtin_bases_registered():
    load_builtin_methods()
    for name in ["erm", "pgd_at", "trades", "fast_at", "free_at"]:
        assert name in METHODS.list()
    assert METHODS.list("*_at") == ["fast_at", "free_at", "pgd_at"]


def test_compose_single_with_flat_config():
    comp = compose("pgd_at", {"steps": 3})
    assert comp.base.config.steps == 3 and comp.modifiers == ()
    assert comp.resolved_config()["pgd_at"]["step_ratio"] == 0.25


@pytest.mark.parametrize("name,match", [
    ("erm+pgd_at", "two bases"),
    ("nothing", "unknown method 'nothing'"),
    ("erm+erm", "two bases"),
])
def test_bad_compositions(name, match):
    with pytest.raises(CompositionError, match=match):
        compose(name)


def test_config_errors_name_the_part():
    with pytest.raises(CompositionError, match=r"config of 'trades'.*beta"):
        compose("trades", {"beta": "large"})
    with pytest.raises(CompositionError, match="name no part"):
        compose("erm", {"erm": {}, "caper": {}})


def test_registry_docs_are_whole_first_lines():
    from bench.plugins import METHODS, load_builtin_methods

    load_builtin_methods()
    assert METHODS.describe("erm").startswith("Standard training with cross-entropy")
