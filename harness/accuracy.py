"""``opd accuracy``: how often the student, and each teacher answering with its own context, solves the task.

A teacher is only useful for distillation if its context helps; this measures that directly. Each *condition*
answers every question: the student with its own prompt (the baseline row), and each teacher's model with the
teacher's context prompt, built as ``teacher.context(ContextInputs(task, question, rollout_id=-1, rollouts=[]))``.
No student rollouts exist here, so a builder that needs them may return None: that question then counts as
"context unavailable" for the teacher and is left out of its accuracy (the count is reported).

Default decoding is greedy (one answer per question); ``samples=K`` draws K answers at temperature 1 and averages.
Per condition: accuracy, a Wilson 95% interval and a paired McNemar test against the student's row; plus a
difficulty breakdown by ``meta["group"]`` (MMLU), by ``meta["year"]`` range (AIME), and by the student's own pass
rate over its K samples. Statistics come from statsmodels, tables from tabulate (md/csv) and rich (terminal).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.data import resolve_data_dir
from harness.generation import Branch, generate_branches, make_generator, prefill, rows_per_batch
from harness.models import LoadedModel, load_model
from harness.prompting import chat_prompt_ids
from harness.runner import ConfigError
from harness.task import Question, Task, resolve_task
from harness.teacher import ContextInputs, Teacher, resolve_teacher

# a temperature this small makes sample_tokens' softmax one-hot on the argmax: greedy decoding through the same
# batched sampler (an exact tie would be split by the uniform draw, which is still deterministic per seed)
GREEDY_TEMPERATURE = 1e-6
SAMPLING_TEMPERATURE = 1.0
STUDENT_CONDITION = "student"
FORMATS = ("rich", "md", "csv", "json")
ALPHA = 0.05  # 95% intervals
# statsmodels' own advice: the chi-square approximation is poor below ~25 discordant pairs, use the binomial test
EXACT_MCNEMAR_BELOW = 25
# AIME started in 1983; ranges follow its eras of difficulty (early, 2000s, 2010s, recent)
YEAR_RANGES = ((1983, 1999), (2000, 2009), (2010, 2019), (2020, None))
PASS_RATE_BINS = ("0 (never)", "(0, 0.5)", "[0.5, 1)", "1 (always)")


class AccuracyError(ConfigError):
    """Invalid ``opd accuracy`` settings; the message says what to change (the CLI prints it as a known error)."""


@dataclass(frozen=True)
class AccuracyConfig:
    task: str
    student: str
    teachers: tuple[str, ...] = ()
    limit: int | None = None
    samples: int | None = None  # None: greedy, one answer; K: K samples at temperature 1
    data_dir: str | None = None
    seed: int = 0
    device: str | None = None

    @property
    def n_samples(self) -> int:
        return self.samples or 1

    @property
    def temperature(self) -> float:
        return GREEDY_TEMPERATURE if self.samples is None else SAMPLING_TEMPERATURE

    @property
    def decoding(self) -> str:
        return "greedy" if self.samples is None else f"{self.samples} samples at T={SAMPLING_TEMPERATURE:g}"

    def validate(self) -> None:
        problems = []
        if self.limit is not None and self.limit < 1:
            problems.append(f"--limit must be a positive number of questions (got {self.limit})")
        if self.samples is not None and self.samples < 1:
            problems.append(f"--samples must be at least 1 (got {self.samples})")
        if len(set(self.teachers)) != len(self.teachers):
            problems.append("a teacher is listed twice")
        if STUDENT_CONDITION in self.teachers:
            problems.append(f"{STUDENT_CONDITION!r} is the baseline row already; it is not a teacher spec")
        if problems:
            raise AccuracyError("Invalid accuracy settings: " + "; ".join(problems) + ".")


@dataclass(frozen=True)
class Condition:
    """One row of the report: who answers (``model``) and with which prompt (``teacher``'s context or the task's)."""

    name: str
    model: str
    teacher: Teacher | None = None

    def prompt(self, task: Task, question: Question) -> str | None:
        if self.teacher is None or self.teacher.context is None:
            return question.prompt
        return self.teacher.context(ContextInputs(task=task, question=question, rollout_id=-1, rollouts=[]))


@dataclass(frozen=True)
class Answer:
    """One sampled answer to one question under one condition."""

    response: str
    extracted: str | None
    correct: bool
    finish_reason: str


# condition name -> question id -> the answers, or None where the condition's context is unavailable
Outcomes = Mapping[str, Mapping[str, Sequence[Answer] | None]]


@dataclass
class AccuracyReport:
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    breakdown: list[dict[str, Any]]
    notes: list[str]
    questions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, include_questions: bool = True) -> dict[str, Any]:
        data = {"config": self.config, "rows": self.rows, "breakdown": self.breakdown, "notes": self.notes}
        if include_questions:
            data["questions"] = self.questions
        return data


# ---------------------------------------------------------------- answering


def answer_all(lm: LoadedModel, task: Task, items: Sequence[tuple[Question, str]], samples: int,
               temperature: float, seed: int, max_new_tokens: int | None = None) -> list[list[Answer]]:
    """``samples`` answers of ``lm`` to each ``(question, prompt)``, graded; questions share generation batches.

    Each prompt is prefilled once; many questions then decode together (ragged prefixes, one KV buffer), which on
    CPU is several times faster than one question at a time.
    """
    max_new = max_new_tokens or task.max_new_tokens
    prompts = [chat_prompt_ids(lm.tokenizer, prompt) for _, prompt in items]
    results: list[list[Answer]] = []
    start = 0
    while start < len(items):
        rows = rows_per_batch(lm.device, max(len(ids) for ids in prompts[start:]) + max_new)
        chunk = list(range(start, min(len(items), start + max(1, rows // samples))))
        prefilled = [prefill(lm, prompts[i]) for i in chunk]
        branches = [Branch(len(prompts[i]), None, max_new, source=k) for k, i in enumerate(chunk)
                    for _ in range(samples)]
        generated = generate_branches(
            lm, [cache for cache, _ in prefilled], branches, temperature=temperature,
            first_logits=torch.stack([logits[-1] for _, logits in prefilled]), is_final=task.answer_is_final,
            generator=make_generator(lm.device, seed, items[chunk[0]][0].id, "accuracy"),
        )
        for k, i in enumerate(chunk):
            question = items[i][0]
            answers = []
            for gen in generated[k * samples:(k + 1) * samples]:
                text = lm.tokenizer.decode(list(gen.tokens), skip_special_tokens=True)
                grade = task.grade(question, text)
                answers.append(Answer(text, grade.extracted, grade.correct, gen.finish_reason))
            results.append(answers)
        start = chunk[-1] + 1
    return results


def conditions_for(config: AccuracyConfig) -> list[Condition]:
    rows = [Condition(STUDENT_CONDITION, config.student)]
    for spec in config.teachers:
        teacher = resolve_teacher(spec)
        rows.append(Condition(spec, teacher.model or config.student, teacher))
    return rows


def evaluate(config: AccuracyConfig, progress: Callable[[int, int], None] | None = None) -> AccuracyReport:
    """Answer every question under every condition and summarise; ``progress(done, total)`` after each answer set."""
    config.validate()
    conditions = conditions_for(config)  # unknown teacher names fail here, before any model loads
    task = resolve_task(config.task)
    data_dir = resolve_data_dir(config.data_dir)
    questions = list(task.load(data_dir, config.limit))
    if not questions:
        raise AccuracyError(f"No questions selected for task {config.task!r}: check --limit and the data.")
    models = {c.model: load_model(c.model, config.device) for c in conditions}
    outcomes: dict[str, dict[str, list[Answer] | None]] = {}
    total, done = len(conditions) * len(questions), 0
    for condition in conditions:
        if condition.teacher is not None and condition.teacher.is_student_itself:
            # same model, same prompt, same seeds: the student's answers exactly, no need to generate them again
            outcomes[condition.name] = outcomes[STUDENT_CONDITION]
            done += len(questions)
            if progress:
                progress(done, total)
            continue
        per_question: dict[str, list[Answer] | None] = {}
        items = []
        for question in questions:
            prompt = condition.prompt(task, question)
            if prompt is None:
                per_question[question.id] = None
            else:
                items.append((question, prompt))
        answers = answer_all(models[condition.model], task, items, config.n_samples, config.temperature, config.seed)
        for (question, _), question_answers in zip(items, answers):
            per_question[question.id] = question_answers
        done += len(questions)
        if progress:
            progress(done, total)
        outcomes[condition.name] = {q.id: per_question[q.id] for q in questions}
    report = summarise(questions, conditions, outcomes, config.n_samples)
    report.config = {**asdict(config), "task_name": task.name, "decoding": config.decoding,
                     "temperature": config.temperature, "data_source": str(data_dir) if data_dir else "hub",
                     "questions": len(questions)}
    return report


# ---------------------------------------------------------------- statistics


def wilson_interval(successes: float, n: int) -> tuple[float | None, float | None]:
    """Wilson 95% interval for ``successes`` out of ``n`` (None, None when n == 0)."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return None, None
    low, high = proportion_confint(successes, n, alpha=ALPHA, method="wilson")
    return float(low), float(high)


