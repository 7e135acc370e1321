"""The teacher contract: a model plus a context builder producing the teacher's prompt.

The teacher's next-token distribution ``q_t(. | x, y_<i)`` comes from one forward pass over
``context prompt + student response`` (teacher forcing). A teacher file in ``teachers/`` registers a small
factory returning a frozen :class:`Teacher` with ``@register_teacher("name")``; a *family* registers the part
before ``:`` and receives the rest as its argument (``model:<spec>``).
"""
from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from harness.api.registry import Registry, RegistryError, _takes_argument, resolve_spec
from harness.api.task import Question, Task

if TYPE_CHECKING:  # harness.sampling.models pulls in torch; builders that generate import it lazily
    from harness.sampling.models import LoadedModel, ModelCache

T = TypeVar("T")


@dataclass(frozen=True)
class RolloutView:
    """What a context builder may see of one student rollout on the question."""

    rollout_id: int
    response: str
    correct: bool


class RunState:
    """What one run computes once and reuses: its loaded models and the memo of its context builders.

    A run (one ``opd run``, one ``opd suite`` cell, one ``opd accuracy`` evaluation) creates one and hands it to
    every builder through :attr:`ContextInputs.state`. Nothing of the kind lives at module level, so two runs in one
    process (``opd suite`` without Ray runs its cells one after another) never see each other's models, summaries or
    ``idp:`` rankings. A memo key is a tuple naming the kind of value first (``"summary"``, ``"idp ranking"``...)
    and then *everything* the value depends on (the student's fingerprint, the task, the question, the seed...), so
    even a state shared by several students could not hand one student's value to another.
    """

    def __init__(self, models: ModelCache | None = None) -> None:
        from harness.sampling.models import ModelCache

        self.models: ModelCache = models if models is not None else ModelCache()
        self._memo: dict[Hashable, Any] = {}

    def remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value kept under ``key``; ``compute()`` makes it the first time it is asked for."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def record(self, key: Hashable, value: Any) -> None:
        self._memo[key] = value

    def recall(self, key: Hashable, default: Any = None) -> Any:
        return self._memo.get(key, default)

    def entries(self, kind: str) -> Iterator[tuple[tuple, Any]]:
        """Every ``(key, value)`` whose key is a tuple starting with ``kind``, in the order they were made."""
        return ((key, value) for key, value in self._memo.items()
                if isinstance(key, tuple) and key and key[0] == kind)


def model_key(lm: LoadedModel | None) -> str | None:
    """What identifies a model in a memo key: its weights fingerprint (spec, config, device, dtype, sampled
    weights), None without a model."""
    return None if lm is None else lm.fingerprint


@dataclass(frozen=True)
class ContextInputs:
    """Everything a context builder may use for one (question, scored rollout)."""

    task: Task
    question: Question
    rollout_id: int  # the rollout being scored: a builder must never show it to the teacher
    rollouts: Sequence[RolloutView]
    # optional, so older callers and tests keep working: builders that generate or score text (summary,
    # larger-demo, idp) use the student; without it they fall back or return None
    student: LoadedModel | None = None
    seed: int = 0  # the run's seed: text a builder samples is seeded from it and the question id
    # the run's models and memo; a ContextInputs built without one gets a private state (nothing shared)
    state: RunState = field(default_factory=RunState, compare=False, repr=False)

    def other_rollouts(self, correct: bool | None = None) -> list[RolloutView]:
        """Rollouts other than the scored one, in rollout order; ``correct`` filters by grade.

        Every builder that shows student rollouts picks from here, so none can leak the scored rollout.
        """
        return [view for view in self.rollouts
                if view.rollout_id != self.rollout_id and (correct is None or view.correct == correct)]


class ContextBuilder(Protocol):
    def __call__(self, inputs: ContextInputs) -> str | None:
        """The teacher's user-turn text, or None where the context cannot be built for this question."""
        ...


@dataclass(frozen=True)
class Teacher:
    """A resolved teacher. ``model=None`` means the student model itself; ``context=None`` the student's prompt."""

    name: str  # the spec as given on the command line
    description: str
    model: str | None = None
    context: ContextBuilder | None = None
    needs: tuple[str, ...] = ()  # e.g. ("gold",), ("rollouts",), ("second model",)
    # for teachers that choose among contexts (idp): the name of the context chosen for these inputs (read from
    # the run's state after the context was built), stored per node in nodes.parquet's `context_choice`
    choice: Callable[[ContextInputs], str | None] | None = None
    # what else q depends on beyond name and model, e.g. the summariser an environment variable chose: part of the
    # run fingerprint and of the reuse cache's keys, so a different variant never reuses or mixes records
    variant: str = ""

    @property
    def needs_text(self) -> str:
        return needs_text(self.needs)

    @property
    def is_student_itself(self) -> bool:
        """Same model and same prompt as the student: q == p exactly, no forward pass needed."""
        return self.model is None and self.context is None


TEACHERS: Registry[Teacher] = Registry("teacher")


def register_teacher(name: str, description: str | None = None) -> Callable:
    return TEACHERS.register(name, description)


def resolve_teacher(spec: str) -> Teacher:
    """``self``, ``self:correct-demo`` (exact names) or a family with an argument (``model:<spec>``).

    A registered name whose factory takes an argument is also a family of its own: ``self:summary:<model>`` calls
    the ``self:summary`` factory with ``<model>``. The longest such name wins, because the generic rule would
    send the whole rest after the first ``:`` to the ``self`` teacher, which takes no argument.
    """
    if spec not in TEACHERS:
        for name in sorted(TEACHERS.names(), key=len, reverse=True):
            if ":" in name and spec.startswith(name + ":") and _takes_argument(TEACHERS.get(name)):
                return TEACHERS.get(name)(spec[len(name) + 1:])
    return resolve_spec(TEACHERS, spec)


