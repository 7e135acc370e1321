"""``opd accuracy``: how often the student, and each teacher answering with its own context, solves the task.

A teacher is only useful for distillation if its context helps; this measures that directly. The student answers
every question first: one greedy answer, or ``samples=K`` answers at temperature 1. Each teacher then answers once
per student answer ``k``, shown exactly the prompt ``opd run`` builds when it scores student rollout ``k``:
``teacher_prompt(teacher, ContextInputs(task, question, rollout_id=k, rollouts=<the student's answers>, student,
seed, state))`` (``harness.sampling.teacher``). So ``self:self-demo`` and ``self:correct-wrong`` show the student's *other*
answers (never answer ``k``), ``self:summary`` is written by the student or by the summariser (``--summarizer`` /
``$OPD_SUMMARIZER``), and ``self:larger-demo`` and ``idp:`` work as in a run, with one :class:`RunState` per
evaluation. A context built from other answers needs ``samples >= 2``: it is refused before any work otherwise.
Where a context cannot be built for answer ``k`` (no *other* correct answer, for self-demo), that answer is missing;
a question counts where at least one answer exists.

Statistics, the question being the unit (METHOD, Statistics):

* **accuracy**: the mean over questions of each question's pass rate; a Wilson 95% interval on n questions with the
  fractional success count (K correlated samples of one question are not K independent trials).
* **unparsed**: the mean over the same questions of each question's share of answers with no parseable answer (a
  third outcome, METHOD, Categorical answers: not correct, but not a wrong answer either), so a condition's answers
  split into ``accuracy``, ``unparsed`` and ``1 - accuracy - unparsed`` wrong answers.
* **paired comparison** with the student: per question, the condition's pass rate minus the student's pass rate on
  the *same* answers ``k`` (``student_same``: the student's accuracy on them); ``delta`` is the mean of those
  differences and ``p_sign_flip`` the two-sided sign-flip test of them (``harness.reports.stats.sign_flip_test``). With one
  answer per question this is McNemar's exact test (the sign test on the discordant questions), which is why no
  separate McNemar is reported: pairing sample ``k`` with sample ``k`` across K samples would treat correlated
  samples of one question as independent pairs.
* **breakdown** by subject group (MMLU) and year range (AIME) over all answers, and by the student's pass rate with
  the samples split in two: a question is binned by the student's pass rate on its first ``K // 2`` samples, and
  every condition (the student included) is measured on the other samples only. Binning and measuring on the same
  samples shows regression to the mean: a teacher exactly as good as the student would seem to gain on "never
  solved" questions and lose on "always solved" ones.

Statistics come from statsmodels and ``harness.reports.stats``, tables from tabulate (md/csv) and rich (terminal).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from harness.api.data import resolve_data_dir
from harness.api.errors import ConfigError
from harness.api.method import ALPHA as METHOD_ALPHA
from harness.api.progress import NoProgress, Progress
from harness.api.task import Question, Task, resolve_task
from harness.reports.accuracy_report import STUDENT_CONDITION, AccuracyReport, unparsed_share
from harness.sampling.generation import Branch, Decoding, generate_branches, make_generator, prefill, rows_per_batch
from harness.sampling.models import LoadedModel, device_problem
from harness.sampling.prompting import chat_prompt_ids
from harness.sampling.teacher import (
    ContextInputs,
    RolloutView,
    RunState,
    Teacher,
    resolve_teacher,
    teacher_prompt,
)

# a temperature this small makes sample_tokens' softmax one-hot on the argmax: greedy decoding through the same
# batched sampler (an exact tie would be split by the uniform draw, which is still deterministic per seed)
GREEDY_TEMPERATURE = 1e-6
SAMPLING_TEMPERATURE = 1.0
ANSWERS = "answers"  # the kind of work evaluate() reports: one per question and condition
ALPHA = METHOD_ALPHA  # 95% intervals
# AIME started in 1983; ranges follow its eras of difficulty (early, 2000s, 2010s, recent)
YEAR_RANGES = ((1983, 1999), (2000, 2009), (2010, 2019), (2020, None))
PASS_RATE_DIMENSION = "student pass rate"
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
    include_paths: tuple[str, ...] = ()  # lm-eval task YAML directories for lm_eval:<name> (--include-path)

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
        if device_problem(self.device):
            problems.append(device_problem(self.device))
        if problems:
            raise AccuracyError("Invalid accuracy settings: " + "; ".join(problems) + ".")


@dataclass(frozen=True)
class Condition:
    """One row of the report: who answers (``model``) and with which prompt (``teacher``'s context or the task's)."""

    name: str
    model: str
    teacher: Teacher | None = None

    @property
    def needs_other_answers(self) -> bool:
        """Its context is built from the student's other answers (``opd run``: the other rollouts)."""
        return self.teacher is not None and "rollouts" in self.teacher.needs

    @property
    def samples_needed(self) -> int:
        """The fewest answers per question that can ever build its context: the paired answer k is never shown,
        so one more than the other answers it shows (two for a correct and an incorrect one)."""
        if not self.needs_other_answers:
            return 1
        return 3 if "both outcomes" in self.teacher.needs else 2


