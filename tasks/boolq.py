"""BoolQ: yes/no questions about a Wikipedia passage (the SuperGLUE dev set, 3270 questions).

``boolq`` asks for one sentence of reasoning and the answer; ``boolq:cot`` is the chain-of-thought variant: the
student reasons step by step about the passage first and ends with "Answer: yes/no" (:data:`COT_FORMAT`); its grader
reads the answer only from the end (the last explicit answer, else a last line that is just the word: never the
opening word, which a chain of thought may revise), and it gets a larger generation budget.

Local data: ``<data_dir>/boolq/validation.jsonl`` with ``{"idx", "question", "passage", "answer": bool}``.
Without a data directory the public hub dataset ``google/boolq`` (split ``validation``) is used.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from harness.api.answers import extract_yes_no, yes_no_answer_is_final, yes_no_gold
from harness.api.data import DataError, load_hub, local_file, read_jsonl
from harness.api.errors import SpecError
from harness.api.task import Grade, NoTrainSplit, Question, register_task

LOCAL_FILE = "boolq/validation.jsonl"
HUB_PATH = "google/boolq"
HUB_SPLIT = "validation"

# Instruction first and an explicit two-line format: with SmolLM2-135M this gave shorter responses and more
# format-following than "reason, then end with Answer:" placed after the passage (measured on 6 questions x 8 samples).
INSTRUCTION = "Read the passage and answer the question with yes or no."
FORMAT = "Format:\nReasoning: <one sentence>\nAnswer: <yes or no>"
COT_FORMAT = ('Think step by step about what the passage says and what the question asks, then end with a final line '
              'of the form "Answer: yes" or "Answer: no".')
COT_MAX_NEW_TOKENS = 256

# Demonstrations are deliberately generic: they must be correct for every question without inventing facts
# about the passage that nobody checked.
DEMONSTRATIONS = {
    "yes": "Reasoning: The passage supports this.\nAnswer: yes",
    "no": "Reasoning: The passage does not support this.\nAnswer: no",
}


def format_question(question: str) -> str:
    """BoolQ questions are lower-case without a question mark ("is the sky blue"); make them read as questions."""
    text = question.strip()
    if text:
        text = text[0].upper() + text[1:]
    return text if text.endswith("?") else text + "?"


def build_prompt(passage: str, question: str, reasoning: bool = False) -> str:
    return (f"{INSTRUCTION}\n\nPassage: {passage.strip()}\n\nQuestion: {format_question(question)}\n\n"
            f"{COT_FORMAT if reasoning else FORMAT}")


@dataclass(frozen=True)
class BoolQ(NoTrainSplit):
    """The BoolQ task: a passage, a yes/no question about it, graded by exact yes/no match."""

    name: str = "boolq"
    description: str = "BoolQ (SuperGLUE dev, 3270): yes/no questions about a Wikipedia passage"
    max_new_tokens: int = 64
    reasoning: bool = False  # boolq:cot: a chain of thought first, the answer read from the end

    def load(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        if data_dir is None:
            return self._load_hub(limit)
        path = local_file(data_dir, LOCAL_FILE, self.name)
        rows = read_jsonl(
            path, ("idx", "question", "passage", "answer"), types={"answer": bool, "question": str, "passage": str}
        )
        return [
            self._question(row["idx"], row["question"], row["passage"], row["answer"], source=str(path))
            for row in rows[:limit]
        ]

    def _load_hub(self, limit: int | None) -> list[Question]:
        rows = load_hub(HUB_PATH, None, HUB_SPLIT)
        questions = []
        for index, row in enumerate(islice(rows, limit)):
            if not isinstance(row.get("answer"), bool):
                raise DataError(
                    f"Hub dataset {HUB_PATH} ({HUB_SPLIT}) row {index} has answer={row.get('answer')!r}, expected a "
                    f"boolean; the hub schema may have changed. Use --data-dir with a local copy instead."
                )
            questions.append(self._question(index, row["question"], row["passage"], row["answer"], source=HUB_PATH))
        return questions

    def _question(self, idx: object, question: str, passage: str, answer: bool, source: str) -> Question:
        gold = "yes" if answer else "no"
        return Question(
            id=f"boolq-{idx}",
            prompt=build_prompt(passage, question, self.reasoning),
            gold=gold,
            demonstration=DEMONSTRATIONS[gold],
            meta={"idx": idx, "question": question, "passage": passage, "source": source},
        )

    def grade(self, question: Question, response: str) -> Grade:
        extracted = extract_yes_no(response, reasoning=self.reasoning)
        gold = yes_no_gold(question.gold, self.name)  # "True", "false", "1" as datasets spell it
        return Grade(extracted=extracted, correct=extracted is not None and extracted == gold)

    def answer_is_final(self, response: str) -> bool:
        return yes_no_answer_is_final(response)


@register_task("boolq")
def boolq(argument: str | None = None) -> BoolQ:
    """BoolQ: yes/no questions about a Wikipedia passage (SuperGLUE dev set); boolq:cot reasons step by step first."""
    if argument == "cot":
        return BoolQ(name="boolq:cot", reasoning=True, max_new_tokens=COT_MAX_NEW_TOKENS,
                     description="BoolQ (SuperGLUE dev, 3270), chain of thought: reasons step by step, then yes/no")
    if argument:
        raise SpecError(f"The boolq task takes one optional argument, 'cot' (got 'boolq:{argument}'); use 'boolq' "
                         f"or 'boolq:cot' (chain of thought).")
    return BoolQ()
