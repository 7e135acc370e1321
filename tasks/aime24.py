"""AIME 2024: the 30 problems of AIME 2024 I and II, with AoPS wiki solutions used as demonstrations.

Local data: ``<data_dir>/aime/aime_2024.jsonl`` with ``{"id", "year", "problem", "answer", "solution", "url"}``.
Without a data directory the public hub dataset ``HuggingFaceH4/aime_2024`` (split ``train``) is used.
The loader, prompt and grader are shared with the other AIME tasks (``tasks/aime.py``).
"""
from __future__ import annotations

from harness.api.task import register_task
from tasks.aime import AIME, HubSource, no_argument

AIME_2024 = AIME(
    name="aime24",
    description="AIME 2024 I+II (30 problems): integer answers 0-999, graded with math-verify",
    local_path="aime/aime_2024.jsonl",
    hub=HubSource("HuggingFaceH4/aime_2024", None, "train"),
    years=(2024, 2024),
)


@register_task("aime24")
def aime24(argument: str | None = None) -> AIME:
    """AIME 2024 I+II: 30 integer-answer problems, graded with math-verify."""
    no_argument("aime24", argument)
    return AIME_2024
