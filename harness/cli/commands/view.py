"""``opd view RUN_DIR --question ID``: one question's rollouts as a self-contained HTML page, tokens coloured by
alignment, a click on a token shows its support with p, q, S_hat and g* (:mod:`harness.render.viewer`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def register(commands) -> None:
    parser = commands.add_parser("view", help="HTML view of one question's rollouts: tokens coloured by alignment, "
                                              "click one for its p, q, S_hat and g*")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--question", required=True, help="question_id")
    parser.add_argument("--teacher", default=None, help="teacher spec (default: the run's first)")
    parser.add_argument("--loss", default="rkl", help="rkl (default), fkl, jsd, sampled or grpo")
    parser.add_argument("--out", type=Path, default=None, help="HTML file (default RUN_DIR/view-QUESTION.html)")
    parser.add_argument("--no-tokenizer", action="store_true",
                        help="do not load the student tokenizer: show the response text, positions by index")
    parser.set_defaults(handler=handle)


def student_tokenizer(run) -> Any:
    """The student's tokenizer (:func:`harness.sampling.models.load_model`), or None when it cannot be loaded."""
    spec = run.student
    if not spec:
        return None
    try:
        from harness.sampling.models import load_model

        return load_model(spec).tokenizer
    except Exception:  # noqa: BLE001 -- any failure (no weights offline, no torch...) means: fall back to text
        return None


def handle(args, console) -> int:
    from harness.cli.options import check_losses
    from harness.diagnostic.losses import RecordedDirections
    from harness.render.viewer import render
    from harness.storage.records import load_run
    from harness.storage.run_meta import RunMeta

    check_losses([args.loss])  # unknown: the registry's error with "did you mean"
    nodes, questions, run_json = load_run(args.run_dir)
    run = RunMeta.of(run_json)
    tokenizer = None if args.no_tokenizer else student_tokenizer(run)
    try:
        page = render(nodes, questions, args.question, directions=RecordedDirections(run.settings.jsd_beta),
                      teacher=args.teacher, loss=args.loss, tokenizer=tokenizer)
    except KeyError as error:
        console.print(f"[bold red]error:[/] {error.args[0]}", highlight=False)
        return 2
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.question)
    out = args.out or args.run_dir / f"view-{safe}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    console.print(f"wrote [cyan]{out}[/]")
    return 0
