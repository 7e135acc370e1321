"""Errors that carry a message for the user (the CLI prints it as one paragraph and exits with status 2).

Kept in a module with no heavy imports, so the report commands can raise them without loading torch.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration or flags; the message says what to change."""
