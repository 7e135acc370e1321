"""``self:self-demo``: the student shown one of its *own* correct rollouts on the question as a demonstration.

The demonstration is the first correct rollout (lowest rollout id) other than the scored one, so the choice is
deterministic and never the response being scored. With no such rollout the context cannot be built (None:
``context_ok = False`` on every node of that rollout).
"""
from harness.sampling.teacher import ContextInputs, Teacher, demonstration_context, describe, register_teacher

NEEDS = ("rollouts",)
DESCRIPTION = describe("The student shown another of its own correct rollouts on the question (never the scored one)",
                       NEEDS)


def self_demo_context(inputs: ContextInputs) -> str | None:
    correct = inputs.other_rollouts(correct=True)
    if not correct:
        return None
    return demonstration_context(inputs.question, correct[0].response.strip(), "a correct response to it")


@register_teacher("self:self-demo", DESCRIPTION)
def self_demo() -> Teacher:
    return Teacher(name="self:self-demo", description=DESCRIPTION, context=self_demo_context, needs=NEEDS)
