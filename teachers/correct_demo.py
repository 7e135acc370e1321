"""``self:correct-demo``: the student shown the gold answer/solution as a worked demonstration before the question."""
from harness.sampling.teacher import ContextInputs, Teacher, demonstration_context, register_teacher

DESCRIPTION = "The student shown a correct worked demonstration (from the gold answer) before the question; needs gold"


def correct_demo_context(inputs: ContextInputs) -> str | None:
    demonstration = inputs.question.demonstration.strip()
    if not demonstration:
        return None  # no gold solution for this question: recorded per node as context_ok = False
    return demonstration_context(inputs.question, demonstration, "a correct worked response to it")


@register_teacher("self:correct-demo", DESCRIPTION)
def correct_demo() -> Teacher:
    return Teacher(
        name="self:correct-demo", description=DESCRIPTION, model=None, context=correct_demo_context, needs=("gold",)
    )