def paired_counts(base: Mapping[str, Sequence[Answer] | None], other: Mapping[str, Sequence[Answer] | None]):
    """2x2 table ``[[both right, only base right], [only other right, both wrong]]`` over (question, sample) pairs
    where both conditions answered; sample k of one condition is paired with sample k of the other."""
    table = [[0, 0], [0, 0]]
    for qid, base_answers in base.items():
        other_answers = other.get(qid)
        if base_answers is None or other_answers is None:
            continue
        for a, b in zip(base_answers, other_answers):
            table[0 if a.correct else 1][0 if b.correct else 1] += 1
    return table


def mcnemar_test(table: Sequence[Sequence[int]]) -> tuple[float | None, str | None]:
    """McNemar p-value and which test (exact binomial or chi-square) for a paired 2x2 table."""
    from statsmodels.stats.contingency_tables import mcnemar

    discordant = table[0][1] + table[1][0]
    if discordant == 0:
        return 1.0, "exact"  # no disagreement at all: nothing to test, and the chi-square statistic is 0/0
    exact = discordant < EXACT_MCNEMAR_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    return float(result.pvalue), "exact" if exact else "chi2"


def pass_rate(answers: Sequence[Answer]) -> float:
    return sum(a.correct for a in answers) / len(answers)


def year_range(year: Any) -> str:
    value = int(year)
    for low, high in YEAR_RANGES:
        if value >= low and (high is None or value <= high):
            return f"{low}-{high}" if high is not None else f"{low}+"
    return f"before {YEAR_RANGES[0][0]}"


