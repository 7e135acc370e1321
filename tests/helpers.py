"""Helpers that several test modules share (synthetic records, fake GGUF part packages, the exact oracle), kept
here so that a test module never imports another and the tree can mirror harness/ freely."""
from __future__ import annotations

import hashlib
import itertools
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from harness.reports.leaderboard import TEACHER_LOSSES
from harness.sampling.gguf_parts import PartPackages
from harness.storage.records import LOSS_NAMES

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes.py"  # the test plugins (tasks, models, teachers), loaded like a user's --include file

# synthetic node records (reports, render, storage tests)
TASK, STUDENT = "boolq", "smollm2-135m"
SELF, DEMO, WRONG = "self", "self:correct-demo", "self:correct-wrong"
QUESTIONS = [f"q{i:02d}" for i in range(12)]
PLANTED_TEACHERS = ("near", "far")


def node_row(task, student, teacher, qid, rid, pos, **overrides):
    row = {
        "task": task, "student": student, "teacher": teacher, "question_id": qid, "rollout_id": rid,
        "position": pos, "rollout_len": 3, "depth_norm": pos / 3, "window": 0, "priority": 1.0, "entropy": 1.0,
        "rollout_correct": True, "rollout_unparsed": False, "prefix_shared": False, "gold": "yes",
        "support_token_ids": [1, 2], "sampled_token_id": 1,
        "grpo_advantage": 0.5, "student_logprobs": [-0.5, -1.0], "teacher_logprobs": [-0.6, -0.9],
        "kl_student_teacher": 0.1, "kl_teacher_student": 0.1, "l2": 0.1, "cos_pq": 0.9, "tv": 0.1,
        "topk_shared_mass": 1.0, "jsd_rbar": 0.01, "succ_correct": [1, 0], "succ_trials": [2, 2],
        "ideal_grad": [0.1, -0.1, 0.0], "ideal_norm": 1.0, "informative": True, "context_ok": True,
        **{f"align_{name}": 0.0 for name in LOSS_NAMES}, **{f"dnorm_{name}": 1.0 for name in LOSS_NAMES},
    }
    row.update(overrides)
    return row



def synthetic_rows(seed=0):
    """12 questions x 3 rollouts x 3 nodes x 3 teachers.

    SELF is the zero-direction control (dnorm 0, no alignment). DEMO and WRONG have random alignments and split-half
    alignments; WRONG's context cannot be built on the last two questions (so its estimates rest on fewer
    questions than the cell holds). Some nodes are uninformative. On questions whose rollouts all got one grade the
    GRPO advantage is 0: no grpo alignment there.
    """
    rng = np.random.default_rng(seed)
    grades = {(q, r): bool(rng.random() < 0.5) for q in QUESTIONS for r in range(3)}
    keys = [(q, r, p) for q in QUESTIONS for r in range(3) for p in range(3)]
    uninformative = {key for key in keys if rng.random() < 0.15}
    ideal_norm = dict(zip(keys, rng.uniform(0.1, 2.0, len(keys))))
    grpo = dict(zip(keys, rng.uniform(-1, 1, len(keys))))
    rows = []
    for teacher in (SELF, DEMO, WRONG):
        for q, r, p in keys:
            alike = len({grades[(q, k)] for k in range(3)}) == 1
            informative = (q, r, p) not in uninformative
            context_ok = not (teacher == WRONG and q in QUESTIONS[-2:])
            row = node_row(TASK, STUDENT, teacher, q, r, p, informative=informative, context_ok=context_ok,
                           rollout_correct=grades[(q, r)], ideal_norm=float(ideal_norm[(q, r, p)]),
                           grpo_advantage=0.0 if alike else 0.3,
                           align_grpo=math.nan if alike or not informative else float(grpo[(q, r, p)]),
                           dnorm_grpo=0.0 if alike else 0.7)
            for loss in TEACHER_LOSSES:
                if teacher == SELF:
                    row[f"align_{loss}"], row[f"dnorm_{loss}"] = math.nan, 0.0
                    row[f"align_{loss}_a"] = row[f"align_{loss}_b"] = math.nan
                    continue
                shift = 0.3 if teacher == DEMO else 0.0
                value = float(np.clip(shift + rng.normal(0, 0.4), -1, 1))
                scored = informative and context_ok
                row[f"align_{loss}"] = value if scored else math.nan
                row[f"align_{loss}_a"] = float(np.clip(value + rng.normal(0, 0.2), -1, 1)) if scored else math.nan
                row[f"align_{loss}_b"] = float(np.clip(value + rng.normal(0, 0.2), -1, 1)) if scored else math.nan
                row[f"dnorm_{loss}"] = float(rng.uniform(0.5, 1.5)) if context_ok else math.nan
            rows.append(row)
    return rows



