"""``idp:<pool>``: Inference-time Dynamic Prompting (after Hoang et al., 2023) over a pool of context teachers.

The student is the teacher; per question it is shown the one context from the pool that it finds most natural.

**Selection rule.** On the first rollout of a question the teacher sees, every pool context is built and scored
by the student's mean token log-likelihood of the *question text* that ends it (the context's preamble precedes
the unchanged question, see ``question_with_context``); the pool is ranked by that score, highest first, ties in
pool order, contexts that cannot be built last. We score the question rather than the gold demonstration because
``self:correct-demo`` quotes the demonstration verbatim and would always win. Without a student (a builder called
outside a run) the ranking is the pool order. Every scored rollout then gets the highest-ranked context that can
be built *for that rollout* (``self:self-demo`` may fail on the rollout that is the question's only correct one);
None when none can.

**Records.** Rankings and choices are kept in the run's state (``ContextInputs.state``, one per run), keyed by the
teacher, the student's fingerprint, the task, the question and the seed (choices also by the rollout): a second
student in the same process ranks afresh. ``Teacher.choice(inputs)`` reads the choice back, and the diagnostic
stores it per node as ``context_choice``; :func:`chosen_contexts` and :func:`rankings` list a state's choices and
rankings for one ``idp:`` teacher.

Pools: ``default`` = self:correct-demo, self:self-demo, self:summary; or a comma-separated list of context
teachers, e.g. ``idp:correct-demo,self-demo,correct-wrong``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.sampling.teacher import (
    ContextInputs,
    RunState,
    Teacher,
    describe,
    mean_logprob_of_tail,
    model_key,
    register_teacher,
    resolve_context_teacher,
    unknown_context_error,
)

POOLS = {"default": ("self:correct-demo", "self:self-demo", "self:summary")}
DESCRIPTION_SUMMARY = (
    "Inference-time Dynamic Prompting: per question, the pool context under which the student finds the question "
    "most likely; idp:default (correct-demo, self-demo, summary) or idp:<a,b,...>")


@dataclass(frozen=True)
class Ranking:
    """One question's pool ranking: context names best first, with the score each got (-inf: not buildable)."""

    question_id: str
    names: tuple[str, ...]
    scores: tuple[float, ...]


RANKING = "idp ranking"  # the kinds of memo entries this teacher keeps in the run's state
CHOICE = "idp choice"


def _question_key(kind: str, name: str, inputs: ContextInputs) -> tuple:
    return (kind, name, model_key(inputs.student), inputs.task.name, inputs.question.id, inputs.seed)


def choice_of(name: str, inputs: ContextInputs) -> str | None:
    """The context the ``idp:`` teacher ``name`` chose for ``inputs`` (None before it was built, or when none could
    be): the teacher's ``choice`` callback."""
    return inputs.state.recall((*_question_key(CHOICE, name, inputs), inputs.rollout_id))


def chosen_contexts(state: RunState, teacher_name: str) -> dict[tuple[str, int], str]:
    """``{(question_id, rollout_id): chosen context name}`` for one ``idp:`` teacher in one run's state."""
    return {(key[4], key[6]): choice for key, choice in state.entries(CHOICE) if key[1] == teacher_name}


def rankings(state: RunState, teacher_name: str) -> dict[str, Ranking]:
    """``{question_id: Ranking}`` for one ``idp:`` teacher in one run's state."""
    return {key[4]: ranking for key, ranking in state.entries(RANKING) if key[1] == teacher_name}


def pool_members(pool: str) -> tuple[Teacher, ...]:
    specs = POOLS.get(pool) or tuple(s.strip() for s in pool.split(",") if s.strip())
    if not specs:
        raise unknown_context_error(f"idp:{pool}", f"name a pool ({', '.join(POOLS)}) or a comma-separated list")
    members = tuple(resolve_context_teacher(spec) for spec in specs)
    for spec, member in zip(specs, members):
        if member.name.startswith("idp:"):
            raise unknown_context_error(spec, "an idp pool cannot contain another idp teacher")
    return members


def rank(members: tuple[Teacher, ...], inputs: ContextInputs) -> Ranking:
    scores = []
    for member in members:
        text = member.context(inputs)
        if text is None:
            scores.append(-math.inf)
        elif inputs.student is None:
            scores.append(0.0)  # nothing to score with: pool order decides
        else:
            scores.append(mean_logprob_of_tail(inputs.student, text, inputs.question.prompt))
    order = sorted(range(len(members)), key=lambda i: (-scores[i], i))
    return Ranking(inputs.question.id, tuple(members[i].name for i in order), tuple(scores[i] for i in order))


def idp_context(name: str, members: tuple[Teacher, ...]):
    by_name = {member.name: member for member in members}

    def build(inputs: ContextInputs) -> str | None:
        ranking = inputs.state.remember(_question_key(RANKING, name, inputs), lambda: rank(members, inputs))
        for candidate in ranking.names:
            text = by_name[candidate].context(inputs)
            if text is not None:
                inputs.state.record((*_question_key(CHOICE, name, inputs), inputs.rollout_id), candidate)
                return text
        return None

    return build


@register_teacher("idp", describe(DESCRIPTION_SUMMARY, ("gold", "rollouts", "generation")))
def idp(pool: str) -> Teacher:
    if not pool:
        raise unknown_context_error("idp:", f"name a pool, e.g. idp:default ({', '.join(POOLS['default'])})")
    members = pool_members(pool)
    needs = tuple(dict.fromkeys(need for member in members for need in member.needs))
    name = f"idp:{pool}"
    return Teacher(name=name, description=describe(DESCRIPTION_SUMMARY, needs), context=idp_context(name, members),
                   needs=needs, choice=lambda inputs: choice_of(name, inputs),
                   variant=";".join(member.variant for member in members if member.variant))
