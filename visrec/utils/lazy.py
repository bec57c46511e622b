"""Names of a package imported on first use (PEP 562), so importing one light module of the package does
not import its heavy siblings (Lightning)."""
from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_names(package: str, modules: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public names live in ``modules`` (name -> module)."""
    def __getattr__(name: str):
        if name in modules:
            return getattr(import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*import_module(package).__dict__, *modules])

    return __getattr__, __dir__