def teacher_prompt(teacher: Teacher, inputs: ContextInputs) -> str | None:
    """The user turn the teacher is shown for ``inputs``: its context, or the question itself for a teacher without
    one; None where the context cannot be built. ``opd run`` and ``opd accuracy`` both build prompts here."""
    return teacher.context(inputs) if teacher.context is not None else inputs.question.prompt


def question_with_context(question: Question, preamble: str) -> str:
    """Shared layout for context teachers: the privileged material first, then the unchanged question."""
    return f"{preamble.strip()}\n\n{question.prompt}"


def demonstration_context(question: Question, demonstration: str, what: str) -> str:
    """The one layout of the demonstration teachers: ``what`` says whose correct response ``demonstration`` is
    (e.g. "a correct worked response to it"); the response is shown verbatim, then the question."""
    preamble = (f"Here is a question together with {what}. Study it, then answer the question yourself in the same "
                f"format.\n\n### Correct response\n{demonstration}\n\n### Question")
    return question_with_context(question, preamble)


NEEDS_LABELS = {
    "gold": "gold answers",
    "rollouts": "other student rollouts",
    "both outcomes": "a correct and an incorrect other rollout",
    "second model": "a second model",
    "generation": "extra generation",
}


def needs_text(needs: Sequence[str]) -> str:
    """``("gold", "rollouts")`` -> ``"needs gold answers, other student rollouts"`` (``"needs nothing"``)."""
    return "needs " + (", ".join(NEEDS_LABELS.get(need, need) for need in needs) or "nothing")


def describe(summary: str, needs: Sequence[str]) -> str:
    """The one line ``opd list teachers`` prints: what the teacher is, then what it needs."""
    return f"{summary}; {needs_text(needs)}"


def unknown_context_error(spec: str, why: str) -> RegistryError:
    return RegistryError(f"{spec!r} cannot be used as a context: {why}. Pick a context teacher from "
                         f"`opd list teachers` (self:correct-demo, self:self-demo, ...).")


def resolve_context_teacher(spec: str) -> Teacher:
    """A teacher used for its context only (``correct-demo`` is short for ``self:correct-demo``)."""
    name = spec if spec in TEACHERS or spec.startswith(("self:", "idp:")) else f"self:{spec}"
    teacher = resolve_teacher(name)
    if teacher.context is None or teacher.model is not None:
        raise unknown_context_error(spec, "it is not a context teacher on the student")
    return teacher


# ----------------------------------------------------------------------------- helpers for builders that compute


def generate_texts(lm: LoadedModel, user_text: str, n: int, max_new_tokens: int, temperature: float,
                   seed_parts: Sequence[object], is_final: Callable[[str], bool] | None = None) -> list[str]:
    """``n`` seeded samples of ``lm`` answering ``user_text`` (one batch over one prefilled prompt)."""
    from harness.sampling.generation import Branch, Decoding, generate_branches, make_generator, prefill
    from harness.sampling.prompting import chat_prompt_ids

    ids = chat_prompt_ids(lm.tokenizer, user_text)
    cache, logits = prefill(lm, ids)
    decoding = Decoding(temperature, make_generator(lm.device, *seed_parts), is_final)
    generated = generate_branches(lm, cache, [Branch(len(ids), None, max_new_tokens)] * n, decoding,
                                  first_logits=logits[-1])
    return [lm.tokenizer.decode(list(g.tokens), skip_special_tokens=True).strip() for g in generated]


def mean_logprob_of_tail(lm: LoadedModel, user_text: str, tail: str) -> float:
    """Mean token log-likelihood under ``lm`` of the last occurrence of ``tail`` in the user turn ``user_text``.

    The user turn is rendered exactly as the teacher sees it (chat template and all) and the tokens whose
    character span lies inside ``tail`` are scored, so the template's closing tokens never count.
    """
    import torch

    from harness.sampling.generation import forward_logits

    tokenizer = lm.tokenizer
    if getattr(tokenizer, "chat_template", None):  # the same rendering as harness.sampling.prompting.chat_prompt_ids
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False,
                                                 add_generation_prompt=True)
        encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    else:
        rendered = user_text.rstrip() + "\n\n"
        encoded = tokenizer(rendered, return_offsets_mapping=True)
    begin = rendered.rfind(tail)
    if begin < 0:
        raise ValueError("the scored text is not part of the user turn")
    end = begin + len(tail)
    ids = list(encoded["input_ids"])
    scored = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if i > 0 and b > begin and a < end and b > a]
    if not scored:
        return float("-inf")
    first = scored[0]
    logits = forward_logits(lm, ids, logits_to_keep=len(ids) - first + 1)  # rows predict ids[first - 1 + j + 1]
    logp = torch.log_softmax(logits[:, : lm.vocab_size].double(), dim=-1)
    rows = torch.tensor([i - first for i in scored], device=logp.device)
    targets = torch.tensor([ids[i] for i in scored], device=logp.device)
    return float(logp[rows, targets].mean())


def text_model(spec: str | None, inputs: ContextInputs) -> LoadedModel | None:
    """The model a builder writes text with: ``spec`` loaded (once per run, through the run's state) on the
    student's device, or the student itself (None when neither is available, e.g. a builder called without a
    student and without a model spec)."""
    if not spec:
        return inputs.student
    return inputs.state.models.load(spec, str(inputs.student.device) if inputs.student is not None else None)
