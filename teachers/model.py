"""``model:<spec>``: an external model (any model spec with the student's tokenizer) shown the student's prompt."""
from harness.teacher import Teacher, register_teacher

DESCRIPTION = "An external model with the student's tokenizer, e.g. model:hf:<id>; needs a second model"


@register_teacher("model", DESCRIPTION)
def model_teacher(spec: str) -> Teacher:
    if not spec:
        raise ValueError("`model:` needs a model spec, e.g. model:smollm2-135m or model:hf:HuggingFaceTB/SmolLM2-360M.")
    return Teacher(name=f"model:{spec}", description=DESCRIPTION, model=spec, context=None, needs=("second model",))
