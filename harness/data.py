"""``harness.data``, the path plugins import dataset loading helpers from: its home is :mod:`harness.api.data`.

Kept for plugin files (README, Registering your own teacher) and installed plugins; nothing inside the harness
imports it."""
from harness.api.data import *  # noqa: F401,F403
