"""The diagnostic for one question: rollouts, targeted branching, S_hat, g*, distillation gradients, alignment.

This is METHOD.md's "Targeted rollouts", "Distillation gradients" and "Alignment" sections in code, producing the
rows of ``nodes.parquet`` and ``questions.parquet`` for one question. Orchestration, I/O and progress live in
``harness.runner``.
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
    is_informative,
    project_to_support,
    success_rates,
    support_tokens,
)
from harness.generation import (
    STOP_CHECK_TAIL_TOKENS,
    Branch,
    forward_logits,
    generate_branches,
    make_generator,
    prefill,
    rows_per_batch,
)
from harness.losses import Loss, NodeDistributions, jsd_rbar
from harness.models import LoadedModel
from harness.prompting import chat_prompt_ids
from harness.selection import entropy_rows, select_nodes, tv_rows
from harness.task import Question, Task
from harness.teacher import ContextInputs, RolloutView, Teacher

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
    generated_tokens: int = 0  # rollouts + branch continuations, for throughput figures


_SAME_AS_STUDENT = object()  # marker: teacher distribution is the student's own, bit for bit


def diagnose_question(question: Question, who: Participants, settings: Settings, progress: Progress) -> QuestionResult:
    task, student = who.task, who.student
    max_new = settings.max_new_tokens or task.max_new_tokens
    prompt_ids = chat_prompt_ids(student.tokenizer, question.prompt)
    result = QuestionResult()

    cache, logits = prefill(student, prompt_ids)
    rollouts = generate_branches(
        student, cache, [Branch(len(prompt_ids), None, max_new)] * settings.rollouts,
        temperature=settings.temperature, first_logits=logits[-1], is_final=task.answer_is_final,
        generator=make_generator(student.device, who.seed, question.id, "rollouts"),
    )
    del cache
    progress.advance("rollouts", len(rollouts))
    texts = [student.tokenizer.decode(list(g.tokens), skip_special_tokens=True) for g in rollouts]
    grades = [task.grade(question, text) for text in texts]
    rewards = np.array([float(g.correct) for g in grades])
    advantages = rewards - rewards.mean()
    result.generated_tokens += sum(len(g.tokens) for g in rollouts)
    views = [RolloutView(r, texts[r], grades[r].correct) for r in range(len(rollouts))]
    for r, (gen, grade) in enumerate(zip(rollouts, grades)):
        result.question_rows.append({
            "task": task.name, "student": who.student_name, "question_id": question.id, "rollout_id": r,
            "prompt_tokens": len(prompt_ids), "response": texts[r], "response_tokens": len(gen.tokens),
            "response_token_ids": list(gen.tokens),
            "finish_reason": gen.finish_reason, "extracted": grade.extracted, "gold": question.gold,
            "correct": grade.correct, "grpo_advantage": float(advantages[r]),
        })
    for r, gen in enumerate(rollouts):
        if gen.tokens:
            rollout = _Rollout(r, list(gen.tokens), grades[r].correct, float(advantages[r]))
            _diagnose_rollout(question, rollout, prompt_ids, views, who, settings, max_new, progress, result)
    return result


@dataclass(frozen=True)
class _Rollout:
    rollout_id: int
    tokens: list[int]
    correct: bool
    advantage: float


def _teacher_logits(teacher: Teacher, model: LoadedModel, inputs: ContextInputs, tokens: list[int]):
    """One forward pass per (teacher, rollout): q_t at every response position, [n, V] float32.

    Returns the student marker when the teacher *is* the student (same model, same prompt), and None when the
    teacher's context cannot be built for this question.
    """
    if teacher.is_student_itself:
        return _SAME_AS_STUDENT
    text = teacher.context(inputs) if teacher.context is not None else inputs.question.prompt
    if text is None:
        return None
    ids = chat_prompt_ids(model.tokenizer, text) + tokens
    logits = forward_logits(model, ids, logits_to_keep=len(tokens) + 1)[: len(tokens)]
    # a teacher may carry unused padding rows beyond the student's vocabulary (check_same_tokenizer allows only
    # that): q_t is over the student's vocabulary, so the padding rows are dropped before any softmax
    return logits[:, : inputs.student.vocab_size] if inputs.student is not None else logits


def _diagnose_rollout(question, rollout: _Rollout, prompt_ids, views, who: Participants, settings: Settings,
                      max_new: int, progress: Progress, result: QuestionResult) -> None:
    student, task, y = who.student, who.task, rollout.tokens
    n = len(y)
    # one pass over prompt + response: p at every position, and the KV cache every node's branches start from
    full_cache, logits = prefill(student, prompt_ids + y, logits_to_keep=n + 1)
    student_logits = logits[:n]  # row i is the distribution y_i was sampled from
    inputs = ContextInputs(task, question, rollout.rollout_id, views, student=student, seed=who.seed)
    teacher_logits = []
    for teacher, model in who.teachers:
        teacher_logits.append(_teacher_logits(teacher, model, inputs, y))
        progress.advance("teacher passes")

    finite = torch.isfinite(student_logits).all(dim=-1)
    if settings.priority == "disagreement":
        priority = torch.zeros(n)
        for q_logits in teacher_logits:
            if isinstance(q_logits, torch.Tensor):
                priority = torch.maximum(priority, tv_rows(student_logits, q_logits).cpu())
    else:
        priority = entropy_rows(student_logits).cpu()
    priority = torch.where(finite.cpu(), priority, torch.nan)  # non-finite logits: never a node
    nodes = select_nodes(priority.tolist(), settings.nodes_per_window)

    plans = []
    for position, window in nodes:
        logp = torch.log_softmax(student_logits[position].double(), dim=-1).cpu()
        extra = []
        if settings.priority == "disagreement":
            extra = [int(q[position].argmax()) for q in teacher_logits if isinstance(q, torch.Tensor)]
        plans.append((position, window, logp, support_tokens(logp, y[position], settings.top_k, extra,
                                                              MIN_SUPPORT_PROB)))
    outcomes = _branch_all(student, task, question, full_cache, len(prompt_ids), rollout,
                           [(position, support) for position, _, _, support in plans], settings, max_new, who.seed,
                           progress, result)
    del full_cache

    grpo_loss = next(loss for loss in who.losses if not loss.uses_teacher)
    teacher_losses = [loss for loss in who.losses if loss.uses_teacher]
    for (position, window, logp, support), (correct, trials) in zip(plans, outcomes):
        s_hat = success_rates(correct, trials)
        p_support = logp[support].exp().numpy()
        ideal = ideal_gradient(p_support, s_hat)
        informative = is_informative(s_hat)
        base = {
            "task": task.name, "student": who.student_name, "question_id": question.id,
            "rollout_id": rollout.rollout_id, "position": position, "rollout_len": n, "depth_norm": position / n,
            "window": window, "priority": float(priority[position]), "entropy": entropy(logp),
            "rollout_correct": rollout.correct, "support_token_ids": support, "sampled_token_id": y[position],
            "grpo_advantage": rollout.advantage, "student_logprobs": logp[support].tolist(),
            "succ_correct": correct.tolist(), "succ_trials": trials.tolist(), "ideal_grad": ideal.tolist(),
            "ideal_norm": float(np.linalg.norm(ideal)), "informative": informative,
        }
        grpo_d = project_to_support(
            grpo_loss.full_direction(NodeDistributions(logp, None, y[position], rollout.advantage)), support)
        base["align_grpo"] = cosine(ideal, grpo_d) if informative else float("nan")
        base["dnorm_grpo"] = float(np.linalg.norm(grpo_d))
        for (teacher, _), q_logits in zip(who.teachers, teacher_logits):
            row = dict(base, teacher=teacher.name,
                       context_choice=teacher.choice(question.id, rollout.rollout_id) if teacher.choice else None)
            if q_logits is None:
                row.update(_no_context_columns(teacher_losses))
            else:
                logq = logp if q_logits is _SAME_AS_STUDENT else torch.log_softmax(q_logits[position].double(), -1).cpu()
                row.update(_teacher_columns(logp, logq, y[position], rollout.advantage, support, ideal,
                                            informative, teacher_losses, settings.jsd_beta))
            result.node_rows.append(row)


def _branch_all(student, task, question, full_cache, prompt_len: int, rollout: _Rollout,
                nodes: Sequence[tuple[int, list[int]]], settings: Settings, max_new: int, seed: int,
                progress: Progress, result: QuestionResult) -> list[tuple[np.ndarray, np.ndarray]]:
    """M forced continuations per support token of every node of one rollout, graded.

    All branches of the rollout are generated together in batches over its one KV cache: a node's prefix is never
    recomputed, and nodes at different depths share a batch. Returns per node and support token
    (correct, trials); the rollout itself is one more trial of its sampled token (support[0]).
    """
    y, m = rollout.tokens, settings.continuations
    requests, owners = [], []
    for node_index, (position, support) in enumerate(nodes):
        tail = tuple(y[max(0, position - STOP_CHECK_TAIL_TOKENS):position])
        for support_index, token in enumerate(support):
            for _ in range(m):
                requests.append(Branch(prompt_len + position, token, max_new - position, tail))
                owners.append((node_index, support_index, position))
    progress.add_total("branch continuations", len(requests))
    generator = make_generator(student.device, seed, question.id, rollout.rollout_id, "branches")
    outcomes = [(np.zeros(len(support), dtype=np.int64), np.zeros(len(support), dtype=np.int64))
                for _, support in nodes]
    batch = rows_per_batch(student.device, prompt_len + max_new)
    start = 0
    while start < len(requests):
        chunk = requests[start:start + batch]
        try:
            generated = generate_branches(student, full_cache, chunk, temperature=settings.temperature,
                                          generator=generator, is_final=task.answer_is_final)
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2  # out of GPU memory: halve the batch and carry on
            torch.cuda.empty_cache()
            continue
        for (node_index, support_index, position), branch in zip(owners[start:start + batch], generated):
            text = student.tokenizer.decode(y[:position] + list(branch.tokens), skip_special_tokens=True)
            correct, trials = outcomes[node_index]
            correct[support_index] += int(task.grade(question, text).correct)
            trials[support_index] += 1
            result.generated_tokens += len(branch.tokens)
        progress.advance("branch continuations", len(chunk))
        start += len(chunk)
    for correct, trials in outcomes:
        correct[0] += int(rollout.correct)
        trials[0] += 1
    return outcomes


def _no_context_columns(teacher_losses: Sequence[Loss]) -> dict[str, Any]:
    nan = float("nan")
    columns = {"teacher_logprobs": None, "context_ok": False, "kl_student_teacher": nan, "kl_teacher_student": nan,
               "l2": nan, "cos_pq": nan, "tv": nan, "topk_shared_mass": nan, "jsd_rbar": nan}
    for loss in teacher_losses:
        columns[f"align_{loss.name}"] = nan
        columns[f"dnorm_{loss.name}"] = nan
    return columns


def _teacher_columns(logp, logq, sampled: int, advantage: float, support: list[int], ideal: np.ndarray,
                     informative: bool, teacher_losses: Sequence[Loss], jsd_beta: float) -> dict[str, Any]:
    columns: dict[str, Any] = {"teacher_logprobs": logq[support].tolist(), "context_ok": True}
    columns.update(divergences(logp, logq))
    columns["jsd_rbar"] = jsd_rbar(logp, logq, jsd_beta)
    # q == p exactly (the student as its own teacher): every distillation gradient is analytically zero; write
    # exact zeros rather than the round-off of formulas such as log p - log M that vanish only on paper
    identical = torch.equal(logp, logq)
    nodes = NodeDistributions(logp, logq, sampled, advantage)
    for loss in teacher_losses:
        d = np.zeros(len(support) + 1) if identical else project_to_support(loss.full_direction(nodes), support)
        columns[f"align_{loss.name}"] = cosine(ideal, d) if informative else float("nan")
        columns[f"dnorm_{loss.name}"] = float(np.linalg.norm(d))
    return columns
