"""``opd grade TASK --gold G --response TEXT``: grade one response with a task's own grader, printing JSON.

Useful to check what a grader extracts from a given response without loading data or a model. The question is
synthetic: only its gold answer (and, for multiple choice, its choices) matter to the graders.
"""
from __future__ import annotations

import argparse
import json

from harness.api.errors import ConfigError
from harness.api.task import Question, resolve_task

# Multiple-choice graders can also match a response that repeats a choice's text; without --choices there is none.
PLACEHOLDER_CHOICES = ("choice A", "choice B", "choice C", "choice D")


def register(commands) -> None:
    parser = commands.add_parser("grade", help="grade one response with a task's grader (prints JSON)")
    parser.add_argument("task", help="task spec (opd list tasks), e.g. mmlu or aime24")
    parser.add_argument("--gold", required=True,
                        help='the gold answer as the dataset spells it: "yes"/"true"/1, "C"/"c"/2 (0-based), "070"')
    parser.add_argument("--response", required=True, help="the full response text to grade")
    parser.add_argument("--choices", default=None, metavar='"a|b|c|d"',
                        help="multiple-choice options separated by | (default: placeholders)")
    parser.set_defaults(handler=handle)


def synthetic_question(gold: str, choices: list[str]) -> Question:
    return Question(id="grade-cli", prompt="", gold=gold, demonstration="", meta={"choices": choices})


def handle(args: argparse.Namespace, console) -> int:
    task = resolve_task(args.task)
    from tasks.lm_eval import LmEvalTask

    if isinstance(task, LmEvalTask):  # its grader is lm-eval's process_results, which reads the source document
        raise ConfigError(
            f"opd grade cannot grade {args.task} from a gold answer alone: lm-eval tasks are graded by lm-eval's "
            f"own process_results, which reads the task's source document (every field of its dataset row), and "
            f"--gold gives only one of them. Grade a response of a run instead (its questions carry the document: "
            f"opd view RUN), or use a built-in task with the same answer format (opd list tasks).")
    choices = [c.strip() for c in args.choices.split("|")] if args.choices is not None else list(PLACEHOLDER_CHOICES)
    grade = task.grade(synthetic_question(args.gold, choices), args.response)
    # plain print, not the rich console: the output is meant for jq and scripts
    print(json.dumps({"task": task.name, "extracted": grade.extracted, "gold": args.gold, "correct": grade.correct}))
    return 0
