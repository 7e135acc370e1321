"""One small generic registry used for tasks, teachers, models and losses.

A plugin is a factory function registered under a name; looking a name up returns the factory.
Duplicate names raise, and unknown names raise with close matches ("did you mean ...").
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from harness.api.errors import OpdError

T = TypeVar("T")


class RegistryError(OpdError, KeyError):
    """An unknown or duplicate registry name; the message says what to do instead."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> factory mapping for one kind of plugin (``kind`` is used in messages)."""

    def __init__(self, kind: str, cli_hint: str | None = None, plural: str | None = None) -> None:
        self.kind = kind
        # "loss" -> "losses", not "losss": the plural appears in messages and in `opd list <plural>`
        self.plural = plural or (f"{kind}es" if kind.endswith(("s", "x", "ch", "sh")) else f"{kind}s")
        self.cli_hint = cli_hint or f"opd list {self.plural}"
        self._factories: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name")`` on a factory function."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, description)
            return factory

        return decorate

    def add(self, name: str, factory: Callable[..., T], description: str | None = None) -> None:
        if name in self._factories:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (by {self._factories[name].__module__}); "
                f"pick another name for the new {self.kind}."
            )
        self._factories[name] = factory
        doc = description or (factory.__doc__ or "").strip().splitlines()
        self._descriptions[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")

    def remove(self, name: str) -> None:
        """Unregister (used by tests that register fakes)."""
        self._factories.pop(name, None)
        self._descriptions.pop(name, None)

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        # compared case-insensitively, so that "JSD" suggests 'jsd'
        by_lower = {known.lower(): known for known in self._factories}
        close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self._factories)) or "(none registered)"
        return f"Unknown {self.kind} {name!r}.{hint} Known {self.plural}: {known}. See `{self.cli_hint}`."

    def describe(self, name: str) -> str:
        return self._descriptions.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)


def imported_when_called(target: str) -> Callable[[], object]:
    """A factory for ``"package.module:Name"`` that imports the module only when it is called, so an optional
    dependency (vLLM behind ``--backend vllm``) is registered by name and loaded only when chosen, and the module
    holding the registry never imports the module it names (lm-eval maps ``"vllm"`` to ``"module:Class"`` alike)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:Name', got {target!r}")

    def factory() -> object:
        import importlib

        return getattr(importlib.import_module(module_name), attribute)

    factory.__module__ = module_name  # the registry names it in its duplicate-name message
    factory.__doc__ = f"{target} (imported when chosen)"
    return factory


def _takes_argument(factory: Callable) -> bool:
    import inspect

    try:
        return bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return True


def resolve_spec(registry: Registry[T], spec: str) -> T:
    """Build the plugin a command-line spec names.

    An exact name wins (``self:correct-demo``); otherwise ``family:argument`` calls the family's factory with the
    argument (``model:smollm2-135m``), if that factory takes one. Anything else is an unknown-name error.
    """
    if spec in registry:
        return registry.get(spec)()
    family, sep, argument = spec.partition(":")
    if sep and family in registry and _takes_argument(registry.get(family)):
        return registry.get(family)(argument)
    raise RegistryError(registry.unknown_message(spec))
