"""``harness.registry``, the path plugins import the generic registry from: its home is :mod:`harness.api.registry`.

Kept for plugin files (README, Registering your own teacher) and installed plugins; nothing inside the harness
imports it."""
from harness.api.registry import *  # noqa: F401,F403
