"""``idp:<pool>``: pool parsing, the documented selection rule, per-rollout fallback and the recorded choices."""
from __future__ import annotations

import math

import pytest
import torch

import teachers.idp as idp
from harness.models import load_model
from harness.prompting import chat_prompt_ids
from harness.registry import RegistryError
from harness.task import resolve_task
from harness.teacher import ContextInputs, RolloutView, mean_logprob_of_tail, resolve_teacher

TASK = resolve_task("test-parity")
QUESTION = TASK.load(None, 1)[0]


@pytest.fixture(autouse=True)
def fresh_records(monkeypatch):
    monkeypatch.setattr(idp, "_RANKINGS", {})
    monkeypatch.setattr(idp, "_CHOSEN", {})


def inputs(scored, rollouts, student=None):
    return ContextInputs(TASK, QUESTION, scored, rollouts, student=student)


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


def test_the_chosen_context_is_the_one_scoring_the_question_highest():
    student = load_model("tiny-random", "cpu")
    rollouts = [RolloutView(0, "resp-0", False), RolloutView(1, "resp-1", True), RolloutView(2, "resp-2", False)]
    teacher = resolve_teacher("idp:correct-demo,self-demo,correct-wrong")
    text = teacher.context(inputs(0, rollouts, student))
    members = idp.pool_members("correct-demo,self-demo,correct-wrong")
    scores = {m.name: mean_logprob_of_tail(student, m.context(inputs(0, rollouts)), QUESTION.prompt) for m in members}
    best = max(scores, key=scores.get)
    (ranking,) = idp.rankings(teacher.name).values()
    assert ranking.names[0] == best and list(ranking.scores) == sorted(scores.values(), reverse=True)
    assert text == next(m for m in members if m.name == best).context(inputs(0, rollouts))
    assert idp.chosen_contexts(teacher.name) == {(QUESTION.id, 0): best}


def test_a_rollout_falls_back_to_the_next_context_when_the_best_cannot_be_built():
    # pool order decides without a student; self-demo first, but rollout 1 is the only correct one
    rollouts = [RolloutView(0, "resp-0", False), RolloutView(1, "resp-1", True)]
    teacher = resolve_teacher("idp:self-demo,correct-demo")
    assert "resp-1" in teacher.context(inputs(0, rollouts))
    fallback = teacher.context(inputs(1, rollouts))
    assert "resp-1" not in fallback and QUESTION.demonstration in fallback
    assert idp.chosen_contexts(teacher.name) == {(QUESTION.id, 0): "self:self-demo",
                                                 (QUESTION.id, 1): "self:correct-demo"}


def test_unbuildable_contexts_rank_last_and_none_when_nothing_builds():
    rollouts = [RolloutView(0, "resp-0", False)]
    teacher = resolve_teacher("idp:self-demo,correct-wrong")
    assert teacher.context(inputs(0, rollouts)) is None
    (ranking,) = idp.rankings(teacher.name).values()
    assert all(math.isinf(score) for score in ranking.scores)
    assert idp.chosen_contexts(teacher.name) == {}


def test_idp_choice_is_recorded_per_node(tmp_path):
    import pyarrow.parquet as pq

    from harness.diagnostic import Settings
    from harness.runner import RunConfig, run

    config = RunConfig(task="test-parity", student="tiny-random", teachers=("idp:default", "self"), limit=1,
                       settings=Settings(rollouts=3, continuations=2, max_new_tokens=6), device="cpu")
    run(config, tmp_path)
    nodes = pq.read_table(tmp_path / "nodes.parquet").to_pandas()
    idp_rows = nodes[nodes.teacher == "idp:default"]
    chosen = idp_rows.loc[idp_rows.context_ok, "context_choice"]
    assert len(chosen) and chosen.notna().all()
    assert nodes.loc[nodes.teacher == "self", "context_choice"].isna().all()
