"""Plugin discovery: built-in task/teacher modules, installed entry points, and ``--include file.py``.

Importing a plugin module is what registers it (its decorated factories run at import). Plugin code runs only from
the built-in packages, an installed entry point (group ``opd_harness.plugins``) or a file the user names.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "opd_harness.plugins"
_BUILTIN_PACKAGES = ("tasks", "teachers")
_loaded: set[str] = set()


def load_builtin() -> None:
    """Import every module of the built-in ``tasks`` and ``teachers`` packages (idempotent)."""
    import harness.diagnostic.losses  # noqa: F401  (registers the losses)
    import harness.sampling.models  # noqa: F401  (registers the model specs)

    for package_name in _BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{module.name}")


def load_entry_points() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _loaded:
            entry.load()
            _loaded.add(entry.name)


def load_file(path: str | Path) -> None:
    """Import a user's plugin file (``--include``); each file is imported once per process."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"--include {path}: no such file. Pass the path of a Python file that registers plugins.")
    key = str(path)
    if key in _loaded:
        return
    module_name = f"opd_plugin_{path.stem}_{abs(hash(key)) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    _loaded.add(key)


def load_all(include: Iterable[str | Path] = ()) -> None:
    load_builtin()
    load_entry_points()
    for path in include:
        load_file(path)
