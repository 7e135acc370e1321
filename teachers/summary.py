"""``self:summary[:<model>]``: the student shown a short summary of the question's gold demonstration.

The summary is written by the student itself (default) or by a summariser model: ``self:summary:<model spec>``,
or the environment variable ``OPD_SUMMARIZER`` when no argument is given. It is generated once per (summariser,
question, seed) and kept in the run's state (``ContextInputs.state``), so every rollout of a question sees the same
summary and another run (another student) writes its own. Generation is
seeded from the run seed and the question id, hence reproducible. None when the question has no demonstration,
when there is no model to write with (no student given and no summariser), or when the summary comes out empty.
"""
from __future__ import annotations

import os

from harness.sampling.teacher import (
    ContextInputs,
    Teacher,
    describe,
    generate_texts,
    model_key,
    question_with_context,
    register_teacher,
    text_model,
)

NEEDS = ("gold", "generation")
DESCRIPTION = describe("The student shown a summary of the gold demonstration, written by itself or by "
                       "self:summary:<model> / $OPD_SUMMARIZER (cached per question)", NEEDS)
SUMMARY_MAX_NEW_TOKENS = 96
SUMMARY_TEMPERATURE = 0.3  # a summary should be the model's best short rendering, not a diverse sample


def summary_prompt(question: str, demonstration: str) -> str:
    return (
        "Summarise the key reasoning of the following correct response in at most three sentences, ending with "
        f"its final answer.\n\n### Question\n{question.strip()}\n\n### Correct response\n{demonstration.strip()}"
    )


def summary_of(inputs: ContextInputs, summarizer: str | None) -> str | None:
    demonstration = inputs.question.demonstration.strip()
    writer = text_model(summarizer, inputs) if demonstration else None
    if writer is None:
        return None
    key = ("summary", model_key(writer), inputs.task.name, inputs.question.id, demonstration, inputs.seed)
    summary = inputs.state.remember(key, lambda: generate_texts(
        writer, summary_prompt(inputs.question.prompt, demonstration), 1, SUMMARY_MAX_NEW_TOKENS,
        SUMMARY_TEMPERATURE, (inputs.seed, inputs.question.id, "summary"))[0])
    return summary or None


def summary_context(summarizer: str | None):
    def build(inputs: ContextInputs) -> str | None:
        summary = summary_of(inputs, summarizer)
        if summary is None:
            return None
        preamble = ("Here is a summary of a correct response to the question below. Use it, then answer the "
                    f"question yourself.\n\n### Summary of a correct response\n{summary}\n\n### Question")
        return question_with_context(inputs.question, preamble)

    return build


@register_teacher("self:summary", DESCRIPTION)
def summary(summarizer: str = "") -> Teacher:
    name = f"self:summary:{summarizer}" if summarizer else "self:summary"
    writer = summarizer or os.environ.get("OPD_SUMMARIZER") or None
    return Teacher(name=name, description=DESCRIPTION, context=summary_context(writer), needs=NEEDS,
                   variant=f"summarizer={writer or 'student'}")
