"""``harness.losses``, the path plugin files import the loss contract and ``register_loss`` from: its home is :mod:`harness.diagnostic.losses`.

Kept for plugin files (``--include``, installed plugins); nothing inside the harness imports it."""
from harness.diagnostic.losses import *  # noqa: F401,F403
