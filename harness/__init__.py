"""opd-harness: a training-free diagnostic of on-policy distillation (see METHOD.md in the docs)."""
__version__ = "0.1.0"
