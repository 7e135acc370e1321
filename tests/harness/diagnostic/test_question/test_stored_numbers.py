"""One question through the diagnostic, every stored number checked against an independent computation.

- p and q_t at a node at position i equal independent forward passes over ``prompt + y[:i]`` (the student's prompt,
  and the teacher's context prompt), so a row read one position early or late fails;
- g* uses the sampling policy p^T = softmax(z / T) (METHOD, Temperature), recomputed from those passes;
- the continuation counts split into two halves that add up to the totals, and each half's alignment is the cosine
  of that half's g* with the loss direction (METHOD, Reliability);
- a zero direction (the student as its own teacher; grpo when every rollout got the same grade) has no alignment.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.api.progress import NoProgress
from harness.api.task import resolve_task
from harness.diagnostic.losses import SupportView, resolve_loss
from harness.diagnostic.question import Participants, Settings, diagnose_question
from harness.sampling.models import load_model
from harness.sampling.prompting import chat_prompt_ids
from harness.sampling.teacher import ContextInputs, RolloutView, resolve_teacher
from harness.storage.records import LOSS_NAMES

TEACHERS = ("model:tiny-random:1", "self:correct-demo", "self")
TEMPERATURE = 0.8
M = 3  # odd on purpose: half A takes ceil(M/2) = 2 continuations per token, half B the other 1


@pytest.fixture(scope="module")
def diagnosed():
    student = load_model("tiny-random", "cpu")
    teachers = []
    for spec in TEACHERS:
        teacher = resolve_teacher(spec)
        teachers.append((teacher, student if teacher.model is None else load_model(teacher.model, "cpu")))
    who = Participants(resolve_task("test-parity"), student, "tiny-random", teachers,
                       [resolve_loss(name) for name in LOSS_NAMES], seed=3)
    settings = Settings(rollouts=4, continuations=M, temperature=TEMPERATURE, max_new_tokens=10)
    question = who.task.load(None)[1]
    return who, question, diagnose_question(question, who, settings, NoProgress())


def _last_logits(lm, ids) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(input_ids=torch.tensor([list(ids)])).logits[0, -1].double()


def _cos(g: np.ndarray, d: np.ndarray) -> float:
    norms = np.linalg.norm(g) * np.linalg.norm(d)
    return float(g @ d / norms) if norms > 0 else math.nan


def _ideal(p_t: np.ndarray, correct, trials) -> np.ndarray:
    s = np.asarray(correct, float) / np.asarray(trials, float)
    g = np.append(p_t * (s - p_t @ s / p_t.sum()), 0.0)
    return g if s.max() != s.min() else np.zeros_like(g)


def test_p_and_q_equal_independent_forward_passes_at_the_node(diagnosed):
    who, question, result = diagnosed
    tokens = {row["rollout_id"]: row["response_token_ids"] for row in result.question_rows}
    views = [RolloutView(r["rollout_id"], r["response"], r["correct"]) for r in result.question_rows]
    prompt = chat_prompt_ids(who.student.tokenizer, question.prompt)
    by_name = dict((teacher.name, (teacher, model)) for teacher, model in who.teachers)
    checked = 0
    for row in result.node_rows:
        prefix = tokens[row["rollout_id"]][: row["position"]]
        support = row["support_token_ids"]
        logp = torch.log_softmax(_last_logits(who.student, prompt + prefix), -1)
        np.testing.assert_allclose(row["student_logprobs"], logp[support].numpy(), atol=2e-5)
        teacher, model = by_name[row["teacher"]]
        if teacher.is_student_itself:
            assert row["teacher_logprobs"] == row["student_logprobs"]
            continue
        inputs = ContextInputs(who.task, question, row["rollout_id"], views, student=who.student, seed=who.seed)
        text = teacher.context(inputs) if teacher.context is not None else question.prompt
        logq = torch.log_softmax(_last_logits(model, chat_prompt_ids(model.tokenizer, text) + prefix), -1)
        np.testing.assert_allclose(row["teacher_logprobs"], logq[support].numpy(), atol=2e-5)
        checked += 1
    assert checked >= 10


def test_ideal_gradient_uses_the_sampling_policy_and_halves_add_up(diagnosed):
    who, question, result = diagnosed
    tokens = {row["rollout_id"]: row["response_token_ids"] for row in result.question_rows}
    prompt = chat_prompt_ids(who.student.tokenizer, question.prompt)
    losses = {name: resolve_loss(name) for name in LOSS_NAMES}
    informative = halves_checked = 0
    for row in result.node_rows:
        z = _last_logits(who.student, prompt + tokens[row["rollout_id"]][: row["position"]])
        p_t = torch.softmax(z / TEMPERATURE, -1)[row["support_token_ids"]].numpy()
        g = _ideal(p_t, row["succ_correct"], row["succ_trials"])
        np.testing.assert_allclose(row["ideal_grad"], g, rtol=1e-4, atol=1e-9)
        assert row["informative"] == bool(np.any(g != 0))
        informative += row["informative"]
        # halves: continuations only, [ceil(M/2), floor(M/2)] per token; with the rollout's own trial they add up
        rollout_trial = np.zeros(len(g) - 1, dtype=int)
        rollout_trial[0] = 1
        assert list(row["succ_trials_a"]) == [2] * (len(g) - 1) and list(row["succ_trials_b"]) == [1] * (len(g) - 1)
        np.testing.assert_array_equal(np.add(row["succ_trials_a"], row["succ_trials_b"]) + rollout_trial,
                                      row["succ_trials"])
        np.testing.assert_array_equal(np.add(row["succ_correct_a"], row["succ_correct_b"])
                                      + rollout_trial * int(row["rollout_correct"]), row["succ_correct"])
        if row["teacher_logprobs"] is None:
            continue
        view = SupportView(np.array(row["student_logprobs"]), np.array(row["teacher_logprobs"]), 0,
                           row["kl_student_teacher"], row["jsd_rbar"], row["grpo_advantage"])
        for name, loss in losses.items():
            d = loss.support_direction(view)
            for half in ("a", "b"):
                g_half = _ideal(p_t, row[f"succ_correct_{half}"], row[f"succ_trials_{half}"])
                expected = _cos(g_half, d)
                assert row[f"align_{name}_{half}"] == pytest.approx(expected, abs=1e-6, nan_ok=True)
                halves_checked += math.isfinite(expected)
    assert informative > 0 and halves_checked > 0


def test_zero_directions_have_no_alignment(diagnosed):
    who, _, result = diagnosed
    rows = [row for row in result.node_rows if row["informative"]]
    assert rows
    for row in rows:
        if row["teacher"] == "self":  # q == p: every distillation direction is exactly zero
            for name in LOSS_NAMES[:-1]:
                assert row[f"dnorm_{name}"] == 0.0 and math.isnan(row[f"align_{name}"])
        if row["grpo_advantage"] == 0.0:  # every rollout graded alike: A = 0
            assert row["dnorm_grpo"] == 0.0 and math.isnan(row["align_grpo"])
        else:
            assert math.isfinite(row["align_grpo"])


def test_grpo_has_no_alignment_where_every_rollout_got_the_same_grade():
    student = load_model("tiny-random", "cpu")
    who = Participants(resolve_task("test-parity"), student, "tiny-random", [(resolve_teacher("self"), student)],
                       [resolve_loss(name) for name in LOSS_NAMES], seed=0)
    settings = Settings(rollouts=2, continuations=2, max_new_tokens=8)
    rows = [row for question in who.task.load(None)
            for row in diagnose_question(question, who, settings, NoProgress()).node_rows if row["informative"]]
    alike = [row for row in rows if row["grpo_advantage"] == 0.0]
    assert alike and len(alike) < len(rows), "expected informative nodes on questions with and without A = 0"
    for row in rows:
        assert math.isnan(row["align_grpo"]) == (row["grpo_advantage"] == 0.0)
        assert (row["dnorm_grpo"] == 0.0) == (row["grpo_advantage"] == 0.0)


def test_outcome_columns_follow_the_rollouts(diagnosed):
    """Per node: the rollout's unparsed flag and the question's gold, and ``prefix_shared`` recomputed by brute
    force over the other rollouts' token ids and outcomes (position 0: every rollout shares the empty prefix)."""
    _, question, result = diagnosed
    rows = {row["rollout_id"]: row for row in result.question_rows}
    outcome = {r: "correct" if row["correct"] else "unparsed" if row["extracted"] is None else "incorrect"
               for r, row in rows.items()}
    seen = set()
    for node in result.node_rows:
        own = rows[node["rollout_id"]]
        assert node["rollout_unparsed"] == (own["extracted"] is None) and node["gold"] == question.gold
        prefix = tuple(own["response_token_ids"][: node["position"]])
        expected = any(tuple(rows[r]["response_token_ids"][: node["position"]]) == prefix
                       and len(rows[r]["response_token_ids"]) >= node["position"]
                       for r in rows if r != node["rollout_id"] and outcome[r] != outcome[node["rollout_id"]])
        assert node["prefix_shared"] == expected
        if node["position"] == 0:
            assert node["prefix_shared"] == (len(set(outcome.values())) > 1)
        seen.add(expected)
    assert len(set(outcome.values())) > 1 and seen == {True, False}, "expected shared and unshared prefixes"
