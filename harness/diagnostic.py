"""The diagnostic for one question: rollouts, targeted branching, S_hat, g*, distillation gradients, alignment.

This is METHOD.md's "Targeted rollouts", "Distillation gradients" and "Alignment" sections in code, producing the
rows of ``nodes.parquet`` and ``questions.parquet`` for one question. Orchestration, I/O and progress live in
``harness.runner``.

The work splits in two phases so that it can be reused (``harness.cache``):

1. **Sampling** (teacher-independent under entropy priority, and by far the costliest): rollouts, node selection,
   supports and forced continuations, giving per node the success counts behind ``S_hat``. Kept as the question
   rows plus one :class:`NodePlan` per node.
2. **Scoring**, per teacher: one forward pass per (teacher, rollout) for q_t, then every node's divergences,
   loss directions and alignments. Kept as that teacher's node rows.

A fresh question runs both phases rollout by rollout (so only one rollout's logits are ever held); with a warm
cache the first phase is read back and only the teachers without cached rows get their forward passes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from harness.alignment import (
    cosine,
    divergences,
    entropy,
    ideal_gradient,
    project_to_support,
    success_rates,
    support_tokens,
)
from harness.backends import Backend, Continuation, TransformersBackend
from harness.cache import (
    CACHE_FORMAT,
    WorkCache,
    code_fingerprint,
    digest,
    library_versions,
    model_fingerprint,
    question_fingerprint,
    source_file,
)
from harness.generation import forward_logits, prefill
from harness.losses import Loss, NodeDistributions, jsd_rbar
from harness.models import LoadedModel
from harness.prompting import chat_prompt_ids
from harness.records import LOSS_NAMES, NODE_SCHEMA, QUESTION_SCHEMA
from harness.selection import entropy_rows, select_nodes, tv_rows
from harness.task import Question, Task
from harness.teacher import ContextInputs, RolloutView, RunState, Teacher, teacher_prompt

MIN_SUPPORT_PROB = 1e-4  # METHOD: candidate tokens with p_k below this are dropped (the sampled one is kept)


@dataclass(frozen=True)
class Settings:
    """METHOD's knobs (defaults are METHOD's defaults)."""

    rollouts: int = 8  # G
    temperature: float = 1.0  # T
    nodes_per_window: int = 2  # B
    top_k: int = 4  # K
    continuations: int = 4  # M
    priority: str = "entropy"  # or "disagreement": max_t TV(p, q_t)
    jsd_beta: float = 0.5
    max_new_tokens: int | None = None  # None: the task's default


@dataclass(frozen=True)
class Participants:
    """Everything resolved before any work starts."""

    task: Task
    student: LoadedModel
    student_name: str  # the spec as given on the command line
    teachers: Sequence[tuple[Teacher, LoadedModel]]  # each teacher with the model it runs on
    losses: Sequence[Loss]
    seed: int
    backend: Backend | None = None  # None: in-process transformers generation
    state: RunState = field(default_factory=RunState)  # this run's models and context memo (harness.teacher)

    @property
    def sampler(self) -> Backend:
        return self.backend if self.backend is not None else TransformersBackend(self.student)


class Progress(Protocol):
    def add_total(self, kind: str, amount: int) -> None: ...

    def advance(self, kind: str, amount: int = 1) -> None: ...


class NoProgress:
    def add_total(self, kind: str, amount: int) -> None:
        pass

    def advance(self, kind: str, amount: int = 1) -> None:
        pass


@dataclass
class QuestionResult:
    node_rows: list[dict[str, Any]] = field(default_factory=list)
    question_rows: list[dict[str, Any]] = field(default_factory=list)
    generated_tokens: int = 0  # rollouts + branch continuations generated now (0 when read from the cache)
    teacher_passes: int = 0  # teacher forward passes run now
    sampled_now: bool = True  # False: the sampling phase came from the reuse cache


@dataclass(frozen=True)
class Rollout:
    """One student rollout as the diagnostic uses it."""

    rollout_id: int
    tokens: tuple[int, ...]
    correct: bool
    advantage: float


@dataclass(frozen=True)
class SuccessCounts:
    """Per support token of one node: successes and trials over all its trials (the M forced continuations plus,
    for the sampled token ``support[0]``, the rollout itself), and over each half of the continuations alone.

    The halves (continuations ``[0, ceil(M/2))`` and ``[ceil(M/2), M)`` of every token, the rollout in neither) are
    independent estimates of S for METHOD's split-half reliability.
    """

    correct: np.ndarray
    trials: np.ndarray
    half_correct: tuple[np.ndarray, np.ndarray]
    half_trials: tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class NodePlan:
    """The teacher-independent part of one node: where it is, its support, and its continuations' successes
    (the rollout itself already counted as one more trial of ``support[0]``, its sampled token). ``halves`` holds
    (correct, trials) of the first half of the continuations, then of the second (:class:`SuccessCounts`)."""

    rollout_id: int
    position: int
    window: int
    priority: float
    support_token_ids: tuple[int, ...]
    succ_correct: tuple[int, ...]
    succ_trials: tuple[int, ...]
    halves: tuple[tuple[int, ...], ...]  # correct_a, trials_a, correct_b, trials_b


_SAME_AS_STUDENT = object()  # marker: teacher distribution is the student's own, bit for bit


def diagnose_question(question: Question, who: Participants, settings: Settings, progress: Progress,
                      cache: WorkCache | None = None) -> QuestionResult:
    task, student = who.task, who.student
    max_new = settings.max_new_tokens or task.max_new_tokens
    prompt_ids = chat_prompt_ids(student.tokenizer, question.prompt)
    result = QuestionResult()
    sampled_key = sampling_key(question, who, settings, max_new)
    teacher_keys = [teacher_key(sampled_key, teacher, model, settings) for teacher, model in who.teachers]

    sampled = cache.load_sampled(sampled_key) if cache is not None else None
    if sampled is None:
        result.question_rows = sample_rollouts(question, who, settings, max_new, prompt_ids, result)
        plans: list[NodePlan] | None = None
    else:
        result.sampled_now = False
        result.question_rows, plan_rows = sampled
        plans = [_plan_from_row(row) for row in plan_rows]
    progress.advance("rollouts", len(result.question_rows))
    rollouts = rollouts_of(result.question_rows)
    views = [RolloutView(row["rollout_id"], row["response"], row["correct"]) for row in result.question_rows]

    # teacher rows are reused only on top of reused sampling: freshly sampled plans (e.g. after the sampled entry
    # was deleted, on a GPU whose sampling is not bit-reproducible) must never meet rows scored on other plans
    rows_by_teacher: list[list[dict] | None] = [
        cache.load_rows(key, teacher.name) if cache is not None and plans is not None else None
        for (teacher, _), key in zip(who.teachers, teacher_keys)]
    todo = [index for index, rows in enumerate(rows_by_teacher) if rows is None]
    for index in todo:
        rows_by_teacher[index] = []
    new_plans: list[NodePlan] = []
    for rollout, question_row in zip(rollouts, result.question_rows):
        if rollout.tokens and (plans is None or todo):
            rollout_plans = None if plans is None else [p for p in plans if p.rollout_id == rollout.rollout_id]
            made, rows = _rollout_work(question, rollout, question_row, prompt_ids, views, who, todo, settings,
                                       max_new, progress, result, rollout_plans)
            new_plans.extend(made)
            for index, teacher_rows in zip(todo, rows):
                rows_by_teacher[index].extend(teacher_rows)
        progress.advance("teacher passes", len(who.teachers))

    if cache is not None:
        if plans is None:
            cache.save_sampled(sampled_key, result.question_rows, [_plan_row(p) for p in new_plans], QUESTION_SCHEMA)
        for index in todo:
            cache.save_rows(teacher_keys[index], rows_by_teacher[index], NODE_SCHEMA)
    # one row per (node, teacher), nodes in rollout and position order, teachers in the order given: the same
    # records whether a teacher's rows were computed now or read back
    for node_rows in zip(*rows_by_teacher):
        result.node_rows.extend(node_rows)
    return result


def sample_rollouts(question: Question, who: Participants, settings: Settings, max_new: int,
                    prompt_ids: list[int], result: QuestionResult) -> list[dict[str, Any]]:
    """G seeded rollouts of the question, graded: its ``questions.parquet`` rows (tokens added to ``result``)."""
    task = who.task
    rollouts = who.sampler.rollouts(prompt_ids, settings.rollouts, max_new, temperature=settings.temperature,
                                    seed_parts=(who.seed, question.id, "rollouts"), is_final=task.answer_is_final)
    texts = [who.student.tokenizer.decode(list(g.tokens), skip_special_tokens=True) for g in rollouts]
    grades = [task.grade(question, text) for text in texts]
    rewards = np.array([float(g.correct) for g in grades])
    advantages = rewards - rewards.mean()
    result.generated_tokens += sum(len(g.tokens) for g in rollouts)
    return [{
        "task": task.name, "student": who.student_name, "question_id": question.id, "rollout_id": r,
        "prompt": question.prompt, "prompt_tokens": len(prompt_ids), "response": texts[r],
        "response_tokens": len(gen.tokens), "response_token_ids": list(gen.tokens),
        "finish_reason": gen.finish_reason, "extracted": grade.extracted, "gold": question.gold,
        "correct": grade.correct, "grpo_advantage": float(advantages[r]), "nonfinite_positions": 0,
    } for r, (gen, grade) in enumerate(zip(rollouts, grades))]


def rollouts_of(question_rows: Sequence[dict[str, Any]]) -> list[Rollout]:
    return [Rollout(row["rollout_id"], tuple(row["response_token_ids"]), row["correct"], row["grpo_advantage"])
            for row in question_rows]


def _teacher_logits(teacher: Teacher, model: LoadedModel, inputs: ContextInputs, tokens: Sequence[int]):
    """One forward pass per (teacher, rollout): q_t at every response position, [n, V] float32, and the teacher's
    context text (``context_text``: None when it is the student's own prompt or cannot be built).

    The logits are the student marker when the teacher *is* the student (same model, same prompt), and None when
    the teacher's context cannot be built for this question.
    """
    if teacher.is_student_itself:
        return _SAME_AS_STUDENT, None
    text = teacher_prompt(teacher, inputs)
    if text is None:
        return None, None
    shown = None if text == inputs.question.prompt else text
    ids = chat_prompt_ids(model.tokenizer, text) + list(tokens)
    logits = forward_logits(model, ids, logits_to_keep=len(tokens) + 1)[: len(tokens)]
    # a teacher may carry unused padding rows beyond the student's vocabulary (check_same_tokenizer allows only
    # that): q_t is over the student's vocabulary, so the padding rows are dropped before any softmax
    return (logits[:, : inputs.student.vocab_size] if inputs.student is not None else logits), shown


def _rollout_work(question: Question, rollout: Rollout, question_row: dict, prompt_ids: list[int], views,
                  who: Participants, todo: Sequence[int], settings: Settings, max_new: int, progress: Progress,
                  result: QuestionResult, plans: list[NodePlan] | None) -> tuple[list[NodePlan], list[list[dict]]]:
    """One rollout: plan its nodes (when ``plans`` is None) and score them for the teachers at ``todo``.

    Returns the plans made now (empty when given) and, per teacher in ``todo``, its node rows.
    """
    student, y = who.student, list(rollout.tokens)
    n = len(y)
    # one pass over prompt + response: p at every position, and the KV cache every node's branches start from
    full_cache, logits = prefill(student, prompt_ids + y, logits_to_keep=n + 1)
    student_logits = logits[:n]  # row i is the distribution y_i was sampled from
    inputs = ContextInputs(who.task, question, rollout.rollout_id, views, student=student, seed=who.seed,
                           state=who.state)
    planning = plans is None
    # under disagreement priority every teacher takes part in choosing the nodes
    needed = range(len(who.teachers)) if planning and settings.priority == "disagreement" else todo
    teacher_logits, context_texts = {}, {}
    for index in needed:
        teacher, model = who.teachers[index]
        teacher_logits[index], context_texts[index] = _teacher_logits(teacher, model, inputs, y)
        result.teacher_passes += int(isinstance(teacher_logits[index], torch.Tensor))

    made: list[NodePlan] = []
    if planning:
        plans = made
        made.extend(_plan_nodes(question, rollout, question_row, prompt_ids, student_logits, teacher_logits,
                                full_cache, who, settings, max_new, progress, result))
    del full_cache

    grpo_loss = next(loss for loss in who.losses if not loss.uses_teacher)
    teacher_losses = [loss for loss in who.losses if loss.uses_teacher]
    rows: list[list[dict]] = [[] for _ in todo]
    for plan in plans:
        position = plan.position
        z = student_logits[position].double()
        logp = torch.log_softmax(z, dim=-1).cpu()
        # g* weighs by the sampling policy p^T = softmax(z / T) (METHOD, Temperature); the losses stay on p
        logp_sampling = logp if settings.temperature == 1.0 else torch.log_softmax(z / settings.temperature, -1).cpu()
        support = list(plan.support_token_ids)
        ideals = IdealGradients.of(plan, logp_sampling[support].exp().numpy())
        base = _node_columns(question, rollout, plan, logp, ideals, who, grpo_loss, n)
        for slot, index in enumerate(todo):
            teacher, _ = who.teachers[index]
            q_logits = teacher_logits[index]
            row = dict(base, teacher=teacher.name, context_text=context_texts[index],
                       context_choice=teacher.choice(inputs) if teacher.choice else None)
            if q_logits is None:
                row.update(_unscored_columns(teacher_losses, context_ok=False))
            elif q_logits is not _SAME_AS_STUDENT and not bool(torch.isfinite(q_logits[position]).all()):
                row.update(_unscored_columns(teacher_losses, context_ok=True))  # marked, and out of every average
            else:
                logq = logp if q_logits is _SAME_AS_STUDENT else torch.log_softmax(q_logits[position].double(), -1).cpu()
                row.update(_teacher_columns(logp, logq, y[position], rollout.advantage, support, ideals,
                                            teacher_losses, settings.jsd_beta))
            rows[slot].append(row)
    return made, rows


def _plan_nodes(question, rollout: Rollout, question_row: dict, prompt_ids, student_logits, teacher_logits,
                full_cache, who: Participants, settings: Settings, max_new: int, progress: Progress,
                result: QuestionResult) -> list[NodePlan]:
    """METHOD's node selection and support, then the forced continuations of every node of the rollout."""
    y, n = list(rollout.tokens), len(rollout.tokens)
    finite = torch.isfinite(student_logits).all(dim=-1).cpu()
    question_row["nonfinite_positions"] = int((~finite).sum())
    scored = [q for q in teacher_logits.values() if isinstance(q, torch.Tensor)]
    if settings.priority == "disagreement":
        priority = torch.zeros(n)
        for q_logits in scored:  # fmax: a teacher with non-finite logits at a position does not veto the others
            priority = torch.fmax(priority, tv_rows(student_logits, q_logits).cpu())
    else:
        priority = entropy_rows(student_logits).cpu()
    priority = torch.where(finite, priority, torch.nan)  # non-finite student logits: never a node
    nodes = select_nodes(priority.tolist(), settings.nodes_per_window)
    supports = []
    for position, _ in nodes:
        logp = torch.log_softmax(student_logits[position].double(), dim=-1).cpu()
        extra = [int(q[position].argmax()) for q in scored] if settings.priority == "disagreement" else []
        supports.append(support_tokens(logp, y[position], settings.top_k, extra, MIN_SUPPORT_PROB))
    outcomes = branch_nodes(who, question, prompt_ids, rollout, list(zip([p for p, _ in nodes], supports)),
                            settings, max_new, progress, result, prefix_cache=full_cache)
    return [NodePlan(rollout.rollout_id, position, window, float(priority[position]), tuple(support),
                     _ints(counts.correct), _ints(counts.trials),
                     (_ints(counts.half_correct[0]), _ints(counts.half_trials[0]),
                      _ints(counts.half_correct[1]), _ints(counts.half_trials[1])))
            for (position, window), support, counts in zip(nodes, supports, outcomes)]


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def branch_nodes(who: Participants, question: Question, prompt_ids: Sequence[int], rollout: Rollout,
                 nodes: Sequence[tuple[int, Sequence[int]]], settings: Settings, max_new: int,
                 progress: Progress | None = None, result: QuestionResult | None = None,
                 prefix_cache: Any = None) -> list[SuccessCounts]:
    """M forced continuations per support token of every ``(position, support)`` node of one rollout, graded.

    All of the rollout's continuations go to the backend in one call (the transformers backend batches them over
    the rollout's one KV cache, ``prefix_cache`` when given). Returns per node its :class:`SuccessCounts`; the
    rollout itself is one more trial of its sampled token (``support[0]``) in the totals, in neither half.
    Generated tokens are added to ``result.generated_tokens``.
    """
    progress = progress or NoProgress()
    task, y, m = who.task, list(rollout.tokens), settings.continuations
    first_half = (m + 1) // 2  # continuations [0, first_half) of each token form half A, the rest half B
    requests, owners = [], []
    for node_index, (position, support) in enumerate(nodes):
        for support_index, token in enumerate(support):
            for j in range(m):
                requests.append(Continuation(position, int(token), max_new - position))
                owners.append((node_index, support_index, position, int(j >= first_half)))
    progress.add_total("branch continuations", len(requests))
    generated = who.sampler.continuations(
        prompt_ids, y, requests, temperature=settings.temperature, is_final=task.answer_is_final,
        seed_parts=(who.seed, question.id, rollout.rollout_id, "branches"), prefix_cache=prefix_cache,
        on_progress=lambda done: progress.advance("branch continuations", done))
    # per node: [half][correct or trials][support token]
    counts = [np.zeros((2, 2, len(support)), dtype=np.int64) for _, support in nodes]
    for (node_index, support_index, position, half), branch in zip(owners, generated):
        text = who.student.tokenizer.decode(y[:position] + list(branch.tokens), skip_special_tokens=True)
        counts[node_index][half, 0, support_index] += int(task.grade(question, text).correct)
        counts[node_index][half, 1, support_index] += 1
        if result is not None:
            result.generated_tokens += len(branch.tokens)
    outcomes = []
    for node in counts:
        correct, trials = node[0, 0] + node[1, 0], node[0, 1] + node[1, 1]
        correct[0] += int(rollout.correct)  # the rollout is one more trial of its sampled token
        trials[0] += 1
        outcomes.append(SuccessCounts(correct, trials, (node[0, 0], node[1, 0]), (node[0, 1], node[1, 1])))
    return outcomes


@dataclass(frozen=True)
class IdealGradients:
    """g* of one node from all its trials (``full``) and from each half of its continuations (``halves``, for the
    split-half reliability); a half without trials for some token, or whose S_hat are all equal, is all zeros."""

    full: np.ndarray
    halves: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, plan: NodePlan, p_sampling: np.ndarray) -> "IdealGradients":
        """``p_sampling``: the sampling policy's probabilities p^T on the support, in support order."""
        full = ideal_gradient(p_sampling, success_rates(plan.succ_correct, plan.succ_trials))
        correct_a, trials_a, correct_b, trials_b = plan.halves
        halves = tuple(ideal_gradient(p_sampling, success_rates(c, t)) if min(t) > 0 else np.zeros(full.size)
                       for c, t in ((correct_a, trials_a), (correct_b, trials_b)))
        return cls(full, halves)

    @property
    def informative(self) -> bool:
        return bool(np.any(self.full != 0.0))

    def alignments(self, d: np.ndarray, name: str) -> dict[str, float]:
        """``align_<name>`` and its two half-sample versions ``align_<name>_a`` / ``_b`` (NaN where undefined)."""
        return {f"align_{name}": cosine(self.full, d), f"align_{name}_a": cosine(self.halves[0], d),
                f"align_{name}_b": cosine(self.halves[1], d)}


