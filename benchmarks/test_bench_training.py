"""``opd validate``'s training step against a plain forward + backward + AdamW step of the same shapes.

Workload: one on-policy distillation step of ``smollm2-135m`` on BoolQ training questions (batch 2 x 4 rollouts,
teacher ``self:correct-demo``, loss rkl): sampling the rollouts, the teacher's teacher-forced passes, the student's
forward and backward through TRL's per-token loss, the AdamW step. The plain side runs the student's forward and
backward (mean log-likelihood of the same token sequences, same right-padded shapes) and one AdamW step, nothing else.
Figures in ``extra_info``: response tokens trained per second for each side and their ratio; the step's share spent
outside the plain forward/backward (sampling and teacher passes) is what the ratio shows. About a minute on 2 cores.

The training sampler (:func:`test_training_sampler_by_wait_policy`): the rollouts of one step in child processes
with OpenMP threads spinning (no ``OMP_WAIT_POLICY``: a plain ``python`` process) and sleeping (``PASSIVE``, what
``opd`` sets), in the order spinning / passive / spinning; inside each, the backend sampler the loop uses against
the previous direct ``generate_branches`` sampler, A-B-A (``benchmarks/training_sampler.py``). Figures: each
process's tokens/s and the spinning-over-passive slowdown. Measured
on the shared 2 cores (load average 6.4-7.7, two other heavy processes; 101 tokens of 8 rows, at most 16 steps):
spinning 4.4 and 2.3 tokens/s, passive 24.6 (7.3x); backend over previous sampler 0.63 / 0.91 / 1.41 (noise, no
direction), the same tokens in every run. One whole step (a separate probe, same load): 333 s spinning (sampling
132 s, teacher passes 39 s) against 62 s passive (10 s, 8 s); the step benchmark above, passive: 56 s against 32 s
for the plain forward + backward (1.74x). The wait policy, not the sampler, was the cost. Alone (2026-12-03, nothing
else running; docs/benchmarks.md): the step 24.7 s against 11.3 s (2.18x), and spinning threads sample 1.27x faster
than passive ones: PASSIVE costs a fifth of the sampling speed on an idle machine and saves 7x beside other work.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from local import local_data, local_student
from processes import environment

pytest.importorskip("trl")


def _step_and_shapes(student, data_dir):
    import harness.workflows.validate as validate
    from harness.api.task import resolve_task
    from harness.sampling.teacher import RunState, resolve_teacher

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


def _sampler_process(policy: str | None, data_dir) -> dict:
    """``benchmarks/training_sampler.py`` in a fresh process with ``OMP_WAIT_POLICY=policy`` (None: unset)."""
    root = Path(__file__).resolve().parents[1]
    env = environment(OMP_WAIT_POLICY=policy, PYTHONPATH=str(root), OPD_DATA_DIR=str(data_dir))
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "training_sampler.py")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_training_sampler_by_wait_policy(benchmark):
    data_dir = local_data("boolq")
    local_student("smollm2-135m")  # skips cleanly when the model is not installed
    outcome = {}

    def spinning_passive_spinning():
        outcome["runs"] = [_sampler_process(policy, data_dir) for policy in (None, "PASSIVE", None)]

    benchmark.pedantic(spinning_passive_spinning, rounds=1, iterations=1)

    def rate(process):  # all three samplings of the process
        return sum(r["tokens"] for r in process["runs"]) / sum(r["seconds"] for r in process["runs"])

    spinning = [rate(p) for p in outcome["runs"][::2]]
    passive = rate(outcome["runs"][1])
    benchmark.extra_info.update({
        "processes": outcome["runs"],
        "spinning_tokens_per_s": [round(x, 2) for x in spinning], "passive_tokens_per_s": round(passive, 2),
        "spinning_slowdown": round(passive / (sum(spinning) / len(spinning)), 2),
        "backend_over_previous_sampler": [round(p["runs"][1]["seconds"] * 2 / (p["runs"][0]["seconds"]
                                                                             + p["runs"][2]["seconds"]), 2)
                                          for p in outcome["runs"]],
        "samplers_drew_the_same_tokens": all(p["same_tokens"] for p in outcome["runs"]),
    })