def pass_rate_bin(rate: float) -> str:
    if rate == 0:
        return PASS_RATE_BINS[0]
    if rate == 1:
        return PASS_RATE_BINS[3]
    return PASS_RATE_BINS[1] if rate < 0.5 else PASS_RATE_BINS[2]


def difficulty_bins(question: Question, student_answers: Sequence[Answer] | None, samples: int) -> list[tuple[str, str]]:
    """(dimension, bin) pairs for one question: subject group, year range, and the student's pass rate."""
    bins = []
    if "group" in question.meta:
        bins.append(("group", str(question.meta["group"])))
    if "year" in question.meta:
        bins.append(("year", year_range(question.meta["year"])))
    if samples >= 2 and student_answers:
        bins.append(("student pass rate", pass_rate_bin(pass_rate(student_answers))))
    return bins


def _bin_order(dimension: str, name: str) -> tuple:
    if dimension == "student pass rate":
        return (PASS_RATE_BINS.index(name),)
    return (name,)  # group names alphabetically; "1983-1999" < "2000-2009" < ... < "2020+" as strings too


def summarise(questions: Sequence[Question], conditions: Sequence[Condition], outcomes: Outcomes,
              samples: int) -> AccuracyReport:
    """Rows, difficulty breakdown and notes from the graded answers (no model work: testable on its own)."""
    base = outcomes[STUDENT_CONDITION]
    rows = []
    for condition in conditions:
        per_question = outcomes[condition.name]
        answered = [per_question[q.id] for q in questions if per_question[q.id] is not None]
        n = len(answered)
        # the question is the unit: Wilson on n questions with a fractional success count (the sum of per-question
        # pass rates). Counting n*K samples as independent would overstate the precision of K correlated samples.
        successes = sum(pass_rate(a) for a in answered)
        low, high = wilson_interval(successes, n)
        row = {
            "condition": condition.name, "model": condition.model, "n": n,
            "unavailable": len(questions) - n, "samples": samples,
            "accuracy": successes / n if n else None, "ci_low": low, "ci_high": high,
            "delta": None, "only_teacher_right": None, "only_student_right": None,
            "mcnemar_p": None, "mcnemar_test": None,
        }
        if condition.name != STUDENT_CONDITION:
            table = paired_counts(base, per_question)
            row["mcnemar_p"], row["mcnemar_test"] = mcnemar_test(table)
            row["only_teacher_right"], row["only_student_right"] = table[1][0], table[0][1]
            paired = [q.id for q in questions if base[q.id] is not None and per_question[q.id] is not None]
            if paired:
                row["delta"] = sum(pass_rate(per_question[i]) - pass_rate(base[i]) for i in paired) / len(paired)
        rows.append(row)

    cells: dict[tuple[str, str], list[str]] = {}
    for question in questions:
        for key in difficulty_bins(question, base[question.id], samples):
            cells.setdefault(key, []).append(question.id)
    breakdown = []
    for dimension, name in sorted(cells, key=lambda k: (k[0], _bin_order(*k))):
        ids = cells[(dimension, name)]
        entry: dict[str, Any] = {"dimension": dimension, "bin": name, "n": len(ids)}
        for condition in conditions:
            answered = [outcomes[condition.name][i] for i in ids if outcomes[condition.name][i] is not None]
            entry[condition.name] = sum(pass_rate(a) for a in answered) / len(answered) if answered else None
        breakdown.append(entry)

    notes = ["accuracy over questions answered; 95% Wilson interval with the question as the unit"]
    if samples >= 2:
        notes.append(f"{samples} samples per question: McNemar pairs sample k of the student with sample k of the "
                     f"teacher on the same question; pairs within a question are correlated, so p is optimistic")
        notes.append("student pass-rate bins: the student's accuracy in each bin is fixed by how the bin is defined; "
                     "compare the teachers' accuracy against it")
    else:
        notes.append("student pass-rate bins need --samples >= 2 (one greedy answer gives only 0 or 1); not shown")
    if not any(dim in ("group", "year") for dim, _ in cells):
        notes.append("no subject group or year in this task's questions: no group/year breakdown")
    for row in rows:
        if row["unavailable"]:
            notes.append(f"{row['condition']}: context unavailable for {row['unavailable']} of {len(questions)} "
                         f"questions (left out of its accuracy and of the paired test)")
    question_rows = [
        {"question_id": q.id, "gold": q.gold, "condition": c.name,
         "answers": None if outcomes[c.name][q.id] is None else [asdict(a) for a in outcomes[c.name][q.id]]}
        for c in conditions for q in questions
    ]
    return AccuracyReport(config={}, rows=rows, breakdown=breakdown, notes=notes, questions=question_rows)


