"""``harness.task``, the path plugins import the task contract from: its home is :mod:`harness.api.task`.

Kept for plugin files (README, Registering your own teacher) and installed plugins; nothing inside the harness
imports it."""
from harness.api.task import *  # noqa: F401,F403
