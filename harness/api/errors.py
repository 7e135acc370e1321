"""The one family of errors that carry a message for the user: the CLI catches :class:`OpdError` (and so every
subclass), prints its message as one paragraph and exits with status 2.

Kept in a module with no heavy imports, so the report commands, tasks and teachers can raise them without loading
torch. A plugin (a task or teacher factory) that refuses its argument raises :class:`SpecError`; any error a user
can fix by changing what they typed derives from :class:`OpdError` (the registry's, the data loader's, ...).
"""
from __future__ import annotations


class OpdError(Exception):
    """A problem the user can fix; the message is one paragraph naming the problem and the fix."""


class ConfigError(OpdError, ValueError):
    """Invalid configuration or flags; the message says what to change."""


class ModelError(OpdError, RuntimeError):
    """A model cannot be resolved or loaded; the message says how to fix it."""


class SpecError(ConfigError):
    """A task, teacher or model spec whose argument the factory refuses (``boolq:x``, ``model:``); the message says
    which spellings are accepted."""
