"""``idp:<pool>``: pool parsing, the documented selection rule, per-rollout fallback and the recorded choices."""
from __future__ import annotations

import math

import pytest
import torch

import teachers.idp as idp
from harness.api.registry import RegistryError
from harness.api.task import resolve_task
from harness.sampling.models import load_model
from harness.sampling.prompting import chat_prompt_ids
from harness.sampling.teacher import ContextInputs, RolloutView, RunState, mean_logprob_of_tail, resolve_teacher

TASK = resolve_task("test-parity")
QUESTION = TASK.load(None, 1)[0]


@pytest.fixture
def state():
    return RunState()  # one run's state, shared by the rollouts of a test as a run shares it


def inputs(scored, rollouts, student=None, state=None):
    return ContextInputs(TASK, QUESTION, scored, rollouts, student=student, state=state or RunState())


def test_pools_resolve_by_name_or_list_and_reject_non_contexts():
    assert [m.name for m in idp.pool_members("default")] == list(idp.POOLS["default"])
    assert [m.name for m in idp.pool_members("correct-demo, self:self-demo")] == ["self:correct-demo", "self:self-demo"]
    for bad in ("idp:", "idp:self", "idp:no-such-thing", "idp:idp:default", "idp:model:tiny-random"):
        with pytest.raises((RegistryError, ValueError)):
            resolve_teacher(bad)


def test_mean_logprob_of_tail_matches_a_direct_computation():
    lm = load_model("tiny-random", "cpu")
    text = "Some context first.\n\n" + QUESTION.prompt
    ids = chat_prompt_ids(lm.tokenizer, text)
    tail_ids = lm.tokenizer(QUESTION.prompt, add_special_tokens=False)["input_ids"]  # byte-level: maps 1:1
    start = next(i for i in range(len(ids)) if ids[i:i + len(tail_ids)] == tail_ids)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0].double(), -1)
    expected = float(torch.stack([logp[i - 1, ids[i]] for i in range(start, start + len(tail_ids))]).mean())
    assert mean_logprob_of_tail(lm, text, QUESTION.prompt) == pytest.approx(expected, abs=1e-6)


def test_the_chosen_context_is_the_one_scoring_the_question_highest(state):
    student = load_model("tiny-random", "cpu")
    rollouts = [RolloutView(0, "resp-0", False), RolloutView(1, "resp-1", True), RolloutView(2, "resp-2", False)]
    teacher = resolve_teacher("idp:correct-demo,self-demo,correct-wrong")
    scored = inputs(0, rollouts, student, state)
    text = teacher.context(scored)
    members = idp.pool_members("correct-demo,self-demo,correct-wrong")
    scores = {m.name: mean_logprob_of_tail(student, m.context(inputs(0, rollouts)), QUESTION.prompt) for m in members}
    best = max(scores, key=scores.get)
    (ranking,) = idp.rankings(state, teacher.name).values()
    assert ranking.names[0] == best and list(ranking.scores) == sorted(scores.values(), reverse=True)
    assert text == next(m for m in members if m.name == best).context(inputs(0, rollouts))
    assert idp.chosen_contexts(state, teacher.name) == {(QUESTION.id, 0): best}
    assert teacher.choice(scored) == best


def test_a_rollout_falls_back_to_the_next_context_when_the_best_cannot_be_built(state):
    # pool order decides without a student; self-demo first, but rollout 1 is the only correct one
    rollouts = [RolloutView(0, "resp-0", False), RolloutView(1, "resp-1", True)]
    teacher = resolve_teacher("idp:self-demo,correct-demo")
    assert "resp-1" in teacher.context(inputs(0, rollouts, state=state))
    fallback = teacher.context(inputs(1, rollouts, state=state))
    assert "resp-1" not in fallback and QUESTION.demonstration in fallback
    assert idp.chosen_contexts(state, teacher.name) == {(QUESTION.id, 0): "self:self-demo",
                                                        (QUESTION.id, 1): "self:correct-demo"}


def test_unbuildable_contexts_rank_last_and_none_when_nothing_builds(state):
    rollouts = [RolloutView(0, "resp-0", False)]
    teacher = resolve_teacher("idp:self-demo,correct-wrong")
    scored = inputs(0, rollouts, state=state)
    assert teacher.context(scored) is None and teacher.choice(scored) is None
    (ranking,) = idp.rankings(state, teacher.name).values()
    assert all(math.isinf(score) for score in ranking.scores)
    assert idp.chosen_contexts(state, teacher.name) == {}


