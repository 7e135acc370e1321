"""``harness.teacher``, the path plugins import the teacher contract from: its home is :mod:`harness.sampling.teacher`.

Kept for plugin files (README, Registering your own teacher) and installed plugins; nothing inside the harness
imports it."""
from harness.sampling.teacher import *  # noqa: F401,F403
