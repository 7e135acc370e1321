"""``harness.models``, the path plugin files import model specs and ``register_model`` from: its home is :mod:`harness.sampling.models`.

Kept for plugin files (``--include``, installed plugins); nothing inside the harness imports it."""
from harness.sampling.models import *  # noqa: F401,F403
