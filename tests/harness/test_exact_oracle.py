"""Exact-oracle test: a 4-token model with a 4-token horizon, where S_k(u) is computed by enumerating every future.

The harness's estimates (S_hat from M forced continuations per support token, g* from S_hat) must agree with the
exact values within binomial confidence bounds, get closer as M grows, and the stored alignments must be exactly
the cosine of the stored ideal gradient with the loss directions recomputed from the record's own columns.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
import torch

from harness.alignment import cosine, ideal_gradient
from harness.diagnostic import NoProgress, Participants, Settings, diagnose_question
from harness.losses import SupportView, resolve_loss
from harness.models import load_model
from harness.prompting import chat_prompt_ids
from harness.records import LOSS_NAMES
from harness.task import resolve_task
from harness.teacher import resolve_teacher

EOS = 3
HORIZON = 4


def _participants(seed: int = 0):
    student = load_model("test-oracle", "cpu")
    teacher_model = load_model("test-oracle:7", "cpu")
    teacher = resolve_teacher("model:test-oracle:7")
    losses = [resolve_loss(name) for name in LOSS_NAMES]
    return Participants(resolve_task("test-count-a"), student, "test-oracle", [(teacher, teacher_model)], losses, seed)


def _exact_success_function(who):
    """S for a full response prefix: probability that sampling onward from the student ends with R = 1."""
    model, task = who.student.model, who.task
    question = task.load(None)[0]
    prompt = chat_prompt_ids(who.student.tokenizer, question.prompt)

    def reward(tokens: tuple[int, ...]) -> float:
        text = who.student.tokenizer.decode(list(tokens), skip_special_tokens=True)
        return float(task.grade(question, text).correct)

    @lru_cache(maxsize=None)
    def success(tokens: tuple[int, ...]) -> float:
        if (tokens and tokens[-1] == EOS) or len(tokens) >= HORIZON:
            return reward(tokens)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + list(tokens)])).logits[0, -1].double()
        probs = torch.softmax(logits, -1).tolist()
        return sum(p * success(tokens + (t,)) for t, p in enumerate(probs))

    return question, success


def _run(m: int, seed: int = 0):
    who = _participants(seed)
    settings = Settings(rollouts=6, continuations=m, top_k=3, nodes_per_window=2, max_new_tokens=HORIZON)
    question = who.task.load(None)[0]
    result = diagnose_question(question, who, settings, NoProgress())
    return who, result


@pytest.fixture(scope="module")
def runs():
    return {m: _run(m) for m in (4, 400)}


def test_success_estimates_match_exact_enumeration(runs):
    errors = {}
    for m, (who, result) in runs.items():
        question, success = _exact_success_function(who)
        rollout_tokens = {}
        tokenizer = who.student.tokenizer
        for row in result.question_rows:
            rollout_tokens[row["rollout_id"]] = tokenizer(row["response"])["input_ids"]
        errs = []
        assert result.node_rows, "the oracle run produced no nodes"
        for row in result.node_rows:
            prefix = tuple(rollout_tokens[row["rollout_id"]][: row["position"]])
            for token, correct, trials in zip(row["support_token_ids"], row["succ_correct"], row["succ_trials"]):
                exact = success(prefix + (token,))
                estimate = correct / trials
                # 5-sigma binomial bound (plus one trial of slack for the tiny-M rows)
                bound = 5 * math.sqrt(max(exact * (1 - exact), 1e-12) / trials) + 1.0 / trials
                assert abs(estimate - exact) <= bound, (m, row["position"], token, estimate, exact, trials)
                errs.append(abs(estimate - exact))
            assert row["succ_trials"][0] == m + 1  # the rollout itself is one more trial of the sampled token
            assert all(t == m for t in row["succ_trials"][1:])
        errors[m] = float(np.mean(errs))
    assert errors[400] < errors[4]  # estimates converge as M grows


def test_ideal_gradient_converges_to_exact(runs):
    who, result = runs[400]
    question, success = _exact_success_function(who)
    tokenizer = who.student.tokenizer
    tokens = {row["rollout_id"]: tokenizer(row["response"])["input_ids"] for row in result.question_rows}
    checked = 0
    for row in result.node_rows:
        p = np.exp(np.array(row["student_logprobs"]))
        s_hat = np.array(row["succ_correct"]) / np.array(row["succ_trials"])
        np.testing.assert_allclose(row["ideal_grad"], ideal_gradient(p, s_hat), rtol=0, atol=1e-15)
        prefix = tuple(tokens[row["rollout_id"]][: row["position"]])
        s_exact = np.array([success(prefix + (t,)) for t in row["support_token_ids"]])
        g_exact = np.zeros(len(p) + 1)
        v_exact = p @ s_exact / p.sum()
        g_exact[:-1] = p * (s_exact - v_exact)
        # |g_hat - g| <= p_k (|dS_k| + |dV|) <= 2 p_k max|dS|; max|dS| within a 5-sigma binomial bound at M=400
        max_ds = 5 * 0.5 / math.sqrt(400) + 1 / 400
        assert np.all(np.abs(np.array(row["ideal_grad"]) - g_exact) <= 2 * np.append(p, 0) * max_ds + 1e-12)
        checked += 1
    assert checked


def test_alignment_recomputes_from_record_columns(runs):
    who, result = runs[400]
    losses = {loss.name: loss for loss in who.losses}
    informative = [row for row in result.node_rows if row["informative"]]
    assert informative, "expected informative nodes on the oracle task"
    for row in result.node_rows:
        view = SupportView(
            student_logprobs=np.array(row["student_logprobs"]),
            teacher_logprobs=np.array(row["teacher_logprobs"]),
            sampled_index=row["support_token_ids"].index(row["sampled_token_id"]),
            kl_student_teacher=row["kl_student_teacher"], jsd_rbar=row["jsd_rbar"], advantage=row["grpo_advantage"],
        )
        g = np.array(row["ideal_grad"])
        for name in LOSS_NAMES:
            d = losses[name].support_direction(view)
            expected = cosine(g, d) if row["informative"] else float("nan")
            # by hand, too: the cosine is the plain normalised dot product
            if row["informative"] and np.linalg.norm(d) > 0:
                assert expected == pytest.approx(g @ d / (np.linalg.norm(g) * np.linalg.norm(d)), abs=1e-12)
            assert row[f"align_{name}"] == pytest.approx(expected, abs=1e-9, nan_ok=True)