def planted_nodes(n_questions=12, rollouts=2, positions=4, seed=0):
    """Teacher "far" has larger KL and alignment rising with KL; "near" has small KL and lower alignment.

    Node (q, r, 0) is where "near" is best, every other node "far": the best teacher switches once per rollout.
    Half-sample alignments are the full ones plus independent noise.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for teacher in PLANTED_TEACHERS:
        for q in range(n_questions):
            for r in range(rollouts):
                for pos in range(positions):
                    kl = float(rng.uniform(0.5, 2.0) if teacher == "far" else rng.uniform(0.01, 0.1))
                    align = 0.4 * kl + 0.01 * rng.normal() if teacher == "far" else 0.1
                    if pos == 0:
                        align = 0.6 if teacher == "near" else 0.2
                    halves = {f"align_{loss}_{h}": align + 0.05 * rng.normal()
                              for loss in ("rkl", "fkl", "jsd", "sampled") for h in "ab"}
                    rows.append(node_row("boolq", "s", teacher, f"q{q}", r, pos, rollout_len=positions,
                                         depth_norm=pos / positions, kl_student_teacher=kl, l2=kl / 2,
                                         entropy=float(rng.uniform(0.5, 2.0)), ideal_norm=1.0,
                                         rollout_correct=bool(r), **halves,
                                         **{f"align_{loss}": align for loss in ("rkl", "fkl", "jsd", "sampled")}))
    return pd.DataFrame(rows)


# fake GGUF part packages (sampling.gguf_parts, sampling.models)
_names = itertools.count()


def write_part_packages(root: Path, contents: list[bytes], version: str = "1.0") -> PartPackages:
    """Fake part packages holding ``contents`` in order, with the pins computed here from the bytes themselves."""
    distribution = f"fake-gguf-{next(_names)}-part"
    for number, data in enumerate(contents, 1):
        package = root / f"{distribution}{number}".replace("-", "_")
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('a part package must never be imported')\n")
        (package / "data" / f"part{number:02d}.bin").write_bytes(data)
    return PartPackages(model="fake-model", distribution=distribution, version=version,
                        sizes=tuple(len(data) for data in contents),
                        part_sha256=tuple(hashlib.sha256(data).hexdigest() for data in contents),
                        sha256=hashlib.sha256(b"".join(contents)).hexdigest())


def part_file(root: Path, parts: PartPackages, number: int) -> Path:
    return root / parts.package(number).replace("-", "_") / "data" / f"part{number:02d}.bin"


# the exact oracle: the 4-token fakes of tests/fakes.py with a 4-token horizon, every future enumerated
EOS = 3
HORIZON = 4


def exact_success(who, temperature: float):
    """Exact success S(prefix) and sampling policy p^T(. | prefix) by enumerating every future of the student."""
    import torch

    from harness.sampling.prompting import chat_prompt_ids

    model, task = who.student.model, who.task
    question = task.load(None)[0]
    prompt = chat_prompt_ids(who.student.tokenizer, question.prompt)

    def reward(tokens: tuple[int, ...]) -> float:
        text = who.student.tokenizer.decode(list(tokens), skip_special_tokens=True)
        return float(task.grade(question, text).correct)

    @lru_cache(maxsize=None)
    def policy(tokens: tuple[int, ...]) -> tuple[float, ...]:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + list(tokens)])).logits[0, -1].double()
        return tuple(torch.softmax(logits / temperature, -1).tolist())

    @lru_cache(maxsize=None)
    def success(tokens: tuple[int, ...]) -> float:
        if (tokens and tokens[-1] == EOS) or len(tokens) >= HORIZON:
            return reward(tokens)
        return sum(p * success(tokens + (t,)) for t, p in enumerate(policy(tokens)))

    return success, policy



def rollout_prefix(who, result, row) -> tuple[int, ...]:
    tokens = {r["rollout_id"]: r["response_token_ids"] for r in result.question_rows}
    return tuple(tokens[row["rollout_id"]][: row["position"]])


def parts_installed(parts: PartPackages) -> bool:
    """Whether a model's GGUF part packages are installed (the real-model tests skip without them)."""
    from harness.api.errors import ModelError
    from harness.sampling.gguf_parts import part_paths

    try:
        part_paths(parts)
    except ModelError:
        return False
    return True
