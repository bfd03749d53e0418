"""Package attributes imported on first use (PEP 562): a package's ``__init__`` names what it
exports and from which module, and importing the package stays cheap (``import alignimate`` and
the CLI's ``--help`` never import torch; ``apply`` of affine frames never does)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, table: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for the names of ``table`` (name -> module that
    defines it).

    Args:
        package: the package's ``__name__`` (for the error message).
        table: exported name -> the module to import it from on first use.
        namespace: the package's ``globals()``: an imported name is stored there, so the next access
            does not come back here.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's module level.
    """

    def getattr_(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace.get("__all__", ()), *table})

    return getattr_, dir_
