"""Turn a pytest-benchmark JSON file into docs/benchmarks.md (ratios measured side by side, with machine details).

    python -m pytest benchmarks --benchmark-only --benchmark-json=.benchmarks/latest.json
    python benchmarks/report.py .benchmarks/latest.json > docs/benchmarks.md

Several files may be given (e.g. a full run, then a re-run of some benchmarks): a benchmark measured in a later
file replaces its row from an earlier one, and each row states when it was measured. To re-measure a few benchmarks
without the JSON files of the others:

    python benchmarks/report.py --update docs/benchmarks.md .benchmarks/new.json docs/measurements/gsm8k-cost.json
"""
from __future__ import annotations

import json
import sys

from tabulate import tabulate

GOALS = {
    "test_shared_prefix_branching_vs_generate_per_continuation": ("speedup", ">= 4x"),
    "test_one_teacher_pass_per_rollout_vs_per_node": ("speedup", ">= 10x"),
    "test_rollout_throughput_vs_matmul_roofline": ("fraction_of_matmul", "(report)"),
    "test_targeted_vs_uniform_nodes_at_equal_token_budget": ("ratio", ">= 1.5x"),
    "test_demo_nodes_per_cpu_minute": ("nodes_per_cpu_minute", "(report)"),
    "test_add_teacher_with_reuse_cache_vs_from_scratch": ("reuse_speedup", "(report)"),
    "test_commit_with_fsync_vs_without": ("fsync_ms_per_question", "(report)"),
    "test_screened_vs_windows_at_equal_token_budget": ("ratio", ">= 2x, CI > 1"),
    "test_threads_alone_and_beside_a_competitor": ("current_slowdown", "<= 2x"),
    "test_demo_informative_nodes_per_cpu_minute_vs_previous_commit": ("current_vs_baseline", ">= 3x"),
    "test_demo_generation_vs_plain_batched_generate": ("engine_fraction", ">= 0.8"),
    "test_qwen_models_load_time_and_disk": ("1.5b_first_load_s", "(report)"),
    "test_qwen_teacher_beside_student_peak_memory": ("peak_rss_gib", "fits 24 GiB"),
    "test_gsm8k_generation_vs_plain_batched_generate": ("engine_fraction", ">= 0.9"),
    "test_gsm8k_informative_nodes_per_cpu_minute": ("windows_exponential_informative_per_cpu_minute", "(report)"),
    "test_training_step_against_plain_forward_backward": ("step_over_plain", "(report)"),
    "test_training_sampler_by_wait_policy": ("spinning_slowdown", "(report)"),
}
NOT_MEASURED = "not measured yet"


def _load(path: str) -> dict:
    """A pytest-benchmark JSON file, or a compact measurement file (``docs/measurements/*.json``: ``datetime`` and
    ``benchmarks`` as a mapping of benchmark name to its ``extra_info``), in pytest-benchmark's shape."""
    data = json.loads(open(path).read())
    if isinstance(data["benchmarks"], dict):
        data = {**data, "benchmarks": [{"name": name, "extra_info": info} for name, info in data["benchmarks"].items()]}
    return data


def row(bench: dict) -> list:
    """One table row: name, the goal's value, the goal, when measured, every extra figure."""
    key, goal = GOALS.get(bench["name"], ("", ""))
    info = bench.get("extra_info", {})
    details = ", ".join(f"{k}={v}" for k, v in info.items())
    return [bench["name"].removeprefix("test_"), info.get(key, ""), goal, bench["measured"], details]


def update(document: str, paths: list[str]) -> str:
    """``document`` (a docs/benchmarks.md) with the rows of the benchmarks measured in ``paths`` replaced by their
    new measurement; every other row and all prose stay as they are (their JSON files need not exist any more)."""
    fresh = {bench["name"].removeprefix("test_"): row(bench) for bench in merged(paths)["benchmarks"]}
    lines = []
    for line in document.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        name = cells[0] if cells else None
        lines.append("| " + " | ".join(str(c) for c in fresh.pop(name)) + " |" if name in fresh else line)
    if fresh:
        raise SystemExit(f"{', '.join(fresh)}: no row in the document to replace (add the benchmark to GOALS and "
                         "regenerate the table, or give the file to the full report)")
    return "\n".join(lines) + "\n"