@dataclass(frozen=True)
class Answer:
    """One sampled answer to one question under one condition."""

    response: str
    extracted: str | None
    correct: bool
    finish_reason: str
    context_choice: str | None = None  # the context an ``idp:`` teacher chose for this answer


# condition name -> question id -> answer k for k in range(K), None where the condition's context could not be
# built for student answer k
Outcomes = Mapping[str, Mapping[str, Sequence[Answer | None]]]


# ---------------------------------------------------------------- answering


def answer_all(lm: LoadedModel, task: Task, items: Sequence[tuple[Question, str, int]], temperature: float,
               seed: int, max_new_tokens: int | None = None) -> list[list[Answer]]:
    """For each ``(question, prompt, n)``, ``n`` graded answers of ``lm`` to ``prompt``; items share batches.

    Each prompt is prefilled once; many prompts then decode together (ragged prefixes, one KV buffer), which on
    CPU is several times faster than one question at a time.
    """
    max_new = max_new_tokens or task.max_new_tokens
    prompts = [chat_prompt_ids(lm.tokenizer, prompt) for _, prompt, _ in items]
    results: list[list[Answer]] = []
    start = 0
    while start < len(items):
        rows = rows_per_batch(lm.device, max(len(ids) for ids in prompts[start:]) + max_new)
        chunk, used = [start], items[start][2]
        while chunk[-1] + 1 < len(items) and used + items[chunk[-1] + 1][2] <= rows:
            chunk.append(chunk[-1] + 1)
            used += items[chunk[-1]][2]
        prefilled = [prefill(lm, prompts[i]) for i in chunk]
        branches = [Branch(len(prompts[i]), None, max_new, source=j) for j, i in enumerate(chunk)
                    for _ in range(items[i][2])]
        decoding = Decoding(temperature, make_generator(lm.device, seed, items[chunk[0]][0].id, "accuracy"),
                            task.answer_is_final)
        generated = iter(generate_branches(lm, [cache for cache, _ in prefilled], branches, decoding,
                                           first_logits=torch.stack([logits[-1] for _, logits in prefilled])))
        for i in chunk:
            question, answers = items[i][0], []
            for _ in range(items[i][2]):
                gen = next(generated)
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


def check_samples(conditions: Sequence[Condition], samples: int) -> None:
    """Contexts built from the student's other answers need enough answers per question to ever be built."""
    needed = max((c.samples_needed for c in conditions), default=1)
    if samples >= needed:
        return
    needing = [c.name for c in conditions if c.samples_needed > samples]
    what = ("a correct and an incorrect one of the student's *other* answers" if needed == 3
            else "the student's *other* answers")
    raise AccuracyError(
        f"{', '.join(needing)} build{'s' if len(needing) == 1 else ''} the context from {what} to the question (as "
        f"`opd run` does from its other rollouts; answer k is never shown to the context paired with it), and "
        f"{samples} answer(s) per question can never give that: add --samples K with K >= {needed} (e.g. "
        f"--samples 4), or leave {'it' if len(needing) == 1 else 'them'} out (an idp: pool without "
        f"self-demo/correct-wrong, e.g. idp:correct-demo,summary, works with one answer).")


