"""``opd validate``: does the diagnostic's teacher ranking predict the gain of actual on-policy distillation?

The protocol (METHOD, Predictive validity) is fixed before any result is seen and written to ``DIR/protocol.json``:
every condition starts from the same student weights and trains ``steps`` AdamW steps with the same seeds and
hyper-parameters on the same *training* questions; held-out *evaluation* questions are answered before and after
(greedy, and ``samples`` answers at T=1). Conditions: each teacher (on-policy distillation with ``--loss``), a
no-training control, and GRPO with the task's reward (the teacher-free reference the diagnostic scores too).

Question ranges are index ranges of the task's fixed question order: the diagnostic's (``--diagnostic RUN``: the
questions that run scored, at the front), then evaluation ``[eval_start, eval_start + eval_limit)``. Training questions
come from the task's training split where it has one (``Task.load_train``: GSM8K's train, ``[train_start,
train_start + train_limit)`` of it, from 0), else from the same order after evaluation. Any overlap (of ranges, or a
training prompt equal to an evaluation or diagnostic one) is refused before any work; ``protocol.json`` records the
split and range used.

**Where TRL is used and where the loop is ours.** The per-token losses are TRL's (:mod:`harness.diagnostic.training_losses`,
checked against ``harness.diagnostic.losses`` by autograd). The loop that drives them is written here, because no TRL trainer
expresses the protocol: ``DistillationTrainer`` shows the teacher the student's own prompt (no context teachers);
``SDFTTrainer``/``SDPOTrainer`` take a privileged context as a *static* dataset column composed by a template, while
the harness's contexts are built per rollout from the student's other rollouts of the same step (``self:self-demo``,
``self:correct-wrong``) and from the run's state (``self:summary``, ``idp:``); and the three trainers normalise, sample
and checkpoint differently, where the protocol needs one sampler (the diagnostic's seeded per-row sampler), one
token-level normalisation and one checkpoint layout for every condition, so that conditions differ only by teacher.

One training step: ``batch`` training questions drawn from a generator seeded by (seed, step), ``rollouts`` samples
each from the current student at T=1 (seeded per row), graded by the task; each rollout's teacher distribution by one
teacher-forced pass over the teacher's prompt (its context, built by ``harness.sampling.teacher.teacher_prompt`` exactly as in
``opd run``) plus the response; the loss summed over every response token of the step divided by their number; one
AdamW step (gradient norm clipped at 1). A teacher that is "the student" (``self``, ``self:<context>``) is the
*initial* student, frozen (as TRL's SDFT ``teacher_model_kind="base"``), so a context teacher's target does not drift
with training; so are the texts context builders write.

Speed: the sampler is ``opd run``'s (KV caches, inference mode). Run through ``opd`` or with ``OMP_WAIT_POLICY=PASSIVE``
set before torch loads (:mod:`harness.sampling.threads`): beside other busy processes, spinning OpenMP threads made one
smollm2-135m step 5x slower and its sampling 7x (``benchmarks/test_bench_training.py``).

Resumable: each (condition, seed) lives in ``DIR/runs/<condition>/seed-<s>/``; a checkpoint (weights, optimiser,
step log) is written every ``checkpoint_every`` steps and a finished run's ``result.json`` means it is never
trained again. Step questions and rollout streams depend only on (seed, step), so a resumed run takes the same steps.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.api.progress import NoProgress, Progress
from harness.diagnostic.training_losses import require_trl, training_loss
from harness.reports.validation_report import CONTROL, GRPO
from harness.workflows.validate_config import Training, ValidateConfig, ValidateError

PROTOCOL_FILE = "protocol.json"
BEFORE_FILE = "before.json"
PREDICTORS_FILE = "predictors.json"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
GRADIENT_CLIP = 1.0
TRAIN_SPLIT = "train"  # the name protocol.json records for questions from ``Task.load_train``
PROGRESS_KINDS = ("conditions", "training steps", "evaluations")


# ------------------------------------------------------------------------------------------------ the protocol


@dataclass(frozen=True)
class Plan:
    """What was checked before any work: the resolved conditions and the question ranges."""

    conditions: tuple[str, ...]  # control, grpo, then the teachers in the order given
    diagnostic_ids: tuple[str, ...]
    diagnostic_range: tuple[int, int] | None
    eval_range: tuple[int, int]
    train_range: tuple[int, int]  # indices in the training split, else in the evaluation questions' order
    eval_ids: tuple[str, ...]
    train_ids: tuple[str, ...]
    train_split: str | None  # TRAIN_SPLIT when the task has one; None: a range of the evaluation questions' order


def slug(condition: str) -> str:
    """A directory name for a condition spec (``self:correct-demo`` -> ``self_correct-demo``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", condition)


def _samples_needed(teacher) -> int:
    if "both outcomes" in teacher.needs:
        return 3
    return 2 if "rollouts" in teacher.needs else 1


def _diagnostic_ids(config: ValidateConfig) -> tuple[tuple[str, ...], Any]:
    """The diagnostic run's question ids (in its order) and its nodes; refuses a run of another task or student
    or one without a teacher being validated."""
    if config.diagnostic is None:
        return (), None
    from harness.storage.records import load_run

    nodes, questions, _ = load_run(config.diagnostic)
    where = f"--diagnostic {config.diagnostic}"
    for column, wanted in (("task", config.task), ("student", config.student)):
        found = sorted(set(questions[column].astype(str))) if column in questions else []
        if found != [wanted]:
            raise ValidateError(f"{where} is a run of {column} {', '.join(found) or '(none)'}, not {wanted!r}: the "
                                f"diagnostic must score the same {column} that is trained. Run `opd run --task "
                                f"{config.task} --student {config.student} ...` or point --diagnostic at that run.")
    scored = set(nodes["teacher"].astype(str))
    missing = [t for t in config.teachers if t not in scored]
    if missing:
        raise ValidateError(f"{where} has no nodes of teacher(s) {', '.join(missing)} (it scored "
                            f"{', '.join(sorted(scored))}), so their walign cannot stand beside their gain. Add them "
                            f"to that run (`opd run --out {config.diagnostic} --teacher ...` reuses its rollouts) or "
                            f"drop them from --teacher.")
    ids = tuple(dict.fromkeys(questions["question_id"].astype(str)))
    return ids, nodes


def plan(config: ValidateConfig, questions_of: Callable[[int | None], Sequence[Any]],
         train_of: Callable[[int | None], Sequence[Any] | None] = lambda limit: None) -> Plan:
    """Every check that can fail, before any model loads: settings, loss, teachers, the diagnostic, the ranges.
    ``questions_of(limit)`` loads the task's first ``limit`` questions (None: all); ``train_of(limit)`` the first of
    its training split (None: it has none)."""
    problems = config.problems()
    if problems:
        raise ValidateError("Invalid validate settings: " + "; ".join(problems) + ".")
    training_loss(config.training.loss, config.training.jsd_beta)  # a loss with no trained form stops here
    from harness.api.task import resolve_task
    from harness.sampling.teacher import resolve_teacher

    resolve_task(config.task)
    for spec in config.teachers:  # unknown names raise the registry's "did you mean" here
        teacher = resolve_teacher(spec)
        if config.training.rollouts < _samples_needed(teacher):
            raise ValidateError(
                f"{spec} builds its context from the student's other rollouts of the same question, which needs "
                f"--rollouts {_samples_needed(teacher)} or more (got {config.training.rollouts}).")
    diagnostic_ids, _ = _diagnostic_ids(config)
    short = [spec for spec in config.teachers if _samples_needed(resolve_teacher(spec)) > config.samples]
    if diagnostic_ids and short:
        raise ValidateError(
            f"{', '.join(short)} build their context from the student's other answers, so their in-context accuracy "
            f"(a predictor, measured with --samples answers per question) needs --samples 3 or more (got "
            f"{config.samples}).")
    r = config.ranges
    all_questions = list(questions_of(None))
    position = {q.id: i for i, q in enumerate(all_questions)}
    unknown = [i for i in diagnostic_ids if i not in position]
    if unknown:
        raise ValidateError(f"--diagnostic {config.diagnostic} scored question(s) {', '.join(unknown[:3])} that "
                            f"{config.task} does not have with this --data-dir: it was run on other data.")
    diag_positions = sorted(position[i] for i in diagnostic_ids)
    diag_range = (diag_positions[0], diag_positions[-1] + 1) if diag_positions else None
    eval_start = r.eval_start if r.eval_start is not None else (diag_range[1] if diag_range else 0)
    eval_range = (eval_start, eval_start + r.eval_limit)
    split_start = r.train_start if r.train_start is not None else 0
    train_split = train_of(split_start + r.train_limit)
    train_start = split_start if train_split is not None else (
        r.train_start if r.train_start is not None else eval_range[1])
    train_range = (train_start, train_start + r.train_limit)
    named = [("evaluation", eval_range, "--eval-start/--eval-limit")]
    if train_split is None:
        named.append(("training", train_range, "--train-start/--train-limit"))
    if diag_range:
        named.insert(0, ("diagnostic", diag_range, "--diagnostic"))
    clashes = [f"{a} [{ra[0]}, {ra[1]}) and {b} [{rb[0]}, {rb[1]})"
               for i, (a, ra, _) in enumerate(named) for b, rb, _ in named[i + 1:]
               if ra[0] < rb[1] and rb[0] < ra[1]]
    if clashes:
        raise ValidateError(
            f"Question ranges overlap: {'; '.join(clashes)} (indices in {config.task}'s question order). Training, "
            f"evaluation and diagnostic questions must be disjoint, or the gain would be measured on questions the "
            f"student was trained or scored on. Move a range with --eval-start / --train-start (by default "
            f"evaluation starts after the diagnostic's questions and training after evaluation).")
    end = max(eval_range[1], train_range[1] if train_split is None else 0)
    if end > len(all_questions):
        raise ValidateError(
            f"{config.task} has {len(all_questions)} questions here, but the ranges need {end} (evaluation "
            f"[{eval_range[0]}, {eval_range[1]}), training [{train_range[0]}, {train_range[1]})): lower "
            f"--eval-limit / --train-limit or the starts.")
    if train_split is not None and len(train_split) < train_range[1]:
        raise ValidateError(
            f"{config.task}'s {TRAIN_SPLIT} split has {len(train_split)} questions here, but training "
            f"[{train_range[0]}, {train_range[1]}) of it needs {train_range[1]}: lower --train-limit or "
            f"--train-start.")
    ids = [q.id for q in all_questions]
    train = list(train_split)[train_range[0]:train_range[1]] if train_split is not None else (
        all_questions[train_range[0]:train_range[1]])
    if train_split is not None:  # another split: disjoint by construction, unless the data repeat a question
        held_out = all_questions[eval_range[0]:eval_range[1]] + [all_questions[i] for i in diag_positions]
        seen = {q.id for q in held_out} | {q.prompt for q in held_out}
        repeated = [q.id for q in train if q.id in seen or q.prompt in seen]
        if repeated:
            raise ValidateError(
                f"{config.task}'s {TRAIN_SPLIT} split repeats evaluation or diagnostic question(s) (same id or "
                f"prompt): {', '.join(repeated[:3])}. The gain would be measured on questions the student was "
                f"trained on: fix the data, or move the training range with --train-start.")
    return Plan((CONTROL, GRPO, *config.teachers), tuple(diagnostic_ids), diag_range, eval_range, train_range,
                tuple(ids[eval_range[0]:eval_range[1]]), tuple(q.id for q in train),
                TRAIN_SPLIT if train_split is not None else None)


def protocol_record(config: ValidateConfig, plan_: Plan) -> dict[str, Any]:
    """What ``protocol.json`` fixes: everything but the teacher and seed lists (which may grow)."""
    fixed = asdict(config)
    for grows in ("teachers", "seeds", "data_dir", "device"):
        fixed.pop(grows)
    return {"config": fixed, "diagnostic_range": plan_.diagnostic_range, "eval_range": plan_.eval_range,
            "train_split": plan_.train_split, "train_range": plan_.train_range, "eval_ids": list(plan_.eval_ids), "train_ids": list(plan_.train_ids),
            "diagnostic_ids": list(plan_.diagnostic_ids)}


def _changed_settings(earlier: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ, nested ones dotted (``training.lr``), so the refusal names the flag to fix."""
    changed = []
    for key in sorted(set(earlier) | set(now)):
        old, new = earlier.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_settings(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


def fix_protocol(out: Path, record: dict[str, Any]) -> None:
    """Write the protocol, or refuse a directory holding a validation with a different one."""
    from harness.storage.records import make_directory, write_json

    path = out / PROTOCOL_FILE
    if path.is_file():
        earlier, now = json.loads(path.read_text()), json.loads(json.dumps(record))  # compared as JSON holds them
        if earlier != now:
            changed = _changed_settings(earlier["config"], now["config"])
            what = ", ".join(changed) or "the question ranges"
            raise ValidateError(f"{out} holds a validation with another protocol (differs in {what}): its results "
                                f"would not be comparable. Use a new --out, or the same settings to resume it "
                                f"(teachers and seeds may be added).")
        return
    make_directory(out)
    write_json(record, path)


# ------------------------------------------------------------------------------------------------ models


def frozen_copy(lm):
    """A frozen copy of a loaded model: the initial student as a teacher while the student trains."""
    import copy

    from harness.sampling.models import LoadedModel

    model = copy.deepcopy(lm.model).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(f"{lm.spec} (initial weights)", model, lm.tokenizer, lm.device, lm.dtype)


def training_copy(lm):
    """The student as it trains: float32 weights (on CUDA models load in bf16, whose 8-bit mantissa would round
    away AdamW updates of lr ~1e-6), eval mode (no dropout: every condition sees the same function of its weights)."""
    import dataclasses

    import torch

    if lm.dtype != torch.float32:
        lm = dataclasses.replace(lm, model=lm.model.float(), dtype=torch.float32)
    lm.model.eval()
    return lm


# ------------------------------------------------------------------------------------------------ evaluation


def evaluate_model(lm, task, questions: Sequence[Any], samples: int, seed: int) -> dict[str, Any]:
    """Greedy and ``samples`` T=1 answers to every question: correct/parsed per answer, in question order. The same
    ``seed`` before and after training gives common random numbers: unchanged weights answer exactly alike."""
    from harness.workflows.accuracy import GREEDY_TEMPERATURE, SAMPLING_TEMPERATURE, answer_all

    greedy = answer_all(lm, task, [(q, q.prompt, 1) for q in questions], GREEDY_TEMPERATURE, seed)
    sampled = answer_all(lm, task, [(q, q.prompt, samples) for q in questions], SAMPLING_TEMPERATURE, seed)
    return {
        "question_ids": [q.id for q in questions],
        "greedy_correct": [bool(a[0].correct) for a in greedy],
        "greedy_parsed": [a[0].extracted is not None for a in greedy],
        "greedy_response": [a[0].response for a in greedy],
        "greedy_answer": [a[0].extracted for a in greedy],  # what the grader read (None: nothing parsed)
        "sampled_correct": [[bool(x.correct) for x in a] for a in sampled],
        "sampled_parsed": [[x.extracted is not None for x in a] for a in sampled],
    }


# ------------------------------------------------------------------------------------------------ training


def step_questions(train: Sequence[Any], seed: int, step: int, batch: int) -> list[Any]:
    """The step's training questions: a draw without replacement seeded by (seed, step) alone."""
    from harness.sampling.generation import derive_seed

    rng = np.random.default_rng(derive_seed(seed, "validate train", step))
    return [train[i] for i in sorted(rng.choice(len(train), size=batch, replace=False))]


def sample_rollouts(lm, prompts: Sequence[list[int]], rollouts: int, max_new: int, seed_parts: Sequence[tuple],
                    is_final) -> list[list[Any]]:
    """``rollouts`` T=1 samples per prompt from the live weights, by the harness's own generation (``opd run``'s
    transformers backend: KV caches, inference mode, every question's rows in one continuous batch, row j of prompt
    i seeded ``derive_seed(*seed_parts[i], j)``, so what a row samples does not depend on batching)."""
    from harness.sampling.backends import RolloutCall, TransformersBackend

    calls = [RolloutCall(tuple(ids), rollouts, max_new, 1.0, tuple(parts), is_final)
             for ids, parts in zip(prompts, seed_parts)]
    return TransformersBackend(lm).generate_calls(calls)


def response_logits(model, prefixes: Sequence[list[int]], responses: Sequence[Sequence[int]], vocab: int,
                    pad_id: int = 0):
    """Logits [len(response), vocab] before each response token, for each (prefix, response): one right-padded
    forward pass (with the graph when the model's parameters require grad)."""
    import torch

    sequences = [list(p) + list(r) for p, r in zip(prefixes, responses)]
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    device = next(model.parameters()).device
    # only the last `keep` positions get logits (every response lies inside them): no vocabulary projection of the
    # prompt positions, which are most of a BoolQ/MMLU sequence
    first = min(len(p) for p in prefixes) - 1
    keep = width - first
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False,
                   logits_to_keep=keep).logits
    return [logits[row, len(p) - 1 - first: len(p) - 1 - first + len(r), :vocab]
            for row, (p, r) in enumerate(zip(prefixes, responses))]


@dataclass(frozen=True)
class StudentCopies:
    """The student three ways, which every training run needs together: the live model that trains, the weights
    each run starts from, and a frozen copy of them (a ``self`` teacher's model; context builders write with it)."""

    live: Any  # LoadedModel being trained
    initial_state: Mapping[str, Any]
    frozen: Any  # LoadedModel with the initial weights, never trained


@dataclass(frozen=True)
class Target:
    """Who gives a distillation run its target: the harness teacher (its context) and the model giving q."""

    teacher: Any  # harness Teacher
    model: Any  # LoadedModel giving q (frozen)


@dataclass
class Trainer:
    """One (condition, seed) training run on the live student (weights reset to the initial ones first)."""

    student: StudentCopies
    task: Any
    train_questions: Sequence[Any]
    training: Training
    target: Target | None  # None for the grpo reference
    seed: int
    state: Any  # RunState of this validation

    def run(self, directory: Path, progress: Progress) -> list[dict[str, Any]]:
        import torch

        training, live = self.training, self.student.live
        loss = training_loss(training.loss, training.jsd_beta) if self.target is not None else None
        if loss is None:
            from harness.diagnostic.training_losses import _TRAINABLE

            loss = _TRAINABLE[GRPO](training.jsd_beta)
        live.model.load_state_dict(self.student.initial_state)
        optimizer = torch.optim.AdamW(live.model.parameters(), lr=training.lr, weight_decay=0.0)
        log: list[dict[str, Any]] = []
        checkpoint = directory / CHECKPOINT_FILE
        if checkpoint.is_file():
            saved = torch.load(checkpoint, map_location=live.device, weights_only=True)
            live.model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            log = saved["log"]
            progress.advance("training steps", len(log))
        for parameter in live.model.parameters():
            parameter.requires_grad_(True)
        for step in range(len(log), training.steps):
            started = time.perf_counter()
            entry = self._step(step, loss, optimizer)
            entry["seconds"] = round(time.perf_counter() - started, 3)
            log.append(entry)
            if (step + 1) % training.checkpoint_every == 0 and step + 1 < training.steps:
                _save_atomically(checkpoint, {"model": live.model.state_dict(),
                                              "optimizer": optimizer.state_dict(), "log": log})
            progress.advance("training steps")
        for parameter in live.model.parameters():
            parameter.requires_grad_(False)
        return log

    def _step(self, step: int, loss, optimizer) -> dict[str, Any]:
        import torch

        from harness.sampling.prompting import chat_prompt_ids
        from harness.sampling.teacher import ContextInputs, RolloutView, teacher_prompt

        lm, task, training, target = self.student.live, self.task, self.training, self.target
        questions = step_questions(self.train_questions, self.seed, step, training.batch)
        prompts = [chat_prompt_ids(lm.tokenizer, q.prompt) for q in questions]
        max_new = training.max_new_tokens or task.max_new_tokens
        clock = time.perf_counter()
        groups = sample_rollouts(lm, prompts, training.rollouts, max_new,
                                 [(self.seed, "validate rollouts", step, q.id) for q in questions],
                                 task.answer_is_final)
        sample_s, teacher_s = time.perf_counter() - clock, 0.0
        tokens_total = sum(len(g.tokens) for group in groups for g in group)
        optimizer.zero_grad(set_to_none=True)
        rewards_all, loss_total, skipped = [], 0.0, 0
        for question, prompt, group in zip(questions, prompts, groups):
            texts = [lm.tokenizer.decode(list(g.tokens), skip_special_tokens=True) for g in group]
            rewards = [float(task.grade(question, text).correct) for text in texts]
            rewards_all.extend(rewards)
            advantages = [r - sum(rewards) / len(rewards) for r in rewards]
            kept = [k for k, g in enumerate(group) if g.tokens]
            targets: dict[int, Any] = {}
            if target is not None:
                views = [RolloutView(k, texts[k], bool(rewards[k])) for k in range(len(group))]
                prefixes = {}
                for k in kept:
                    inputs = ContextInputs(task, question, k, views, student=self.student.frozen, seed=self.seed,
                                           state=self.state)
                    text = teacher_prompt(target.teacher, inputs)
                    if text is not None:  # a context that cannot be built: no target, the rollout is skipped
                        prefixes[k] = chat_prompt_ids(target.model.tokenizer, text)
                skipped += len(kept) - len(prefixes)
                kept = [k for k in kept if k in prefixes]
                if kept:
                    clock = time.perf_counter()
                    with torch.no_grad():
                        rows = response_logits(target.model.model, [prefixes[k] for k in kept],
                                               [group[k].tokens for k in kept], lm.vocab_size)
                    targets = dict(zip(kept, rows))
                    teacher_s += time.perf_counter() - clock
            elif not any(advantages):
                kept = []  # all rollouts graded alike: A = 0, no gradient
            if not kept or tokens_total == 0:
                continue
            student_rows = response_logits(lm.model, [prompt] * len(kept), [group[k].tokens for k in kept],
                                           lm.vocab_size)
            question_loss = 0.0
            for k, logits in zip(kept, student_rows):
                from harness.diagnostic.training_losses import per_token_loss

                ids = torch.tensor(group[k].tokens, device=logits.device)
                question_loss = question_loss + per_token_loss(loss, logits, targets.get(k), ids,
                                                               advantages[k]).sum()
            (question_loss / tokens_total).backward()
            loss_total += float(question_loss.detach()) / tokens_total
        norm = float(torch.nn.utils.clip_grad_norm_(lm.model.parameters(), GRADIENT_CLIP))
        optimizer.step()
        return {"step": step, "loss": loss_total, "reward": float(np.mean(rewards_all)), "tokens": tokens_total,
                "grad_norm": norm, "rollouts_without_target": skipped, "sample_seconds": round(sample_s, 3),
                "teacher_seconds": round(teacher_s, 3),
                "questions": [q.id for q in questions]}


def _save_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    import torch

    partial = path.with_suffix(".partial")
    torch.save(dict(payload), partial)
    partial.replace(path)


# ------------------------------------------------------------------------------------------------ orchestration


def _questions_loader(config: ValidateConfig):
    from harness.api.data import resolve_data_dir
    from harness.api.task import resolve_task

    task = resolve_task(config.task)
    data_dir = resolve_data_dir(config.data_dir)
    return task, (lambda limit: task.load(data_dir, limit)), (lambda limit: task.load_train(data_dir, limit))


def run_dir(out: Path, condition: str, seed: int) -> Path:
    return Path(out) / "runs" / slug(condition) / f"seed-{seed}"


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def compute_predictors(config: ValidateConfig, plan_: Plan) -> dict[str, Any]:
    """In-context accuracy of the student, of each teacher with its context, and of each teacher's model on the
    plain prompt, on the diagnostic's questions (``opd accuracy``'s machinery, ``samples`` answers each)."""
    from harness.sampling.teacher import resolve_teacher
    from harness.reports.accuracy_report import STUDENT_CONDITION
    from harness.workflows.accuracy import Answer, AccuracyConfig, evaluate, paired_difference, pass_rate

    if not plan_.diagnostic_ids or plan_.diagnostic_range != (0, len(plan_.diagnostic_ids)):
        return {"note": "no diagnostic questions at the front of the task's order: accuracy predictors not computed"}
    plain_models = sorted({t.model for t in map(resolve_teacher, config.teachers) if t.model})
    conditions = tuple(dict.fromkeys([*config.teachers, *(f"model:{m}" for m in plain_models)]))
    report = evaluate(AccuracyConfig(task=config.task, student=config.student, teachers=conditions,
                                     limit=len(plan_.diagnostic_ids), samples=config.samples,
                                     data_dir=config.data_dir, seed=min(config.seeds), device=config.device))
    # condition -> question -> answer k (None where the context could not be built), as opd accuracy graded them
    answers: dict[str, dict[str, list[Answer | None]]] = {}
    for entry in report.questions:
        answers.setdefault(entry["condition"], {})[entry["question_id"]] = [
            None if a is None else Answer(**a) for a in entry["answers"]]
    per_question = {condition: {q: pass_rate(k) for q, k in by_question.items()}
                    for condition, by_question in answers.items()}
    # the gap as `opd accuracy` defines delta: per question over the answers k both conditions have (a context that
    # needs the student's other answers is missing for some k; comparing with all K answers would mix in which k)
    paired_gap = {teacher: {q: float(d[0]) for q, k in answers.get(teacher, {}).items()
                            if (d := paired_difference(answers[STUDENT_CONDITION][q], k)) is not None}
                  for teacher in config.teachers}
    return {"rows": report.rows, "per_question": per_question, "paired_gap": paired_gap,
            "plain_condition": {t: (f"model:{resolve_teacher(t).model}" if resolve_teacher(t).model else "student")
                                for t in config.teachers}}


def run_validation(config: ValidateConfig, out: Path, progress: Progress | None = None, *, max_runs: int | None = None,
                   on_step: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the validation into ``out`` and write ``validation.json`` / ``validation.md``.

    ``max_runs``: stop after that many (condition, seed) runs finish in this call (the report covers what is done),
    so a long validation can be grown one committed run at a time. ``on_step(condition, seed, steps_done)`` is
    called after each finished (condition, seed) run."""
    progress = progress or NoProgress()
    out = Path(out)
    task, questions_of, train_of = _questions_loader(config)
    plan_ = plan(config, questions_of, train_of)  # every refusal happens here, before any model loads
    require_trl()
    fix_protocol(out, protocol_record(config, plan_))
    from harness.sampling.models import ModelCache, check_same_tokenizer, load_model
    from harness.sampling.teacher import RunState, resolve_teacher
    from harness.storage.records import write_json

    all_questions = list(questions_of(None))
    by_id = {q.id: q for q in all_questions}
    eval_questions = [by_id[i] for i in plan_.eval_ids]
    if plan_.train_split is not None:
        train_questions = list(train_of(plan_.train_range[1]))[plan_.train_range[0]:]
    else:
        train_questions = [by_id[i] for i in plan_.train_ids]
    todo = [(c, s) for s in config.seeds for c in plan_.conditions if not (run_dir(out, c, s) / RESULT_FILE).is_file()]
    if max_runs is not None:
        todo = todo[:max_runs]
    progress.add_total("conditions", len(plan_.conditions) * len(config.seeds))
    progress.advance("conditions", len(plan_.conditions) * len(config.seeds) - len(todo))
    state = RunState(ModelCache())
    # a fresh copy, not the run's cache: a teacher `model:<the student's spec>` must not be the weights that train
    student = training_copy(load_model(config.student, config.device))
    initial = {k: v.detach().clone() for k, v in student.model.state_dict().items()}
    base = frozen_copy(student)
    teacher_models = {}
    for spec in config.teachers:  # every teacher model loads and is checked before any evaluation or training
        teacher = resolve_teacher(spec)
        if teacher.model is not None:
            teacher_models[spec] = state.models.load(teacher.model, config.device)
            check_same_tokenizer(student, teacher_models[spec])
    eval_seed = min(config.seeds)
    if not (out / BEFORE_FILE).is_file():
        progress.add_total("evaluations", 1)
        write_json(evaluate_model(student, task, eval_questions, config.samples, eval_seed), out / BEFORE_FILE)
        progress.advance("evaluations")
    if config.diagnostic and not _predictors_cover(out, config):
        write_json({"teachers": list(config.teachers), **compute_predictors(config, plan_)}, out / PREDICTORS_FILE)
    progress.add_total("training steps", sum(0 if c == CONTROL else config.training.steps for c, _ in todo))
    progress.add_total("evaluations", len(todo))
    for condition, seed in todo:
        directory = run_dir(out, condition, seed)
        directory.mkdir(parents=True, exist_ok=True)
        log: list[dict[str, Any]] = []
        if condition == CONTROL:
            student.model.load_state_dict(initial)
        else:
            target = None
            if condition != GRPO:
                target = Target(resolve_teacher(condition), teacher_models.get(condition, base))
            trainer = Trainer(StudentCopies(student, initial, base), task, train_questions, config.training, target,
                              seed, state)
            log = trainer.run(directory, progress)
        if condition == CONTROL:  # the initial weights and the same seed answer exactly as before (common random
            after = read_json(out / BEFORE_FILE)  # numbers): a second pass would repeat the first, at the cost of one
        else:  # whole evaluation (most of a run on CPU); tests/harness/workflows/test_validate.py checks the identity
            after = evaluate_model(student, task, eval_questions, config.samples, eval_seed)
        progress.advance("evaluations")
        step_seconds = [entry["seconds"] for entry in log]  # over every session of a resumed run
        write_json({"condition": condition, "seed": seed, "steps": len(log), "log": log,
                    "train_seconds": round(sum(step_seconds), 2),
                    "seconds_per_step": round(float(np.mean(step_seconds)), 3) if log else None, "after": after},
                   directory / RESULT_FILE)
        (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
        progress.advance("conditions")
        if on_step:
            on_step(condition, seed, len(log))
    student.model.load_state_dict(initial)
    return write_report(config, out)


def _predictors_cover(out: Path, config: ValidateConfig) -> bool:
    path = out / PREDICTORS_FILE
    return path.is_file() and set(config.teachers) <= set(read_json(path).get("teachers", ()))


def report_finished(config: ValidateConfig, out: Path) -> dict[str, Any]:
    """``opd validate --report-only``: the report of the runs already finished in ``out``, nothing trained or loaded.

    For a validation grown on several machines (copy the finished ``result.json`` files together, then report), or
    re-rendered by a newer harness. The settings are checked against ``protocol.json`` as a resume would check them,
    so a report never mixes protocols; TRL is not needed."""
    out = Path(out)
    missing = [name for name in (PROTOCOL_FILE, BEFORE_FILE) if not (out / name).is_file()]
    if missing:
        raise ValidateError(f"{out} holds no validation to report on (no {' or '.join(missing)}): run the same "
                            f"`opd validate` command without --report-only first, or point --out at the directory "
                            f"that holds it.")
    _, questions_of, train_of = _questions_loader(config)
    fix_protocol(out, protocol_record(config, plan(config, questions_of, train_of)))
    return write_report(config, out)


def write_report(config: ValidateConfig, out: Path) -> dict[str, Any]:
    """``validation.json`` and ``validation.md`` from whatever (condition, seed) runs are finished in ``out``."""
    from harness.reports.validation_report import build_report, render_markdown
    from harness.storage.records import write_json

    out = Path(out)
    protocol = read_json(out / PROTOCOL_FILE)
    before = read_json(out / BEFORE_FILE)
    results = {}
    for condition in (CONTROL, GRPO, *config.teachers):
        for seed in config.seeds:
            path = run_dir(out, condition, seed) / RESULT_FILE
            if path.is_file():
                results[(condition, seed)] = read_json(path)
    predictors = read_json(out / PREDICTORS_FILE) if (out / PREDICTORS_FILE).is_file() else {}
    nodes = None
    if config.diagnostic:
        from harness.storage.records import load_run

        nodes = load_run(config.diagnostic)[0]
    report = build_report(protocol, before, results, list(config.teachers), predictors, nodes,
                          config.training.loss)
    write_json(report, out / "validation.json")
    (out / "validation.md").write_text(render_markdown(report))
    return report
