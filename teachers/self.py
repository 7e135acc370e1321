"""``self``: the student itself with no extra context.

Its distribution equals the student's exactly, so every distillation gradient is zero: a control row that shows
what "no teacher signal" looks like (alignment 0 by definition, flagged as a zero gradient in the tables).
"""
from harness.sampling.teacher import Teacher, register_teacher

DESCRIPTION = "The student itself, no extra context: zero distillation gradient (control row)"


@register_teacher("self", DESCRIPTION)
def self_teacher() -> Teacher:
    return Teacher(name="self", description=DESCRIPTION, model=None, context=None)
