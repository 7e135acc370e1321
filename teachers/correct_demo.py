"""``self:correct-demo``: the student shown the gold answer/solution as a worked demonstration before the question."""
from harness.teacher import ContextInputs, Teacher, question_with_context, register_teacher

DESCRIPTION = "The student shown a correct worked demonstration (from the gold answer) before the question; needs gold"


def correct_demo_context(inputs: ContextInputs) -> str | None:
    demonstration = inputs.question.demonstration.strip()
    if not demonstration:
        return None  # no gold solution for this question: recorded per node as context_ok = False
    preamble = (
        "Here is a question together with a correct worked response to it. Study it, then answer the question "
        f"yourself in the same format.\n\n### Correct response\n{demonstration}\n\n### Question"
    )
    return question_with_context(inputs.question, preamble)


@register_teacher("self:correct-demo", DESCRIPTION)
def correct_demo() -> Teacher:
    return Teacher(
        name="self:correct-demo", description=DESCRIPTION, model=None, context=correct_demo_context, needs=("gold",)
    )
