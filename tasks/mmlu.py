"""MMLU: four-way multiple-choice questions on 57 subjects (the official 14042-question test set).

``mmlu`` is every subject; ``mmlu:anatomy`` or ``mmlu:anatomy,virology`` keeps only those subjects. The factory
also takes ``shots`` (k worked examples from the subject's dev split, prepended to the prompt; 0 by default and
always 0 for the ``mmlu:<subject>`` spec form). ``mmlu:cot`` (or ``mmlu:cot:<subject>[,<subject>...]``) is the
chain-of-thought variant: the student reasons step by step and ends with "Answer: <letter>" (:data:`COT_FORMAT`); its
grader reads the answer from the end and takes only "answer" and ``\\boxed`` as cues (a chain of thought walks
through "option A ..."; see ``reasoning`` in :func:`harness.api.answers.extract_choice_letter`), and it gets a larger
generation budget.

Local data: ``<data_dir>/mmlu/test.jsonl`` (and ``dev.jsonl`` for shots) with
``{"question", "subject", "choices": [4 str], "answer": int 0-3}``. Without a data directory the public hub
dataset ``cais/mmlu`` (config ``all``) is used, which has the same fields.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api.answers import choice_answer_is_final, choice_gold, extract_choice_letter
from harness.api.data import DataError, load_hub, local_file, read_jsonl
from harness.api.errors import SpecError
from harness.api.registry import RegistryError
from harness.api.task import Grade, NoTrainSplit, Question, register_task

LOCAL_FILES = {"test": "mmlu/test.jsonl", "dev": "mmlu/dev.jsonl"}
HUB_PATH = "cais/mmlu"
HUB_CONFIG = "all"
LETTERS = "ABCD"
FIELDS = ("question", "subject", "choices", "answer")

# The standard subject -> category grouping of Hendrycks et al. (the four columns of the MMLU paper's results).
_GROUP_SUBJECTS = {
    "STEM": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_physics", "computer_security",
        "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
        "high_school_chemistry", "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios", "philosophy",
        "prehistory", "professional_law", "world_religions",
    ),
    "social sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics", "high_school_macroeconomics",
        "high_school_microeconomics", "high_school_psychology", "human_sexuality", "professional_psychology",
        "public_relations", "security_studies", "sociology", "us_foreign_policy",
    ),
    "other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging", "management",
        "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology",
    ),
}
SUBJECT_GROUPS: Mapping[str, str] = {
    subject: group for group, subjects in _GROUP_SUBJECTS.items() for subject in subjects
}
SUBJECTS: tuple[str, ...] = tuple(sorted(SUBJECT_GROUPS))

FORMAT = 'Reason briefly, then end with a final line of the form "Answer: <letter>", where <letter> is A, B, C or D.'
COT_FORMAT = ('Think step by step, then end with a final line of the form "Answer: <letter>", where <letter> is A, B, '
              'C or D.')
COT_MAX_NEW_TOKENS = 384
COT = "cot"  # the spec argument (or its first part) that selects the chain-of-thought variant


def topic(subject: str) -> str:
    return subject.replace("_", " ")


def question_block(question: str, choices: Sequence[str]) -> str:
    lettered = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
    return f"{question.strip()}\n\n{lettered}"


def demonstration(choices: Sequence[str], answer: int) -> str:
    text = choices[answer].strip()
    end = "" if text.endswith((".", "?", "!")) else "."  # choices are often full sentences already
    return f"The correct choice is {text}{end}\nAnswer: {LETTERS[answer]}"


def build_prompt(subject: str, question: str, choices: Sequence[str], shots: Sequence[Mapping[str, Any]] = (),
                 reasoning: bool = False) -> str:
    """The instruction, optional worked examples (each a question block and its demonstration), then the question."""
    intro = (f"The following are multiple choice questions about {topic(subject)}, each worked example followed by "
             f"its answer; answer the last one." if shots else
             f"The following is a multiple choice question about {topic(subject)}.")
    parts = [f"{intro} {COT_FORMAT if reasoning else FORMAT}"]
    parts += [f"{question_block(s['question'], s['choices'])}\n\n{demonstration(s['choices'], s['answer'])}"
              for s in shots]
    parts.append(question_block(question, choices))
    return "\n\n".join(parts)


def parse_subjects(argument: str | None) -> tuple[str, ...] | None:
    """``"anatomy,virology"`` -> the subjects in that order (None: all); unknown names raise, listing valid ones."""
    if not argument or not argument.strip():
        return None
    names = tuple(dict.fromkeys(part.strip() for part in argument.split(",") if part.strip()))
    unknown = [name for name in names if name not in SUBJECT_GROUPS]
    if unknown:
        raise RegistryError(
            f"Unknown MMLU subject(s) {', '.join(map(repr, unknown))} in 'mmlu:{argument}'. Use 'mmlu' for all "
            f"subjects or 'mmlu:<subject>[,<subject>...]' (chain of thought: 'mmlu:cot' or "
            f"'mmlu:cot:<subject>[,...]') with subjects from: {', '.join(SUBJECTS)}."
        )
    return names


def _check_row(row: Mapping[str, Any], where: str) -> None:
    """Types a JSON schema check cannot express: four string choices and an answer index into them."""
    choices, answer = row["choices"], row["answer"]
    four_strings = isinstance(choices, (list, tuple)) and len(choices) == len(LETTERS)
    if not (four_strings and all(isinstance(c, str) for c in choices)):
        raise DataError(f"Malformed MMLU data: {where} has choices={choices!r}; expected a list of 4 strings.")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(LETTERS):
        raise DataError(f"Malformed MMLU data: {where} has answer={answer!r}; expected an integer index 0-3.")
    if row["subject"] not in SUBJECT_GROUPS:
        raise DataError(f"Malformed MMLU data: {where} has unknown subject {row['subject']!r}.")


@dataclass(frozen=True)
class MMLU(NoTrainSplit):
    """MMLU (all subjects, or a subset), graded by the answer letter."""

    name: str = "mmlu"
    description: str = "MMLU (test, 14042): 4-way multiple choice on 57 subjects; mmlu:<subject>[,...] filters"
    max_new_tokens: int = 128
    subjects: tuple[str, ...] | None = None  # None: all 57
    shots: int = 0
    reasoning: bool = False  # mmlu:cot: a chain of thought first, the answer read from the end

    def load(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        rows, source = self._rows("test", data_dir)
        shots = self._shots_by_subject(data_dir) if self.shots else {}
        counters: dict[str, int] = {}
        questions = []
        for row in rows:
            subject = row["subject"]
            index = counters.get(subject, 0)  # ids number questions within their subject, before any filter
            counters[subject] = index + 1
            if self.subjects is None or subject in self.subjects:
                questions.append(self._question(row, index, shots.get(subject, ()), source))
                if limit is not None and len(questions) >= limit:
                    break
        return questions[:limit]

    def _rows(self, split: str, data_dir: Path | None) -> tuple[Iterable[Mapping[str, Any]], str]:
        """Validated rows of one split, lazily for the hub (so that a small limit reads little), and their source."""
        if data_dir is not None:
            path = local_file(data_dir, LOCAL_FILES[split], self.name)
            rows = read_jsonl(path, FIELDS, types={"question": str, "subject": str, "choices": list, "answer": int})
            return self._validated(rows, str(path)), str(path)
        rows = load_hub(HUB_PATH, HUB_CONFIG, split)
        return self._validated(rows, f"hub dataset {HUB_PATH} ({split})"), HUB_PATH

    @staticmethod
    def _validated(rows: Iterable[Mapping[str, Any]], source: str) -> Iterable[Mapping[str, Any]]:
        for number, row in enumerate(rows, start=1):
            missing = [name for name in FIELDS if name not in row]
            if missing:
                raise DataError(f"Malformed MMLU data: {source} row {number} lacks {', '.join(missing)}.")
            _check_row(row, f"{source} row {number}")
            yield row

    def _shots_by_subject(self, data_dir: Path | None) -> dict[str, list[Mapping[str, Any]]]:
        rows, _ = self._rows("dev", data_dir)
        by_subject: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            by_subject.setdefault(row["subject"], []).append(row)
        short = sorted(s for s in (self.subjects or SUBJECTS) if len(by_subject.get(s, ())) < self.shots)
        if short:
            raise DataError(
                f"MMLU with shots={self.shots} needs that many dev examples per subject, but the dev split has "
                f"fewer for: {', '.join(short)}. The official dev split has 5 per subject; use shots <= 5."
            )
        return {subject: examples[: self.shots] for subject, examples in by_subject.items()}

    def _question(self, row: Mapping[str, Any], index: int, shots: Sequence[Mapping[str, Any]], source: str
                  ) -> Question:
        subject, choices, answer = row["subject"], list(row["choices"]), row["answer"]
        return Question(
            id=f"mmlu-{subject}-{index}",
            prompt=build_prompt(subject, row["question"], choices, shots, self.reasoning),
            gold=LETTERS[answer],
            demonstration=demonstration(choices, answer),
            meta={"subject": subject, "group": SUBJECT_GROUPS[subject], "index": index, "question": row["question"],
                  "choices": choices, "source": source},
        )

    def grade(self, question: Question, response: str) -> Grade:
        extracted = extract_choice_letter(response, question.meta.get("choices", ()), LETTERS, self.reasoning)
        gold = choice_gold(question.gold, self.name, LETTERS)  # "c" or the index 2 as datasets spell it
        return Grade(extracted=extracted, correct=extracted is not None and extracted == gold)

    def answer_is_final(self, response: str) -> bool:
        return choice_answer_is_final(response, LETTERS, self.reasoning)


@register_task("mmlu")
def mmlu(argument: str | None = None, *, shots: int = 0) -> MMLU:
    """MMLU: 4-way multiple choice on 57 subjects; mmlu:<subject>[,...] keeps those; mmlu:cot[:...] reasons first."""
    if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= 5:
        raise SpecError(f"MMLU shots must be an integer from 0 to 5 (the dev split has 5 per subject), got {shots!r}.")
    reasoning = argument is not None and (argument.strip() == COT or argument.startswith(f"{COT}:"))
    if reasoning:
        argument = argument.strip()[len(COT) + 1:]
    subjects = parse_subjects(argument)
    name = ":".join(["mmlu"] + ([COT] if reasoning else []) + ([",".join(subjects)] if subjects else []))
    if not reasoning:
        return MMLU(name=name, subjects=subjects, shots=shots)
    return MMLU(name=name, subjects=subjects, shots=shots, reasoning=True, max_new_tokens=COT_MAX_NEW_TOKENS,
                description="MMLU (test, 14042), chain of thought: reasons step by step, then the answer letter")
