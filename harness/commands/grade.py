"""``opd grade TASK --gold G --response TEXT``: grade one response with a task's own grader, printing JSON.

Useful to check what a grader extracts from a given response without loading data or a model. The question is
synthetic: only its gold answer (and, for multiple choice, its choices) matter to the graders.
"""
from __future__ import annotations

import argparse
import json

from harness.task import Question, resolve_task

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
    choices = [c.strip() for c in args.choices.split("|")] if args.choices is not None else list(PLACEHOLDER_CHOICES)
    grade = task.grade(synthetic_question(args.gold, choices), args.response)
    # plain print, not the rich console: the output is meant for jq and scripts
    print(json.dumps({"task": task.name, "extracted": grade.extracted, "gold": args.gold, "correct": grade.correct}))
    return 0
