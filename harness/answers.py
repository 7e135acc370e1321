"""``harness.answers``, the path plugins import answer extraction and grading helpers from: its home is :mod:`harness.api.answers`.

Kept for plugin files (README, Registering your own teacher) and installed plugins; nothing inside the harness
imports it."""
from harness.api.answers import *  # noqa: F401,F403
