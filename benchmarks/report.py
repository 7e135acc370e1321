"""Turn a pytest-benchmark JSON file into docs/benchmarks.md (ratios measured side by side, with machine details).

    python -m pytest benchmarks --benchmark-only --benchmark-json=.benchmarks/latest.json
    python benchmarks/report.py .benchmarks/latest.json > docs/benchmarks.md
"""
from __future__ import annotations

import json
import sys

from tabulate import tabulate

GOALS = {
    "test_shared_prefix_branching_vs_generate_per_continuation": ("speedup", ">= 4x"),
    "test_one_teacher_pass_per_rollout_vs_per_node": ("speedup", ">= 10x"),
    "test_rollout_throughput_vs_matmul_roofline": ("fraction_of_matmul", "(report)"),
}


def main(path: str) -> None:
    data = json.loads(open(path).read())
    machine, cpu = data["machine_info"], data["machine_info"].get("cpu", {})
    rows = []
    for bench in data["benchmarks"]:
        key, goal = GOALS.get(bench["name"], ("", ""))
        info = bench.get("extra_info", {})
        details = ", ".join(f"{k}={v}" for k, v in info.items())
        rows.append([bench["name"].removeprefix("test_"), info.get(key, ""), goal, details])
    print("# Benchmarks\n")
    print(f"Measured {data['datetime']} on {cpu.get('brand_raw', machine.get('processor'))}, "
          f"{cpu.get('count', '?')} logical cores, Python {machine.get('python_version')}, CPU only; "
          "each ratio compares two implementations timed side by side in one process.\n")
    print(tabulate(rows, headers=["benchmark", "ratio / value", "aim", "details"], tablefmt="github"))
    print("\nNot yet benchmarked here: targeted depth-window selection vs uniform random nodes at an equal token "
          "budget, end-to-end nodes per CPU-minute on the demo (the demo prints it; see run.json timings), and GPU "
          "runs (no GPU was lent to this session).")
    print("\nRegenerate: `python -m pytest benchmarks --benchmark-only --benchmark-json=.benchmarks/latest.json && "
          "python benchmarks/report.py .benchmarks/latest.json > docs/benchmarks.md`")


if __name__ == "__main__":
    main(sys.argv[1])
