"""Entry points that share their names with submodules: ``fmnist.train`` and ``fmnist/train.py``.

The notebook API is ``from cnnlab import fmnist; fmnist.train(...)``, while the code behind it
lives in the submodule ``cnnlab.fmnist.train``. Python binds a submodule as an attribute of its
package when it is first imported, so ``import cnnlab.fmnist.train`` (by the CLI, a test, or the
entry point itself) would replace the function ``fmnist.train`` with a module that cannot be
called. Here the package keeps both: the submodule bound there becomes callable as the entry
point it replaces, so ``fmnist.train(...)``, ``import cnnlab.fmnist.train as module`` and
``monkeypatch.setattr("cnnlab.fmnist.train.write_run", ...)`` all keep working.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """A submodule that is also its package's entry point of the same name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)  # __wrapped__: inspect.signature shows its own


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        entry = self.__dict__.get(name)
        if isinstance(value, types.ModuleType) and isinstance(entry, types.FunctionType):
            value.__class__ = _CallableModule
            value.__wrapped__ = entry  # type: ignore[attr-defined]
        super().__setattr__(name, value)


def keep_entry_points(package: str) -> None:
    """Call at the end of the package's ``__init__``: its functions survive the import of
    submodules with the same names."""
    sys.modules[package].__class__ = _Package
