"""Make ``robustbench`` (1.1.1, the optional extra ``perbench[robustbench]``) importable.

robustbench declares a dependency on ``pyautoattack`` but its ``eval`` module does
``from autoattack import AutoAttack`` and ``from autoattack.state import EvaluationState``:
``autoattack`` is the import name of the original AutoAttack repository (installed from
git), not of any dependency pip installs. pyautoattack ships that code as the package
``pyautoattack``, with an ``AutoAttack`` whose API has moved on (keyword-only options, no
``log_path``, ``batch_size=`` for ``bs=``, and ``run_standard_evaluation`` returning
``(x_adv, y_adv)`` where robustbench expects ``x_adv``). So ``import robustbench`` fails, and ``robustbench.eval.benchmark``
would fail even with a bare rename.

`install_autoattack_alias` therefore registers an import hook, only when no real
``autoattack`` is importable: ``autoattack.<sub>`` is pyautoattack's own submodule (same
module object, so classes such as ``EvaluationState`` stay identical), and the package
``autoattack`` itself re-exports pyautoattack with `AutoAttack` adapted to the old calls.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import warnings

import pyautoattack

_ALIAS, _TARGET = "autoattack", "pyautoattack"
INSTALL_HINT = "pip install 'perbench[robustbench]'"


class AutoAttack(pyautoattack.AutoAttack):
    """pyautoattack's AutoAttack, called the way robustbench (and the original repository)
    calls it; pyautoattack's own calling convention keeps working too."""

    def __init__(self, model, norm="Linf", eps=.3, version="standard", attacks_to_run=None,
                 device="cpu", log_path=None, seed=None):
        # the original accepted attacks_to_run=[] with any version; pyautoattack refuses
        # attacks for non-custom versions, so an empty list means "the version's own"
        super().__init__(model, attacks=attacks_to_run or None, device=device, eps=eps,
                         norm=norm, seed=seed, version=version)
        if log_path is not None:
            # the original wrote its progress to log_path; pyautoattack logs it (at DEBUG)
            # to the shared "auto-attack" logger instead, so send that logger there
            _log_to_file(self.logger, log_path)

    def run_standard_evaluation(self, x_orig, y_orig, bs=250, return_labels=False,
                                state_path=None, *, batch_size=None):
        # pyautoattack's run_standard_evaluation_individual calls this with batch_size=
        # and unpacks a pair: that call keeps pyautoattack's return value
        if batch_size is not None:
            return super().run_standard_evaluation(x_orig, y_orig, batch_size=batch_size,
                                                   state_path=state_path)
        x_adv, y_adv = super().run_standard_evaluation(x_orig, y_orig, batch_size=bs,
                                                       state_path=state_path)
        return (x_adv, y_adv) if return_labels else x_adv


def _log_to_file(logger: logging.Logger, path) -> None:
    target = os.path.abspath(path)
    # one handler per file, however many AutoAttack instances log there
    if not any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
        logger.addHandler(logging.FileHandler(target))
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.DEBUG)


class _AutoattackAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder and loader for ``autoattack`` and ``autoattack.*``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == _ALIAS:
            # a package with an empty __path__: its submodules come back through here
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname.startswith(_ALIAS + ".") and importlib.util.find_spec(_real(fullname)):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a plain module; exec_module fills or replaces it

    def exec_module(self, module):
        name = module.__name__
        if name != _ALIAS:
            # the import system returns whatever sys.modules holds after exec_module, so
            # the alias resolves to pyautoattack's module itself, with its __spec__ intact
            sys.modules[name] = importlib.import_module(_real(name))
            return
        # the package cannot be pyautoattack itself: its AutoAttack must differ
        real = importlib.import_module(_TARGET)
        module.__dict__.update((k, v) for k, v in vars(real).items()
                               if not k.startswith("__") or k in ("__version__", "__doc__"))
        module.AutoAttack = AutoAttack


def _real(name: str) -> str:
    return _TARGET + name[len(_ALIAS):]


_FINDER = _AutoattackAlias()


def install_autoattack_alias() -> bool:
    """Let ``import autoattack`` (and its submodules) resolve to pyautoattack, unless a
    real ``autoattack`` is importable. True when the alias is in place. Idempotent."""
    if _FINDER in sys.meta_path:
        return True
    if sys.modules.get(_ALIAS) is not None:
        return False  # already imported from elsewhere: leave it alone
    try:
        if importlib.util.find_spec(_ALIAS) is not None:
            return False  # the original AutoAttack is installed: robustbench gets it
    except (ImportError, ValueError):  # a broken half-installed module counts as absent
        pass
    # first, so that the path finder never loads pyautoattack's files a second time as
    # "autoattack.<sub>" (which would give two distinct EvaluationState classes)
    sys.meta_path.insert(0, _FINDER)
    return True


def import_robustbench():
    """The ``robustbench`` module, importable thanks to `install_autoattack_alias`;
    ImportError naming the extra to install when it (or a dependency) is missing."""
    install_autoattack_alias()
    try:
        with warnings.catch_warnings():
            # robustbench.loaders imports pkg_resources, which warns on import: not ours to fix
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return importlib.import_module("robustbench")
    except ImportError as err:
        raise ImportError(f"robustbench is not importable ({err}); install it with "
                          f"{INSTALL_HINT}", name=err.name) from err
