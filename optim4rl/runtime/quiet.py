"""Brax's import prints "Failed to import warp: ..." (mujoco.mjx.warp, an optional GPU backend this
toolkit does not use) to stdout; `silence_warp_notices` drops those lines at their source.

It puts a finder first on `sys.meta_path` that runs the import of `mujoco.mjx.warp` with stdout
captured, then writes back every other line. Nothing is imported until brax is; installing it twice
is harmless. `resel` and `eval` (the packages that import brax) install it on import.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import sys
from types import ModuleType

MODULE = "mujoco.mjx.warp"
NOTICES = ("Failed to import warp:", "Failed to import mujoco_warp:")


class _QuietLoader(importlib.abc.Loader):
    """The module's own loader, its `exec_module` run with the notices dropped."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str):  # get_resource_reader, is_package, get_code, ...
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                self.loader.exec_module(module)
        finally:
            lines = captured.getvalue().splitlines(keepends=True)
            sys.stdout.write("".join(line for line in lines if not line.startswith(NOTICES)))


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def silence_warp_notices() -> None:
    """Drop the "Failed to import warp" lines of a later `import brax` (see the module doc)."""
    if not any(type(f).__name__ == "_QuietFinder" for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
