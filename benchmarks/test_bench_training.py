"""``opd validate``'s training step against a plain forward + backward + AdamW step of the same shapes.

Workload: one on-policy distillation step of ``smollm2-135m`` on BoolQ training questions (batch 2 x 4 rollouts,
teacher ``self:correct-demo``, loss rkl): sampling the rollouts, the teacher's teacher-forced passes, the student's
forward and backward through TRL's per-token loss, the AdamW step. The plain side runs the student's forward and
backward (mean log-likelihood of the same token sequences, same right-padded shapes) and one AdamW step, nothing else.
Figures in ``extra_info``: response tokens trained per second for each side and their ratio; the step's share spent
outside the plain forward/backward (sampling and teacher passes) is what the ratio shows. About a minute on 2 cores.
"""
from __future__ import annotations

import time

import pytest
from local import local_data, local_student

pytest.importorskip("trl")


def _step_and_shapes(student, data_dir):
    import harness.validate as validate
    from harness.task import resolve_task
    from harness.teacher import RunState, resolve_teacher

    task = resolve_task("boolq")
    questions = list(task.load(data_dir, 400))[300:400]
    base = validate.frozen_copy(student)
    initial = {k: v.detach().clone() for k, v in student.model.state_dict().items()}
    trainer = validate.Trainer(validate.StudentCopies(student, initial, base), task, questions,
                               validate.Training(batch=2, rollouts=4),
                               validate.Target(resolve_teacher("self:correct-demo"), base), 0, RunState())
    shapes = []
    original = validate.response_logits

    def recording(model, prefixes, responses, vocab, pad_id=0):
        if model is student.model:
            shapes.append((list(map(list, prefixes)), list(map(list, responses))))
        return original(model, prefixes, responses, vocab, pad_id)

    validate.response_logits = recording
    try:
        import torch

        optimizer = torch.optim.AdamW(student.model.parameters(), lr=1e-5)
        for parameter in student.model.parameters():
            parameter.requires_grad_(True)
        started = time.perf_counter()
        entry = trainer._step(0, validate.training_loss("rkl"), optimizer)
        seconds = time.perf_counter() - started
    finally:
        validate.response_logits = original
    student.model.load_state_dict(initial)
    return seconds, entry["tokens"], shapes


def _plain_step(student, shapes) -> float:
    import torch

    optimizer = torch.optim.AdamW(student.model.parameters(), lr=1e-5)
    started = time.perf_counter()
    optimizer.zero_grad()
    for prefixes, responses in shapes:
        sequences = [p + r for p, r in zip(prefixes, responses)]
        width = max(map(len, sequences))
        ids = torch.zeros((len(sequences), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
        logits = student.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        loss = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).mean()
        (-loss).backward()
    optimizer.step()
    return time.perf_counter() - started


def test_training_step_against_plain_forward_backward(benchmark):
    data_dir = local_data("boolq")
    student = local_student("smollm2-135m")
    outcome = {}

    def both():
        outcome["step_s"], outcome["tokens"], shapes = _step_and_shapes(student, data_dir)
        outcome["plain_s"] = _plain_step(student, shapes)
        outcome["sequences"] = sum(len(r) for _, r in shapes)
        outcome["positions"] = sum(len(p) + len(x) for ps, rs in shapes for p, x in zip(ps, rs))

    benchmark.pedantic(both, rounds=1, iterations=1)
    tokens = outcome["tokens"]
    benchmark.extra_info.update({
        "response_tokens": tokens, "sequences": outcome["sequences"], "positions": outcome["positions"],
        "step_seconds": round(outcome["step_s"], 2), "plain_forward_backward_seconds": round(outcome["plain_s"], 2),
        "step_tokens_per_s": round(tokens / outcome["step_s"], 2),
        "plain_tokens_per_s": round(tokens / outcome["plain_s"], 2),
        "step_over_plain": round(outcome["step_s"] / outcome["plain_s"], 2),
    })
