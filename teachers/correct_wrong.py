"""``self:correct-wrong``: the student shown one correct and one incorrect rollout of its own, labelled as such.

Contrastive context: METHOD reports that contexts holding wrong demonstrations align worse than correct-only ones,
and this teacher measures that directly next to ``self:self-demo`` (which shows the same correct rollout). Both
rollouts come from ``ContextInputs.other_rollouts``: the first correct and the first incorrect one other than the
scored rollout. The correct one is always shown first. None when either kind is missing.
"""
from harness.sampling.teacher import ContextInputs, Teacher, describe, question_with_context, register_teacher

NEEDS = ("rollouts", "both outcomes")
DESCRIPTION = describe("The student shown one correct and one incorrect rollout of its own, labelled", NEEDS)


def correct_wrong_context(inputs: ContextInputs) -> str | None:
    correct, wrong = inputs.other_rollouts(correct=True), inputs.other_rollouts(correct=False)
    if not correct or not wrong:
        return None
    preamble = (
        "Here is a question with two earlier responses to it: the first is correct, the second is incorrect. "
        "Learn from both, then answer the question yourself in the same format.\n\n"
        f"### Correct response\n{correct[0].response.strip()}\n\n"
        f"### Incorrect response\n{wrong[0].response.strip()}\n\n### Question"
    )
    return question_with_context(inputs.question, preamble)


@register_teacher("self:correct-wrong", DESCRIPTION)
def correct_wrong() -> Teacher:
    return Teacher(name="self:correct-wrong", description=DESCRIPTION, context=correct_wrong_context, needs=NEEDS)
