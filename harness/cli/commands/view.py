"""``opd view RUN_DIR --question ID``: one question's rollouts as a self-contained HTML page, tokens coloured by
alignment, a click on a token shows its support with p, q, S_hat and g* (:mod:`harness.render.viewer`)."""
from __future__ import annotations

from pathlib import Path


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


def handle(args, console) -> int:
    from harness.cli.options import check_losses
    from harness.storage.records import load_run
    from harness.storage.run_meta import RunMeta
    from harness.render.viewer import render, student_tokenizer

    check_losses([args.loss])  # unknown: the registry's error with "did you mean"
    nodes, questions, run_json = load_run(args.run_dir)
    run = RunMeta.of(run_json)
    tokenizer = None if args.no_tokenizer else student_tokenizer(run)
    try:
        page = render(nodes, questions, args.question, teacher=args.teacher, loss=args.loss, tokenizer=tokenizer,
                      jsd_beta=run.settings.jsd_beta)
    except KeyError as error:
        console.print(f"[bold red]error:[/] {error.args[0]}", highlight=False)
        return 2
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.question)
    out = args.out or args.run_dir / f"view-{safe}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    console.print(f"wrote [cyan]{out}[/]")
    return 0
