"""robustbench through `bench.interop.autoattack_alias`: importable, its benchmark running on
pyautoattack (with fixture tensors, no download), and the alias out of the way of a real
``autoattack``. Needs the extra: ``pip install 'perbench[robustbench]'`` / ``tox -e robustbench``."""
from __future__ import annotations

import importlib.util
import logging
import socket
import sys
import types

import pyautoattack
import pytest
import torch

from bench.interop import autoattack_alias as adapter
from bench.interop.autoattack_alias import (
    INSTALL_HINT,
    import_robustbench,
    install_autoattack_alias,
)

pytestmark = pytest.mark.robustbench

needs_robustbench = pytest.mark.skipif(importlib.util.find_spec("robustbench") is None,
                                       reason=f"robustbench not installed: {INSTALL_HINT}")


def _modules(top: str) -> list[str]:
    return [n for n in sys.modules if n == top or n.startswith(top + ".")]


@pytest.fixture(autouse=True)
def fresh_alias():
    """Each test starts with the alias neither installed nor imported, and leaves
    sys.meta_path and the autoattack modules as it found them."""
    meta_path = [f for f in sys.meta_path if f is not adapter._FINDER]
    saved = {n: sys.modules[n] for n in _modules("autoattack")}

    def reset():
        sys.meta_path[:] = meta_path
        for name in _modules("autoattack"):
            del sys.modules[name]

    reset()
    yield
    reset()
    sys.modules.update(saved)


@pytest.fixture(autouse=True, scope="module")
def robustbench_unloaded_after():
    """robustbench is imported once for this file (importing it again re-registers its
    models in timm, with a warning each) and unloaded after it."""
    before = set(_modules("robustbench"))
    yield
    for name in set(_modules("robustbench")) - before:
        del sys.modules[name]


@pytest.fixture
def rb():
    if importlib.util.find_spec("robustbench") is None:
        pytest.skip(f"robustbench not installed: {INSTALL_HINT}")
    return import_robustbench()


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt (or name lookup) fails and is recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def aa_logger():
    """pyautoattack's shared logger, restored after a test points it at a file."""
    logger = logging.getLogger("auto-attack")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    for h in logger.handlers[len(handlers):]:
        h.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_alias_maps_autoattack_onto_pyautoattack():
    assert install_autoattack_alias() is True
    assert install_autoattack_alias() is True
    assert sys.meta_path.count(adapter._FINDER) == 1, "idempotent"

    import autoattack
    import autoattack.autopgd_base
    from autoattack.state import EvaluationState

    # submodules are pyautoattack's own objects, not second copies of its files
    assert autoattack.state is pyautoattack.state
    assert EvaluationState is pyautoattack.state.EvaluationState
    assert autoattack.autopgd_base is pyautoattack.autopgd_base
    assert sys.modules["autoattack.state"] is pyautoattack.state
    assert pyautoattack.state.__spec__.name == "pyautoattack.state"
    assert autoattack.__version__ == pyautoattack.__version__
    # the package's AutoAttack is pyautoattack's, adapted to the original calls
    assert autoattack.AutoAttack is adapter.AutoAttack
    assert issubclass(autoattack.AutoAttack, pyautoattack.AutoAttack)
    assert pyautoattack.AutoAttack is not adapter.AutoAttack, "pyautoattack left unchanged"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("autoattack.no_such_module")


@needs_robustbench
def test_robustbench_imports_through_the_alias(rb):
    from robustbench.eval import benchmark
    from robustbench.model_zoo.architectures.resnet import PreActResNet
    from robustbench.model_zoo.cifar10 import linf

    assert rb.benchmark is benchmark
    assert sys.modules["robustbench.eval"].AutoAttack is adapter.AutoAttack
    assert sys.modules["robustbench.eval"].EvaluationState is pyautoattack.state.EvaluationState
    # a model-zoo entry's factory builds its architecture with random weights, offline
    torch.manual_seed(0)
    model = linf["Andriushchenko2020Understanding"]["model"]().eval()
    assert isinstance(model, PreActResNet)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)


