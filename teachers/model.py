"""``model:<spec>[+<context>]``: an external model (any model spec with the student's tokenizer).

Plain ``model:<spec>`` is shown the student's prompt. ``model:<spec>+<context teacher>`` is shown that context
teacher's context instead, e.g. ``model:smollm2-135m+correct-demo`` or ``model:hf:<id>+self:self-demo`` (the
``self:`` prefix may be left out). The context builder is the context teacher's own, unchanged, so the combination
sees exactly what the student-as-teacher would; builders that write text (summary) still write with the student.
"""
from harness.api.errors import SpecError
from harness.sampling.teacher import Teacher, describe, register_teacher, resolve_context_teacher

NEEDS = ("second model",)
DESCRIPTION = describe("An external model with the student's tokenizer, e.g. model:hf:<id>; model:<spec>+<context> "
                       "shows it a context teacher's context", NEEDS)


@register_teacher("model", DESCRIPTION)
def model_teacher(spec: str) -> Teacher:
    model_spec, plus, context_spec = spec.partition("+")
    if not model_spec or (plus and not context_spec):
        raise SpecError("`model:` needs a model spec, e.g. model:smollm2-135m or model:hf:HuggingFaceTB/SmolLM2-360M, "
                         "optionally with a context: model:smollm2-135m+correct-demo.")
    if not plus:
        return Teacher(name=f"model:{spec}", description=DESCRIPTION, model=spec, context=None, needs=NEEDS)
    context = resolve_context_teacher(context_spec)
    needs = tuple(dict.fromkeys(NEEDS + context.needs))
    return Teacher(name=f"model:{spec}", description=describe(f"{model_spec} shown the {context.name} context", needs),
                   model=model_spec, context=context.context, needs=needs, variant=context.variant)