def context_inputs(task: Task, question: Question, student_answers: Sequence[Answer], k: int,
                   student: LoadedModel, seed: int, state: RunState) -> ContextInputs:
    """What a context builder sees when the teacher answers alongside student answer ``k``: the student's answers
    are the question's rollouts, answer ``k`` the scored one (the same fields ``opd run`` fills)."""
    views = [RolloutView(j, answer.response, answer.correct) for j, answer in enumerate(student_answers)]
    return ContextInputs(task, question, k, views, student=student, seed=seed, state=state)


def answer_condition(condition: Condition, lm: LoadedModel, task: Task, questions: Sequence[Question],
                     student_outcomes: Mapping[str, Sequence[Answer]], student: LoadedModel, config: AccuracyConfig,
                     state: RunState) -> dict[str, list[Answer | None]]:
    """The teacher's answer ``k`` to every question, next to student answer ``k`` (None where its context cannot
    be built). Answers whose prompts coincide (a context that does not depend on ``k``) are sampled together."""
    teacher = condition.teacher
    items: list[tuple[Question, str, int]] = []
    slots: list[tuple[str, list[tuple[int, str | None]]]] = []
    for question in questions:
        by_prompt: dict[str, list[tuple[int, str | None]]] = {}
        for k in range(config.n_samples):
            inputs = context_inputs(task, question, student_outcomes[question.id], k, student, config.seed, state)
            prompt = teacher_prompt(teacher, inputs)
            if prompt is not None:
                by_prompt.setdefault(prompt, []).append((k, teacher.choice(inputs) if teacher.choice else None))
        for prompt, ks in by_prompt.items():
            items.append((question, prompt, len(ks)))
            slots.append((question.id, ks))
    per_question: dict[str, list[Answer | None]] = {q.id: [None] * config.n_samples for q in questions}
    for (question_id, ks), answers in zip(slots, answer_all(lm, task, items, config.temperature, config.seed)):
        for (k, choice), answer in zip(ks, answers):
            per_question[question_id][k] = replace(answer, context_choice=choice)
    return per_question


def evaluate(config: AccuracyConfig, progress: Progress | None = None) -> AccuracyReport:
    """Answer every question under every condition and summarise; ``progress`` counts the ``"answers"`` (one per
    question and condition), advanced after each condition."""
    progress = progress or NoProgress()
    config.validate()
    conditions = conditions_for(config)  # unknown teacher names fail here, before any model loads
    check_samples(conditions, config.n_samples)
    task = resolve_task(config.task, config.include_paths)
    data_dir = resolve_data_dir(config.data_dir)
    questions = list(task.load(data_dir, config.limit))
    if not questions:
        raise AccuracyError(f"No questions selected for task {config.task!r}: check --limit and the data.")
    state = RunState()  # this evaluation's models, summaries, idp rankings: nothing shared with another
    models = {c.model: state.models.load(c.model, config.device) for c in conditions}
    student = models[config.student]
    outcomes: dict[str, dict[str, list[Answer | None]]] = {}
    progress.add_total(ANSWERS, len(conditions) * len(questions))
    for condition in conditions:
        if condition.teacher is None:
            answers = answer_all(student, task, [(q, q.prompt, config.n_samples) for q in questions],
                                 config.temperature, config.seed)
            outcomes[condition.name] = {q.id: list(a) for q, a in zip(questions, answers)}
        elif condition.teacher.is_student_itself:
            # same model, same prompt, same seeds: the student's answers exactly, no need to generate them again
            outcomes[condition.name] = outcomes[STUDENT_CONDITION]
        else:
            outcomes[condition.name] = answer_condition(condition, models[condition.model], task, questions,
                                                        outcomes[STUDENT_CONDITION], student, config, state)
        progress.advance(ANSWERS, len(questions))
    report = summarise(questions, conditions, outcomes, config.n_samples)
    report.config = {**asdict(config), "task_name": task.name, "decoding": config.decoding,
                     "temperature": config.temperature, "data_source": str(data_dir) if data_dir else "hub",
                     "questions": len(questions),
                     "variants": {c.name: c.teacher.variant for c in conditions if c.teacher and c.teacher.variant}}
    return report


# ---------------------------------------------------------------- statistics


