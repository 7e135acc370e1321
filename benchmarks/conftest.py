"""Benchmarks: `python -m pytest benchmarks --benchmark-only` (not part of the test suite; see docs/benchmarks.md).

Each benchmark times a pair of implementations side by side in one run and records their ratio in
``benchmark.extra_info``; nothing here asserts a timing.
"""
import os

from harness.sampling.threads import set_wait_policy

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# as the `opd` entry point does, before torch loads: idle OpenMP threads sleep instead of spinning. Without it a
# benchmark measures spinning threads fighting the machine's other processes (the training sampler: 2-7 tokens/s
# instead of 18-27 on the shared 2 cores, benchmarks/test_bench_training.py), not what a user of `opd` gets.
set_wait_policy()