# ---------------------------------------------------------------- output


def format_report(report: AccuracyReport, fmt: str) -> str:
    """``md``: two GitHub tables and the notes; ``csv``: two tables separated by a blank line, notes as ``#`` lines;
    ``json``: config, rows, breakdown and notes (per-question answers only in ``--out`` files)."""
    from harness.tables import format_table

    if fmt == "json":
        return json.dumps(report.to_dict(include_questions=False), indent=2, allow_nan=False, default=str)
    if fmt not in ("md", "csv"):
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    tables = [format_table(_frame(report.rows), fmt)]
    if report.breakdown:
        tables.append(format_table(_frame(report.breakdown), fmt))
    if fmt == "md":
        return "\n\n".join(tables) + "\n\n" + "\n".join(f"- {note}" for note in report.notes)
    return "\n".join(t.rstrip("\n") + "\n" for t in tables) + "\n".join(f"# {note}" for note in report.notes)


def _frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records -> DataFrame where only true float columns are float: pandas would turn a count column with a
    missing value (the student row has no McNemar counts) into floats printed as "2.000", and None into NaN."""
    frame = pd.DataFrame(records)
    for name in frame.columns:
        values = [record.get(name) for record in records]
        if not all(isinstance(v, float) or v is None for v in values):
            frame[name] = pd.Series(values, dtype=object, index=frame.index)
    return frame


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_rich(report: AccuracyReport, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    config = report.config
    table = Table(title=f"accuracy · {config.get('task_name', config.get('task'))} · student {config.get('student')} "
                        f"· {config.get('decoding', '')}")
    for name, justify in (("condition", "left"), ("model", "left"), ("n", "right"), ("accuracy", "right"),
                          ("95% CI", "right"), ("Δ vs student", "right"), ("+/-", "right"), ("McNemar p", "right")):
        table.add_column(name, justify=justify)
    for row in report.rows:
        ci = "—" if row["ci_low"] is None else f"{row['ci_low']:.3f}–{row['ci_high']:.3f}"
        n = str(row["n"]) + (f" ({row['unavailable']} n/a)" if row["unavailable"] else "")
        flips = "" if row["only_teacher_right"] is None else f"+{row['only_teacher_right']}/-{row['only_student_right']}"
        delta = "" if row["delta"] is None else f"{row['delta']:+.3f}"
        p = "" if row["mcnemar_p"] is None else f"{row['mcnemar_p']:.3f} ({row['mcnemar_test']})"
        table.add_row(row["condition"], row["model"], n, _cell(row["accuracy"]), ci, delta, flips, p)
    console.print(table)
    if report.breakdown:
        names = [row["condition"] for row in report.rows]
        breakdown = Table(title="accuracy by difficulty")
        for name in ("dimension", "bin", "n", *names):
            breakdown.add_column(name, justify="left" if name in ("dimension", "bin") else "right")
        for entry in report.breakdown:
            breakdown.add_row(*(_cell(entry[name]) for name in ("dimension", "bin", "n", *names)))
        console.print(breakdown)
    for note in report.notes:
        console.print(f"[dim]· {note}[/]", highlight=False)


def write_report(report: AccuracyReport, path: Path) -> None:
    from harness.records import write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(report.to_dict(include_questions=True), path)
