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


# -- one registration style for every registry -------------------------------------------

def test_register_names_an_entry_by_its_name_attribute_else_its_function_name():
    from bench.registry import Registry

    reg = Registry("thing")

    @reg.register()
    class Named:
        """A class with a name."""
        name = "named-thing"

    @reg.register()
    def plain_factory():
        """A factory."""

    @reg.register("explicit")
    def other():
        pass

    assert reg.list() == ["explicit", "named-thing", "plain_factory"]
    assert reg.get("named-thing") is Named and reg.describe("plain_factory") == "A factory."


def test_every_registry_takes_the_same_decorator():
    from bench.api import METHODS as API_METHODS
    from bench.api import Base, register_method
    from bench.attacks import ATTACKS, register_attack
    from bench.hardware import HARDWARE, HardwareProfile
    from bench.plugins import register_method as plugins_register_method

    load_builtin_methods()
    assert API_METHODS is METHODS and register_method is plugins_register_method
    assert METHODS.get("pgd_at").name == "pgd_at" and ATTACKS.get("apgd-ce").name == "apgd-ce"
    assert callable(register_attack)  # the old decorators stay importable

    from bench.registry import Registry

    # hardware profiles are decorated factories, as archs and datasets are
    assert HARDWARE.describe("cpu-1t") == HARDWARE.get("cpu-1t").__doc__
    assert HARDWARE.create("cpu-1t", threads=4).threads == 4
    profiles = Registry("hardware profile")  # a new one, so HARDWARE stays as shipped

    @profiles.register("test-profile")
    def test_profile(**overrides) -> HardwareProfile:
        """A test profile."""
        return HardwareProfile("test-profile", "cpu", threads=2, **overrides)

    assert profiles.create("test-profile", compile=True).compile

    class Nameless(Base):
        """No `name`."""

    with pytest.raises(ValueError, match="set a class attribute `name`"):
        METHODS.register()(Nameless)
    with pytest.raises(ValueError, match="set a class attribute `name`"):
        register_method(Nameless)


def test_builtin_methods_import_only_the_public_api():
    """methods/*.py import bench.api (or their own helper module), nothing else of bench."""
    import ast
    from pathlib import Path

    for path in sorted((Path(__file__).parent.parent / "methods").glob("*.py")):
        if path.name == "_common.py":  # the deprecated shim re-exports bench.api
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                assert top not in ("bench", "methods") or node.module in (
                    "bench.api", "bench.plugins", "methods._data_pruning"), (path.name, node.module)


def test_bench_api_does_not_import_the_engine():
    import subprocess
    import sys

    code = ("import sys, bench.api; "
            "print(sorted(m for m in sys.modules if m.startswith(('bench.work', 'bench.execute', "
            "'bench.grid', 'bench.views', 'bench.plugins'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_old_style_plugin_still_loads_with_a_deprecation_warning():
    import sys
    import warnings
    from pathlib import Path

    from bench.plugins import load_file

    load_builtin_methods()  # the built-ins must not import the shim
    assert "methods._common" not in sys.modules
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = load_file(Path(__file__).parent / "fixtures" / "plugins" / "old_style_erm.py")
    assert source.methods == ("old_style_erm",)
    assert any(issubclass(w.category, DeprecationWarning) and "bench.api" in str(w.message)
               for w in caught)
    comp = compose("old_style_erm", {"lr": 0.05})
    assert comp.resolved_config() == {"old_style_erm": {
        "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}}
