"""Lazy re-exports for package `__init__` files (PEP 562 module `__getattr__`).

A chunk job is a fresh interpreter: `from emproc.motion import motion_correct_movie` must not
pay for every sibling module's imports (CTF fitting pulled in scipy.optimize, the STAR and
plot writers pandas and matplotlib). Names load from their module on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: `exports` maps a name to its submodule."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
