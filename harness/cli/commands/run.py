"""``opd run``: the diagnostic of one (task, student) with its teachers, written to a run directory; without any
selection flag, a small BoolQ demo (:data:`DEMO_ARGS`)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.api.method import Settings
from harness.cli.options import add_cache_arguments, add_threads_argument, cache_from, quiet_libraries

# `opd run` without any selection flag (--task, --student, --teacher, --limit or a METHOD knob) runs this demo
# (the screened selection: about 2.5x the informative nodes per generated token of METHOD's windows on BoolQ)
DEMO_ARGS = ["--task", "boolq", "--student", "smollm2-135m", "--teacher", "self:correct-demo", "--teacher", "self",
             "--limit", "3", "--rollouts", "4", "--nodes-per-window", "1", "--continuations", "2",
             "--selection", "screened"]
SELECTION_FLAGS = ("--task", "--student", "--teacher", "--limit", "--questions", "--rollouts", "--temperature",
                   "--nodes-per-window", "--top-k", "--continuations", "--priority", "--jsd-beta", "--max-new-tokens",
                   "--selection", "--depth-windows")


def _question_range(text: str) -> tuple[int, int]:
    from harness.api.errors import ConfigError
    from harness.storage.chunks import parse_range

    try:
        return parse_range(text)
    except ConfigError as error:  # argparse prints it as the usage error (exit 2), before anything runs
        raise argparse.ArgumentTypeError(str(error)) from None


def register(commands) -> None:
    run = commands.add_parser("run", help="run the diagnostic (no arguments: a small BoolQ demo)")
    run.add_argument("--task", default="boolq", help="task name (opd list tasks)")
    run.add_argument("--student", default="smollm2-135m", help="student model spec (opd list models)")
    run.add_argument("--teacher", action="append", dest="teachers", metavar="SPEC",
                     help="teacher spec, repeatable (opd list teachers); default: self:correct-demo and self")
    run.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    run.add_argument("--questions", type=_question_range, default=None, metavar="A:B",
                     help="a chunk: questions A to B-1 of the task's order (0-based), with the records they get in a "
                          "run over the whole task; chunk runs merge with `opd compare --combine` (not with --limit)")
    run.add_argument("--data-dir", default=None,
                     help="local dataset root laid out like shared/data (default: $OPD_DATA_DIR, ./data, "
                          "../shared/data, else the public hub dataset)")
    run.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<task>_<student>_<time>)")
    run.add_argument("--overwrite", action="store_true", help="replace the records in an existing --out")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default=None, help="auto (default), cpu or cuda[:n]")
    run.add_argument("--trust-remote-code", action="store_true",
                     help="allow hub models to run their own Python code (off by default)")
    run.add_argument("--summarizer", default=None, metavar="MODEL",
                     help="model that writes self:summary's summaries: short for --teacher self:summary:MODEL "
                          "(default: $OPD_SUMMARIZER, else the student itself)")
    run.add_argument("--include-path", action="append", default=[], metavar="DIR",
                     help="extra lm-eval task YAML directory for --task lm_eval:<name> (repeatable)")
    add_cache_arguments(run)
    run.add_argument("--backend", default="transformers",
                     help="who generates rollouts and continuations: transformers (default) or vllm (GPU, "
                          "pip install 'opd-harness[vllm]')")
    knobs = run.add_argument_group("METHOD knobs (defaults are METHOD.md's)")
    method = Settings()  # the one owner of the knobs' defaults
    knobs.add_argument("--rollouts", type=int, default=method.rollouts, metavar="G",
                       help="student samples per question")
    knobs.add_argument("--temperature", type=float, default=method.temperature, metavar="T")
    knobs.add_argument("--nodes-per-window", type=int, default=method.nodes_per_window, metavar="B")
    knobs.add_argument("--top-k", type=int, default=method.top_k, metavar="K",
                       help="top-K student tokens in the support")
    knobs.add_argument("--continuations", type=int, default=method.continuations, metavar="M",
                       help="forced continuations per token")
    knobs.add_argument("--priority", default=method.priority, help="node priority: entropy | disagreement")
    knobs.add_argument("--selection", default=method.selection,
                       help="node selection: windows (METHOD: top-B per depth window) | screened (candidates "
                            "screened with one cheap continuation, S_hat from fresh continuations only)")
    knobs.add_argument("--depth-windows", default=method.depth_windows,
                       help="depth windows of either selection: exponential (METHOD: [0,1), [1,2), [2,4), ...) | "
                            "even (as many windows, of equal width in depth_norm: nodes cover the whole chain)")
    knobs.add_argument("--jsd-beta", type=float, default=method.jsd_beta)
    knobs.add_argument("--max-new-tokens", type=int, default=method.max_new_tokens, help="default: the task's")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_argument(run)
    run.set_defaults(handler=handle)


def config_from(args: argparse.Namespace):
    from harness.workflows.runner import RunConfig

    settings = Settings(
        rollouts=args.rollouts, temperature=args.temperature, nodes_per_window=args.nodes_per_window,
        top_k=args.top_k, continuations=args.continuations, priority=args.priority, jsd_beta=args.jsd_beta,
        max_new_tokens=args.max_new_tokens, selection=args.selection, depth_windows=args.depth_windows,
    )
    from harness.cli.options import include_paths_from, with_summarizer

    # --summarizer and --include-path reach the factories as arguments (the environment is only ever read)
    teachers = with_summarizer(args.teachers or ("self:correct-demo", "self"), args.summarizer)
    return RunConfig(task=args.task, student=args.student, teachers=teachers, limit=args.limit,
                     questions=args.questions,
                     data_dir=args.data_dir, seed=args.seed, settings=settings, device=args.device,
                     trust_remote_code=args.trust_remote_code, backend=args.backend, threads=args.threads,
                     include_paths=include_paths_from(args.include_path))


def handle(args: argparse.Namespace, console) -> int:
    from harness.render.progress import RichProgress
    from harness.render.tables import print_depth, print_rich
    from harness.reports.depth import depth_summaries
    from harness.reports.leaderboard import leaderboard
    from harness.storage.records import load_run
    from harness.storage.run_meta import RunMeta
    from harness.workflows.runner import default_out_dir, run

    quiet_libraries()
    config = config_from(args)
    out = args.out = args.out or default_out_dir(config)  # kept on args: the resume command names it
    started = time.perf_counter()
    cache = cache_from(args)
    if args.quiet:
        meta = run(config, out, overwrite=args.overwrite, cache=cache)
    else:
        with RichProgress() as progress:
            meta = run(config, out, progress, overwrite=args.overwrite, cache=cache)
    written = RunMeta.of(meta)
    notes = written.session
    if notes.added_teachers:
        console.print(f"Added {', '.join(notes.added_teachers)} to the run in {out}.")
    nodes, _, _ = load_run(out)
    print_rich(leaderboard(nodes), console)
    print_depth(depth_summaries(nodes), console)  # the leaderboard's footer, the run's summary: where the nodes are
    counts, timings = written.counts, written.timings
    rate = timings["nodes_per_minute"]
    rate_text = f"{rate:.1f} nodes/min" if rate is not None else "no node sampled now: resumed or reused"
    console.print(
        f"[bold]{counts['nodes']}[/] nodes diagnosed ({counts['informative_nodes']} informative) on "
        f"{counts['questions']} questions x {config.settings.rollouts} rollouts in {time.perf_counter() - started:.0f} s "
        f"({rate_text}). Records: [cyan]{out}[/] "
        f"(nodes.parquet, questions.parquet, run.json). Table again: opd leaderboard {out}"
    )
    sampled_hits = written.reused_questions[1]
    if sampled_hits or any(notes.teacher_hits.values()):
        reused = ", ".join(f"{name} ({n})" for name, n in notes.teacher_hits.items()) or "none"
        console.print(f"Reused from the cache ({notes.cache}): sampled work of {sampled_hits} question(s); "
                      f"rows of teachers {reused}; generated {counts['generated_tokens_this_session']} new tokens.",
                      highlight=False)
    if notes.set_aside_parts:
        console.print(f"[yellow]Set aside {len(notes.set_aside_parts)} damaged part file(s)[/] (unreadable: "
                      f"truncated or emptied) in {out}: {', '.join(notes.set_aside_parts)}. Their questions were "
                      f"redone; the files are kept for inspection and can be deleted.", highlight=False)
    if notes.cache_write_error:
        console.print(f"[yellow]The reuse cache was not fully written[/] ({notes.cache_write_error}): this run's "
                      f"records are complete, but adding a teacher later recomputes the work not cached.", highlight=False)
    return 0
