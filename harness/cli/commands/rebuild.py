"""``opd rebuild RUN_DIR``: rewrite a run's merged records (nodes.parquet, questions.parquet) from its parts.

The merged files are a concatenation of ``RUN_DIR/parts/``, one pair of files per question; when a merged file is
damaged (a partial copy, a power loss) this rebuilds it without a model or data. Damaged parts are moved to
``parts/damaged/`` first; running the ``opd run`` command that made the run again redoes their questions.
"""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("rebuild", help="rewrite a run's nodes.parquet and questions.parquet from its parts/")
    parser.add_argument("run_dir", type=Path)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.workflows.runner import rebuild_records

    merged, set_aside = rebuild_records(args.run_dir)
    console.print(f"Rebuilt {args.run_dir / 'nodes.parquet'} and questions.parquet from {merged} question part(s).",
                  highlight=False)
    if set_aside:
        names = ", ".join(str(path.relative_to(args.run_dir)) for path in set_aside)
        console.print(f"[yellow]Set aside {len(set_aside)} damaged part file(s)[/]: {names}. Their questions are "
                      f"missing from the records until the `opd run` command that made this run is run again (it "
                      f"redoes exactly those; its settings are in {args.run_dir / 'run.json'}).", highlight=False)
    return 0