@needs_robustbench
def test_benchmark_runs_standard_autoattack_on_fixture_tensors(rb, no_network, one_thread,
                                                               aa_logger, monkeypatch, tmp_path):
    import robustbench.eval
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet
    from robustbench.model_zoo.enums import BenchmarkDataset

    torch.manual_seed(0)
    # the zoo's WideResNet (WRN-28-10 and WRN-34-10 in most Linf entries), at depth 10, width 1
    model = WideResNet(depth=10, widen_factor=1).eval()
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predicted = model(x).argmax(1)
    # labels the model gets right on the first half only: clean accuracy is exactly 1/2
    y = torch.cat([predicted[:4], (predicted[4:] + 1) % 10])

    loads = []

    def load_fixture(dataset, n_examples, data_dir, prepr):  # CIFAR-10 would be downloaded
        loads.append((dataset, n_examples, data_dir))
        return x[:n_examples], y[:n_examples]

    adversaries = []

    class SeededAutoAttack(adapter.AutoAttack):  # robustbench passes no seed: time is used
        def __init__(self, *args, **kwargs):
            super().__init__(*args, seed=0, **kwargs)
            adversaries.append(self)

    monkeypatch.setattr(robustbench.eval, "load_clean_dataset", load_fixture)
    monkeypatch.setattr(robustbench.eval, "AutoAttack", SeededAutoAttack)
    log = tmp_path / "aa.log"

    clean, robust = rb.benchmark(model, n_examples=8, dataset="cifar10", threat_model="Linf",
                                 eps=8 / 255, batch_size=8, data_dir=str(tmp_path / "data"),
                                 log_path=str(log))

    assert loads == [(BenchmarkDataset.cifar_10, 8, str(tmp_path / "data"))]
    assert [a.attacks_to_run for a in adversaries] == [["apgd-ce", "apgd-t", "fab-t", "square"]]
    assert adversaries[0].epsilon == pytest.approx(8 / 255) and adversaries[0].norm == "Linf"
    assert isinstance(clean, float) and isinstance(robust, float)
    assert clean == 0.5
    assert 0.0 <= robust < clean, "a random-weight net is not robust at 8/255"
    assert no_network == []
    assert "robust accuracy" in log.read_text(), "log_path gets AutoAttack's progress"
    assert not (tmp_path / "data").exists()


@needs_robustbench
def test_pyautoattacks_own_calls_still_work_on_the_adapted_class(rb, one_thread):
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    adversary = adapter.AutoAttack(model, eps=8 / 255, version="custom",
                                   attacks_to_run=["apgd-ce"], seed=0)
    adversary.apgd.n_iter = 5

    # the original's call returns x_adv, or (x_adv, y_adv) with return_labels
    x_adv = adversary.run_standard_evaluation(x, y, bs=4)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    x_adv2, y_adv = adversary.run_standard_evaluation(x, y, bs=4, return_labels=True)
    assert torch.equal(x_adv, x_adv2) and y_adv.shape == y.shape
    # pyautoattack's own individual evaluation calls with batch_size= and unpacks a pair
    per_attack = adversary.run_standard_evaluation_individual(x, y, batch_size=4)
    assert set(per_attack) == {"apgd-ce"} and per_attack["apgd-ce"][0].shape == x.shape


def test_no_alias_when_autoattack_is_already_imported(monkeypatch):
    real = types.ModuleType("autoattack")
    monkeypatch.setitem(sys.modules, "autoattack", real)

    assert install_autoattack_alias() is False
    assert adapter._FINDER not in sys.meta_path
    import autoattack
    assert autoattack is real


def test_no_alias_when_autoattack_is_installed(monkeypatch, tmp_path):
    package = tmp_path / "autoattack"
    package.mkdir()
    (package / "__init__.py").write_text("ORIGINAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert install_autoattack_alias() is False
    assert adapter._FINDER not in sys.meta_path
    import autoattack
    assert autoattack.ORIGINAL is True and not hasattr(autoattack, "AutoAttack")


def test_import_robustbench_names_the_extra_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench", None)  # as if not installed

    with pytest.raises(ImportError, match=r"pip install 'perbench\[robustbench\]'") as err:
        import_robustbench()
    assert err.value.name == "robustbench"
    assert isinstance(err.value.__cause__, ModuleNotFoundError)


def test_a_zoo_architecture_is_an_arch_for_external_models(rb, tmp_path):
    """robustbench:<dataset>:<threat>:<name> builds the zoo's network untrained, so a
    locally present checkpoint of it can go through `perbench eval-model`."""
    import torch

    from bench.archs import ARCHS
    from bench.interop.external import load_into, read_state_dict

    name = "robustbench:cifar10:Linf:Andriushchenko2020Understanding"
    model = ARCHS.create(name, num_classes=10, in_channels=3, image_size=32, mean=None, std=None)
    ckpt = tmp_path / "zoo.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    fresh = ARCHS.create(name, num_classes=10, in_channels=3, image_size=32, mean=None, std=None)
    load_into(fresh, read_state_dict(ckpt), str(ckpt))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    with pytest.raises(ValueError, match="no model 'Nope'"):
        ARCHS.get("robustbench:cifar10:Linf:Nope")