def _node_columns(question: Question, rollout: Rollout, plan: NodePlan, logp: torch.Tensor, ideals: IdealGradients,
                  who: Participants, grpo_loss: Loss, n: int) -> dict[str, Any]:
    """The columns every teacher's row of a node shares: position, support, S_hat, g* and the GRPO alignment."""
    support, sampled = list(plan.support_token_ids), rollout.tokens[plan.position]
    grpo_d = project_to_support(
        grpo_loss.full_direction(NodeDistributions(logp, None, sampled, rollout.advantage)), support)
    correct_a, trials_a, correct_b, trials_b = plan.halves
    return {
        "task": who.task.name, "student": who.student_name, "question_id": question.id,
        "rollout_id": rollout.rollout_id, "position": plan.position, "rollout_len": n, "depth_norm": plan.position / n,
        "window": plan.window, "priority": plan.priority, "entropy": entropy(logp),
        "rollout_correct": rollout.correct, "support_token_ids": support, "sampled_token_id": sampled,
        "grpo_advantage": rollout.advantage, "student_logprobs": logp[support].tolist(),
        "succ_correct": list(plan.succ_correct), "succ_trials": list(plan.succ_trials),
        "succ_correct_a": list(correct_a), "succ_trials_a": list(trials_a),
        "succ_correct_b": list(correct_b), "succ_trials_b": list(trials_b),
        "ideal_grad": ideals.full.tolist(), "ideal_norm": float(np.linalg.norm(ideals.full)),
        "informative": ideals.informative,
        **ideals.alignments(grpo_d, grpo_loss.name),  # NaN where A = 0 (all G rollouts graded alike)
        "dnorm_grpo": float(np.linalg.norm(grpo_d)),
    }


