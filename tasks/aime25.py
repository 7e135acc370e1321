"""AIME 2025: the 30 problems of AIME 2025 I and II.

Local data, when present: ``<data_dir>/aime/aime_2025.jsonl`` in the ``aime_2024.jsonl`` schema
(``{"id", "year", "problem", "answer"}``, ``solution`` optional). shared/data has no 2025 file, so a data directory
without it falls back to the public hub dataset ``math-ai/aime25`` (split ``test``; fields ``id, problem, answer``).
The loader, prompt and grader are shared with the other AIME tasks (``tasks/aime.py``).
"""
from __future__ import annotations

from harness.api.task import register_task
from tasks.aime import AIME, HubSource, no_argument

AIME_2025 = AIME(
    name="aime25",
    description="AIME 2025 I+II (30 problems): integer answers 0-999, graded with math-verify",
    local_path="aime/aime_2025.jsonl",
    hub=HubSource("math-ai/aime25", None, "test"),
    years=(2025, 2025),
    local_optional=True,
)


@register_task("aime25")
def aime25(argument: str | None = None) -> AIME:
    """AIME 2025 I+II: 30 integer-answer problems, graded with math-verify."""
    no_argument("aime25", argument)
    return AIME_2025
