"""``harness.errors``, the path plugins import the error family from: its home is :mod:`harness.api.errors`.

Kept for plugin files (README, Registering your own teacher) and installed plugins; nothing inside the harness
imports it."""
from harness.api.errors import *  # noqa: F401,F403