def _plan_row(plan: NodePlan) -> dict[str, Any]:
    return {name: [list(v) for v in value] if name == "halves" else list(value) if isinstance(value, tuple) else value
            for name, value in plan.__dict__.items()}


def _plan_from_row(row: dict[str, Any]) -> NodePlan:
    return NodePlan(**{name: tuple(tuple(v) for v in value) if name == "halves"
                       else tuple(value) if isinstance(value, list) else value for name, value in row.items()})


# ------------------------------------------------------------------------------------------------ cache keys


def teacher_identity(teacher: Teacher, model: LoadedModel) -> dict[str, Any]:
    """Everything a teacher's q depends on besides the question and the rollout."""
    return {"name": teacher.name, "variant": teacher.variant, "model": model_fingerprint(model),
            "code": code_fingerprint(source_file(teacher.context)) if teacher.context is not None else ""}


def sampling_key(question: Question, who: Participants, settings: Settings, max_new: int) -> dict[str, Any]:
    """Everything the sampling phase of one question depends on (see ``harness.cache``)."""
    key = {
        "kind": "sampled", "format": CACHE_FORMAT, "code": code_fingerprint(source_file(who.task)),
        "libraries": library_versions(), "task": who.task.name, "student_name": who.student_name,
        "question": question_fingerprint(question), "student": model_fingerprint(who.student),
        "backend": who.sampler.name, "seed": who.seed, "max_new_tokens": max_new,
        "min_support_prob": MIN_SUPPORT_PROB,
        "settings": {"rollouts": settings.rollouts, "temperature": settings.temperature,
                     "nodes_per_window": settings.nodes_per_window, "top_k": settings.top_k,
                     "continuations": settings.continuations, "priority": settings.priority},
    }
    if settings.priority == "disagreement":  # the teachers choose the nodes
        key["teachers"] = [teacher_identity(teacher, model) for teacher, model in who.teachers]
    return key