def test_one_state_keeps_two_students_apart():
    """Even a state shared by two students (keys hold the student's fingerprint) ranks each with its own scores:
    each ranking equals the one a fresh state computes for that student alone."""
    rollouts = [RolloutView(0, "resp-0", False), RolloutView(1, "resp-1", True), RolloutView(2, "resp-2", False)]
    teacher = resolve_teacher(LEAK_POOL)
    shared = RunState()
    students = [load_model(spec, "cpu") for spec in ("tiny-random:1", "tiny-random:2")]
    together = []
    for student in students:
        teacher.context(inputs(0, rollouts, student, shared))
        together.append(teacher.choice(inputs(0, rollouts, student, shared)))
    alone = []
    for student in students:
        fresh = RunState()
        teacher.context(inputs(0, rollouts, student, fresh))
        alone.append(teacher.choice(inputs(0, rollouts, student, fresh)))
    assert together == alone and alone[0] != alone[1]  # the two students really do choose differently


def test_idp_choice_is_recorded_per_node(tmp_path):
    import pyarrow.parquet as pq

    from harness.diagnostic.question import Settings
    from harness.workflows.runner import RunConfig, run

    config = RunConfig(task="test-parity", student="tiny-random", teachers=("idp:default", "self"), limit=1,
                       settings=Settings(rollouts=3, continuations=2, max_new_tokens=6), device="cpu")
    run(config, tmp_path)
    nodes = pq.read_table(tmp_path / "nodes.parquet").to_pandas()
    idp_rows = nodes[nodes.teacher == "idp:default"]
    chosen = idp_rows.loc[idp_rows.context_ok, "context_choice"]
    assert len(chosen) and chosen.notna().all()
    assert nodes.loc[nodes.teacher == "self", "context_choice"].isna().all()


# a pool whose ranking differs between the two tiny students (tiny-random:1 picks correct-demo throughout, :4 not)
LEAK_POOL = "idp:correct-demo,self-demo,correct-wrong"


def _leak_config(student):
    from harness.diagnostic.question import Settings
    from harness.workflows.runner import RunConfig

    return RunConfig(task="test-parity", student=student, teachers=(LEAK_POOL,), limit=2,
                     settings=Settings(rollouts=4, continuations=1, max_new_tokens=6), device="cpu")


def _choices(run_dir):
    import pyarrow.parquet as pq

    nodes = pq.read_table(run_dir / "nodes.parquet").to_pandas()
    return nodes.sort_values(["question_id", "rollout_id", "position"]).reset_index(drop=True)


def test_idp_rankings_and_cached_rows_do_not_leak_from_one_student_to_the_next(tmp_path):
    """Two students diagnosed one after the other in one process (as `opd suite` without Ray does) must each get
    the records and reuse-cache rows that a fresh process running that student alone produces."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    from harness.storage.cache import WorkCache
    from harness.workflows.runner import run

    shared = WorkCache(tmp_path / "cache")
    run(_leak_config("tiny-random:1"), tmp_path / "first", cache=shared)
    run(_leak_config("tiny-random:4"), tmp_path / "second", cache=shared)

    fakes = Path(__file__).resolve().parents[1] / "fakes.py"
    settings = ["--rollouts", "4", "--continuations", "1", "--max-new-tokens", "6"]
    for student, out in (("tiny-random:4", "alone-4"), ("tiny-random:1", "alone-1")):
        subprocess.run([sys.executable, "-m", "harness.cli.main", "--include", str(fakes), "run", "--task", "test-parity",
                        "--student", student, "--teacher", LEAK_POOL, "--limit", "2", *settings, "--device", "cpu",
                        "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / f"cache-{out}"), "--quiet"],
                       check=True, capture_output=True, env={**os.environ, "OPD_WORK_CACHE_DIR": ""})
    first, second = _choices(tmp_path / "first"), _choices(tmp_path / "second")
    alone_1, alone_4 = _choices(tmp_path / "alone-1"), _choices(tmp_path / "alone-4")
    # the test means something only if the two students choose differently when each runs alone
    assert alone_1.context_choice.tolist() != alone_4.context_choice.tolist()
    for student, together, alone in (("tiny-random:1", first, alone_1), ("tiny-random:4", second, alone_4)):
        assert together.context_choice.tolist() == alone.context_choice.tolist(), student
        assert together.context_ok.tolist() == alone.context_ok.tolist()
        for got, want in zip(together.teacher_logprobs, alone.teacher_logprobs):
            assert (got is None) == (want is None) and (got is None or got == pytest.approx(want, abs=1e-5))
    # the second student's reuse-cache rows are those of a fresh run of it alone (same key, same rows)
    alone_files = sorted((tmp_path / "cache-alone-4" / "teacher").glob("*.parquet"))
    assert alone_files
    for path in alone_files:
        cached = pq.read_table(tmp_path / "cache" / "teacher" / path.name).to_pandas()
        fresh = pq.read_table(path).to_pandas()
        assert cached.context_choice.tolist() == fresh.context_choice.tolist()
        for got, want in zip(cached.teacher_logprobs, fresh.teacher_logprobs):
            assert (got is None) == (want is None) and (got is None or list(got) == pytest.approx(list(want), abs=1e-5))
