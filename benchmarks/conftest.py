"""Benchmarks: `python -m pytest benchmarks --benchmark-only` (not part of the test suite; see docs/benchmarks.md).

Each benchmark times a pair of implementations side by side in one run and records their ratio in
``benchmark.extra_info``; nothing here asserts a timing.
"""
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