def teacher_key(sampled_key: dict[str, Any], teacher: Teacher, model: LoadedModel,
                settings: Settings) -> dict[str, Any]:
    return {"kind": "teacher", "format": CACHE_FORMAT, "sampled": digest(sampled_key),
            "teacher": teacher_identity(teacher, model), "jsd_beta": settings.jsd_beta, "losses": list(LOSS_NAMES)}


# ------------------------------------------------------------------------------------------------ row columns


def _unscored_columns(teacher_losses: Sequence[Loss], context_ok: bool) -> dict[str, Any]:
    """A teacher row without q: its context could not be built (``context_ok`` False), or its logits at the node
    are not finite (``logits_finite`` False). Every q-dependent column is NaN, so no average counts the row."""
    nan = float("nan")
    columns = {"teacher_logprobs": None, "context_ok": context_ok,
               "logits_finite": False if context_ok else None,  # no context, no logits: unknown rather than finite
               "kl_student_teacher": nan, "kl_teacher_student": nan, "l2": nan, "cos_pq": nan, "tv": nan,
               "topk_shared_mass": nan, "jsd_rbar": nan}
    for loss in teacher_losses:
        columns.update({f"align_{loss.name}{half}": nan for half in ("", "_a", "_b")})
        columns[f"dnorm_{loss.name}"] = nan
    return columns


def _teacher_columns(logp, logq, sampled: int, advantage: float, support: list[int], ideals: IdealGradients,
                     teacher_losses: Sequence[Loss], jsd_beta: float) -> dict[str, Any]:
    columns: dict[str, Any] = {"teacher_logprobs": logq[support].tolist(), "context_ok": True, "logits_finite": True}
    columns.update(divergences(logp, logq))
    columns["jsd_rbar"] = jsd_rbar(logp, logq, jsd_beta)
    # q == p exactly (the student as its own teacher): every distillation gradient is analytically zero; write
    # exact zeros rather than the round-off of formulas such as log p - log M that vanish only on paper
    identical = torch.equal(logp, logq)
    nodes = NodeDistributions(logp, logq, sampled, advantage)
    for loss in teacher_losses:
        d = np.zeros(len(support) + 1) if identical else project_to_support(loss.full_direction(nodes), support)
        columns.update(ideals.alignments(d, loss.name))  # NaN where g* = 0 (uninformative) or d = 0
        columns[f"dnorm_{loss.name}"] = float(np.linalg.norm(d))
    return columns