def wilson_interval(successes: float, n: int) -> tuple[float | None, float | None]:
    """Wilson 95% interval for ``successes`` out of ``n`` (None, None when n == 0)."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return None, None
    low, high = proportion_confint(successes, n, alpha=ALPHA, method="wilson")
    return float(low), float(high)


def pass_rate(answers: Sequence[Answer | None]) -> float | None:
    """Share of correct answers among those that exist (None when none does)."""
    present = [a for a in answers if a is not None]
    return sum(a.correct for a in present) / len(present) if present else None


def paired_differences(base: Mapping[str, Sequence[Answer | None]], other: Mapping[str, Sequence[Answer | None]],
                       question_ids: Sequence[str]) -> tuple[list[Fraction], list[Fraction]]:
    """Per question with at least one pair: ``(other's pass rate - base's pass rate, base's pass rate)``, both over
    the answers ``k`` that exist in both conditions (answer ``k`` is paired with answer ``k``)."""
    differences, base_rates = [], []
    for question_id in question_ids:
        paired = paired_difference(base[question_id], other[question_id])
        if paired is not None:
            differences.append(paired[0])
            base_rates.append(paired[1])
    return differences, base_rates


def paired_difference(base: Sequence[Answer | None],
                      other: Sequence[Answer | None]) -> tuple[Fraction, Fraction] | None:
    """One question: ``(other's pass rate - base's, base's pass rate)`` over the answers ``k`` present in both
    (None: no such answer). The one definition of ``delta`` (and of ``opd validate``'s in-context accuracy gap)."""
    pairs = [(a, b) for a, b in zip(base, other) if a is not None and b is not None]
    if not pairs:
        return None
    # exact fractions: equal pass rates give a difference of exactly 0 (never -0.000 from round-off)
    base_right = sum(a.correct for a, _ in pairs)
    return Fraction(sum(b.correct for _, b in pairs) - base_right, len(pairs)), Fraction(base_right, len(pairs))


def paired_test(differences: Sequence[float]) -> float | None:
    """Two-sided sign-flip p-value of the per-question differences (None without a question)."""
    from harness.reports.stats import sign_flip_test

    return sign_flip_test([float(d) for d in differences]).pvalue if differences else None


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


def binning_samples(samples: int) -> int:
    """How many of the K samples bin a question by the student's pass rate (the rest are measured): K // 2."""
    return samples // 2


def difficulty_bins(question: Question, student_answers: Sequence[Answer | None],
                    samples: int) -> list[tuple[str, str]]:
    """(dimension, bin) pairs for one question: subject group, year range, and the student's pass rate on its
    binning samples (the first K // 2, never the ones the bin's accuracies are measured on)."""
    bins = []
    if "group" in question.meta:
        bins.append(("group", str(question.meta["group"])))
    if "year" in question.meta:
        bins.append(("year", year_range(question.meta["year"])))
    if samples >= 2:
        rate = pass_rate(student_answers[:binning_samples(samples)])
        if rate is not None:
            bins.append((PASS_RATE_DIMENSION, pass_rate_bin(rate)))
    return bins


def _bin_order(dimension: str, name: str) -> tuple:
    if dimension == PASS_RATE_DIMENSION:
        return (PASS_RATE_BINS.index(name),)
    return (name,)  # group names alphabetically; "1983-1999" < "2000-2009" < ... < "2020+" as strings too


def _mean_pass_rate(answer_lists: Sequence[Sequence[Answer | None]]) -> float | None:
    rates = [rate for rate in map(pass_rate, answer_lists) if rate is not None]
    return sum(rates) / len(rates) if rates else None


def summarise(questions: Sequence[Question], conditions: Sequence[Condition], outcomes: Outcomes,
              samples: int) -> AccuracyReport:
    """Rows, difficulty breakdown and notes from the graded answers (no model work: testable on its own)."""
    base = outcomes[STUDENT_CONDITION]
    ids = [q.id for q in questions]
    rows = []
    for condition in conditions:
        per_question = outcomes[condition.name]
        rates = [rate for rate in (pass_rate(per_question[i]) for i in ids) if rate is not None]
        n = len(rates)
        # the question is the unit: Wilson on n questions with a fractional success count (the sum of per-question
        # pass rates). Counting n*K samples as independent would overstate the precision of K correlated samples.
        low, high = wilson_interval(sum(rates), n)
        unparsed = [share for share in (unparsed_share([None if a is None else asdict(a) for a in per_question[i]])
                                        for i in ids) if share is not None]  # the questions of `rates`
        row = {
            "condition": condition.name, "model": condition.model, "questions": n, "unavailable": len(ids) - n,
            "answers": sum(a is not None for i in ids for a in per_question[i]),
            "accuracy": sum(rates) / n if n else None, "ci_low": low, "ci_high": high,
            "unparsed": sum(unparsed) / n if n else None,
            "student_same": None, "delta": None, "better": None, "worse": None, "p_sign_flip": None,
        }
        if condition.name != STUDENT_CONDITION:
            differences, student_rates = paired_differences(base, per_question, ids)
            if differences:
                row.update(student_same=float(sum(student_rates) / len(student_rates)),
                           delta=float(sum(differences) / len(differences)), better=sum(d > 0 for d in differences),
                           worse=sum(d < 0 for d in differences), p_sign_flip=paired_test(differences))
        rows.append(row)

    half = binning_samples(samples)
    cells: dict[tuple[str, str], list[str]] = {}
    for question in questions:
        for key in difficulty_bins(question, base[question.id], samples):
            cells.setdefault(key, []).append(question.id)
    breakdown = []
    for dimension, name in sorted(cells, key=lambda k: (k[0], _bin_order(*k))):
        members = cells[(dimension, name)]
        entry: dict[str, Any] = {"dimension": dimension, "bin": name, "n": len(members)}
        for condition in conditions:
            per_question = outcomes[condition.name]
            # binned on the student's first `half` samples: measured on the others only
            measured = [per_question[i][half:] if dimension == PASS_RATE_DIMENSION else per_question[i]
                        for i in members]
            entry[condition.name] = _mean_pass_rate(measured)
        breakdown.append(entry)

    notes = [("accuracy: mean per-question pass rate; 95% Wilson interval with the question as the unit "
              "(questions = n)"),
             ("unparsed: mean per-question share of answers with no parseable answer, on the same questions (not "
              "correct, and counted apart from wrong answers: wrong = 1 - accuracy - unparsed)"),
             ("delta: mean over questions of (condition's pass rate - student's pass rate on the same answers k), "
              "student_same being the latter; better/worse: questions where the condition's pass rate is "
              "higher/lower; p_sign_flip: two-sided sign-flip test of the per-question differences, n = questions"
              + (" (with one answer per question: McNemar's exact test)" if samples == 1 else ""))]
    if samples >= 2:
        notes.append(f"{PASS_RATE_DIMENSION} bins: questions binned by the student's pass rate on samples 1-{half}, "
                     f"every condition measured on samples {half + 1}-{samples} only (binning and measuring on the "
                     f"same samples would show regression to the mean: a teacher as good as the student would seem "
                     f"to gain on never-solved and lose on always-solved questions)")
        notes.append("contexts built from the student's answers (self-demo, correct-wrong, idp) never show the "
                     "answer k the teacher's answer k is paired with")
    else:
        notes.append(f"{PASS_RATE_DIMENSION} bins need --samples >= 2 (one greedy answer gives only 0 or 1); "
                     f"not shown")
    if not any(dim in ("group", "year") for dim, _ in cells):
        notes.append("no subject group or year in this task's questions: no group/year breakdown")
    for row in rows:
        missing = len(ids) * samples - row["answers"]
        if missing:
            notes.append(f"{row['condition']}: context unavailable for {missing} of {len(ids) * samples} answers "
                         f"({row['unavailable']} of {len(ids)} questions had none); left out of its accuracy and of "
                         f"the paired test")
    question_rows = [
        {"question_id": q.id, "gold": q.gold, "condition": c.name,
         "answers": [None if a is None else asdict(a) for a in outcomes[c.name][q.id]]}
        for c in conditions for q in questions
    ]
    return AccuracyReport(config={}, rows=rows, breakdown=breakdown, notes=notes, questions=question_rows)


# ---------------------------------------------------------------- output


def write_report(report: AccuracyReport, path: Path) -> None:
    """The report as ``accuracy.json`` (:mod:`harness.reports.accuracy_report`'s schema, with every answer)."""
    from harness.storage.records import write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(report.to_dict(include_questions=True), path)