def merged(paths: list[str]) -> dict:
    """The first file's machine and date, with every benchmark's latest measurement (its date in ``measured``)."""
    files = [_load(path) for path in paths]
    benchmarks: dict[str, dict] = {}
    for data in files:
        for bench in data["benchmarks"]:
            benchmarks[bench["name"]] = {**bench, "measured": data["datetime"][:16].replace("T", " ")}
    return {**files[0], "benchmarks": list(benchmarks.values())}


def main(paths: list[str]) -> None:
    data = merged(paths)
    machine, cpu = data["machine_info"], data["machine_info"].get("cpu", {})
    rows = [row(bench) for bench in data["benchmarks"]]
    measured = {bench["name"] for bench in data["benchmarks"]}
    rows += [[name.removeprefix("test_"), NOT_MEASURED, goal, "", ""]  # a row for every aim, filled once measured
             for name, (_, goal) in GOALS.items() if name not in measured]
    print("# Benchmarks\n")
    print(f"Measured on {cpu.get('brand_raw', machine.get('processor'))}, "
          f"{cpu.get('count', '?')} logical cores, Python {machine.get('python_version')}, CPU only, nothing else "
          "running; each ratio compares two implementations (or two designs) timed side by side in one run.\n")
    print(tabulate(rows, headers=["benchmark", "ratio / value", "aim", "measured (UTC)", "details"], tablefmt="github"))
    print("\nWhat the selection and end-to-end rows measure: `targeted_vs_uniform_nodes_at_equal_token_budget` is "
          "informative nodes per 1,000 generated continuation tokens, METHOD's entropy-ranked depth windows over "
          "uniformly random positions, on the same real SmolLM2-135M rollouts of 4 BoolQ questions (G=4, K=4, M=2, "
          "B=1), the uniform strategy given at least the targeted strategy's token budget (both budgets in the "
          "details). `demo_nodes_per_cpu_minute` is the embedded demo (`opd run` without arguments) end to end: CPU "
          "seconds of every thread, the student already loaded. `add_teacher_with_reuse_cache_vs_from_scratch` adds "
          "a third teacher to the finished demo run through the reuse cache, against the three-teacher run from "
          "scratch (the records must be identical).")
    print("\nReading the selection row: on BoolQ, SmolLM2-135M mostly answers with a bare Yes/No, so most rollouts "
          "are 1-3 tokens long (`rollout_len_median`) and there both strategies end up on nearly the same positions; "
          "the difference comes from the few long rollouts, where depth windows spend the budget on early, "
          "high-entropy positions (`targeted_mean_position` vs `uniform_mean_position`). With a handful of "
          "questions the informative counts are small: `ratio_ci95_rollout_bootstrap` is a 95% percentile interval from "
          "resampling the shared rollouts, a rough guide to how far the ratio could move on other questions.")
    print("\nThe cost rows (issue 12). `screened_vs_windows_at_equal_token_budget`: informative nodes per 1,000 "
          "generated continuation tokens (screening and estimation) of `--selection screened` over METHOD's "
          "windows, both through the diagnostic's own planning on the same real rollouts (demo knobs), the screened "
          "design given at least the windows' token budget by raising its nodes per window (`screened_B`); "
          "intervals resample rollouts (as the issue asks) and, more conservatively, questions. "
          "`threads_alone_and_beside_a_competitor`: wall seconds of a one-question demo run as its own `opd` "
          "process alone and beside a second `opd` process of the same code, for this checkout and for the "
          "previous commit's code (`slowdown` = beside / alone; `alone_vs_baseline` = alone / baseline alone). "
          "`demo_informative_nodes_per_cpu_minute_vs_previous_commit`: `opd run` without arguments as separate "
          "processes, CPU seconds from start to exit, this checkout's demo against the previous commit's (and this "
          "checkout with `--selection windows`). `demo_generation_vs_plain_batched_generate`: the demo's generated "
          "tokens per wall second (the whole run) over plain batched `generate` replaying every generation call's "
          "shape (rows, in chunks of the pipeline's live-row cap; prefix length; mean new tokens; decoding only). "
          "The demo's 3 questions run side by side (`harness/sampling/lockstep.py`), so its generation is 3 merged, "
          "continuously batched calls (rollouts, screening, branches) instead of 8 per-question calls whose last "
          "rows decoded nearly alone. The machine's speed drifted by up to 1.5x within one session (the same "
          "in-process demo took 48 s and 71 s twenty minutes apart), so both rows measure A-B-A: this checkout's "
          "demo before and after the other side, counted by the mean (`*_before_after` shows both).")
    print("\nThe Qwen2.5-Coder rows (issue 29). `qwen_models_load_time_and_disk`: each model loaded by a fresh process "
          "on an empty model cache (join the parts, verify their sha256, dequantise, write float32 safetensors: "
          "`first_load`), then again from that cache (`cached_load`), with the process's peak RSS and the cache "
          "each leaves, in GiB. `qwen_teacher_beside_student_peak_memory`: the 0.5B student and the 1.5B teacher "
          "in one process, a student and a teacher pass over 8 rollouts x 400 tokens as one batched call each "
          "(`peak_rss_gib` after them, every weight page read), then the teacher as 8 one-rollout calls, what the "
          "diagnostic does today (`teacher_batched_vs_per_rollout_speedup`). Both were measured on a different "
          "machine from the rows above (2 cores of an Intel Xeon); the load row while other jobs shared it (load "
          "average about 6), so its seconds are slower than an idle machine's (two earlier runs of the same loads "
          "took 98 s (0.5B) and 123 s (1.5B) first, 10 s and 13 s cached; the peaks and sizes did not move). The "
          "teacher row was measured again alone (2026-12-03 15:24, nothing else running; "
          "`docs/measurements/qwen-teacher-alone.json`): one batched [8, 400] teacher pass took 44.7 s and 39.2 s "
          "(before and after) against 41.4 s for 8 one-rollout passes, a ratio of 0.99; beside other jobs it was "
          "0.75. So on 2 CPU cores batching the rollouts buys nothing, and the diagnostic's one pass per (teacher, "
          "rollout) loses nothing; a GPU was not measured.")
    print("\nThe GSM8K cost rows (issue 29, item 5; `benchmarks/test_bench_gsm8k_cost.py`): `opd run --task gsm8k "
          "--student qwen2.5-coder-0.5b --teacher self:correct-demo --teacher self` at the sizes in the details "
          "(questions, G = `rollouts`, B = `nodes_per_window`, K = `top_k`, M = `continuations`, "
          "`max_new_tokens`; set by `$OPD_BENCH_GSM8K_<NAME>`), in-process, no reuse cache, the student loaded "
          "beforehand. `gsm8k_generation_vs_plain_batched_generate`: the run's generated tokens per wall second "
          "(METHOD's windows, the whole run) over plain batched `generate` replaying every generation call's shape "
          "(`engine_fraction`, A-B-A as the demo's row); `generation_only_fraction` counts only the seconds inside "
          "the pipeline's generation calls, `slot_utilization` the share of the batches' row-steps that decoded "
          "a row (below 1 where a call's last rows decode nearly alone). `gsm8k_informative_nodes_per_cpu_minute`: "
          "per `--selection` x `--depth-windows` (keys `<selection>_<layout>_*`), informative nodes per CPU-minute "
          "of the whole run, generated tokens per informative node, tokens of rollouts, continuations and "
          "screening, and `capped_token_share`: the share of generated tokens in rows that ran to their token cap "
          "without an answer or EOS (such a row is graded on the last number it wrote), and `repeated_state_nodes`: "
          "nodes at a state (question and response prefix) a node of an earlier rollout already branches from "
          "(position 0 of every rollout is one state), whose continuations re-estimate S where it is already being "
          "estimated. Measured alone at the file's default sizes (2 questions, G=2; 21.8 minutes): "
          "`docs/measurements/gsm8k-cost.md` reads the figures per selection and layout.")
    print("\nNot benchmarked here: GPU runs (no GPU was lent to this session).")
    print("\nRegenerate: `python -m pytest benchmarks --benchmark-only --benchmark-json=.benchmarks/latest.json && "
          "python benchmarks/report.py .benchmarks/latest.json > docs/benchmarks.md` (later JSON files given after "
          "it replace the rows they hold, each row keeping its own date); `python benchmarks/report.py --update "
          "docs/benchmarks.md NEW.json` replaces only the rows NEW.json measured and keeps the rest of this file.")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:  # report.py --update docs/benchmarks.md NEW.json ...: rewrite those rows only
        target = sys.argv[2]
        text = update(open(target).read(), sys.argv[3:])
        open(target, "w").write(text)
    else:
        main(sys.argv[1:])
