"""The teacher contract (harness.sampling.teacher): the run's memo, what a context builder may see, how a spec picks
its factory (the longest family wins), the shared prompt layouts, and the tail log-likelihood the idp teacher ranks
contexts by, checked against one full forward pass scored by hand."""
from __future__ import annotations

import pytest
import torch

from harness.api.registry import RegistryError
from harness.api.task import Question, resolve_task
from harness.sampling.models import load_model
from harness.sampling.prompting import chat_prompt_ids
from harness.sampling.teacher import (
    ContextInputs,
    RolloutView,
    RunState,
    demonstration_context,
    mean_logprob_of_tail,
    needs_text,
    resolve_context_teacher,
    resolve_teacher,
    teacher_prompt,
)

QUESTION = Question(id="q0", prompt="Is the sky blue? Answer yes or no.", gold="yes", demonstration="Yes. Answer: yes")
ROLLOUTS = [RolloutView(0, "no", False), RolloutView(1, "yes", True), RolloutView(2, "maybe", False),
            RolloutView(3, "yes!", True)]


def inputs(rollout_id: int = 2, **kwargs) -> ContextInputs:
    return ContextInputs(task=resolve_task("test-parity"), question=QUESTION, rollout_id=rollout_id, rollouts=ROLLOUTS,
                         **kwargs)


def test_the_memo_computes_once_and_lists_entries_by_kind_in_order():
    state, calls = RunState(), []
    assert state.remember(("summary", "q0"), lambda: calls.append(1) or "first") == "first"
    assert state.remember(("summary", "q0"), lambda: calls.append(1) or "second") == "first"
    assert calls == [1]
    state.record(("idp ranking", "q0"), [2, 1])
    state.record(("summary", "q1"), "other")
    state.record("summary", "a plain key is no tuple: never listed")
    assert list(state.entries("summary")) == [(("summary", "q0"), "first"), (("summary", "q1"), "other")]
    assert state.recall(("idp ranking", "q0")) == [2, 1] and state.recall(("missing",), default=7) == 7


def test_two_inputs_without_a_state_share_nothing():
    first, second = inputs(), inputs()
    first.state.record(("summary", "q0"), "x")
    assert second.state.recall(("summary", "q0")) is None


def test_other_rollouts_never_show_the_scored_one():
    assert [view.rollout_id for view in inputs(2).other_rollouts()] == [0, 1, 3]
    assert [view.rollout_id for view in inputs(1).other_rollouts(correct=True)] == [3]
    assert [view.rollout_id for view in inputs(1).other_rollouts(correct=False)] == [0, 2]


def test_a_registered_family_with_an_argument_wins_over_the_shorter_one():
    # "self:summary:tiny-random" would otherwise go to the `self` teacher with the argument "summary:tiny-random"
    teacher = resolve_teacher("self:summary:tiny-random")
    assert teacher.name == "self:summary:tiny-random" and teacher.variant == "summarizer=tiny-random"
    assert teacher.model is None and teacher.context is not None
    plain = resolve_teacher("model:tiny-random:1")
    assert plain.model == "tiny-random:1" and plain.context is None and not plain.is_student_itself
    assert resolve_teacher("self").is_student_itself


def test_the_prompt_is_the_context_or_the_question_itself():
    assert teacher_prompt(resolve_teacher("self"), inputs()) == QUESTION.prompt
    demo = teacher_prompt(resolve_teacher("self:correct-demo"), inputs())
    assert demo.endswith("\n\n" + QUESTION.prompt) and QUESTION.demonstration in demo


def test_the_demonstration_layout_shows_the_response_then_the_question():
    assert demonstration_context(QUESTION, "Yes. Answer: yes", "a correct worked response to it") == (
        "Here is a question together with a correct worked response to it. Study it, then answer the question "
        "yourself in the same format.\n\n### Correct response\nYes. Answer: yes\n\n### Question\n\n"
        "Is the sky blue? Answer yes or no.")


def test_needs_read_as_words():
    assert needs_text(()) == "needs nothing"
    assert needs_text(("gold", "rollouts", "own words")) == "needs gold answers, other student rollouts, own words"


def test_a_context_teacher_by_its_short_name_and_a_teacher_without_context_refused_as_one():
    assert resolve_context_teacher("correct-demo").name == "self:correct-demo"
    with pytest.raises(RegistryError, match="cannot be used as a context"):
        resolve_context_teacher("self")  # registered, but it shows the student its own prompt


def test_tail_log_likelihood_is_the_mean_over_the_tails_tokens_of_one_full_forward_pass():
    lm = load_model("tiny-random", "cpu")
    tail = "the part that is scored"
    user_text = f"Some context first. {tail} and then the end."
    got = mean_logprob_of_tail(lm, user_text, tail)
    # by hand: the tiny model's tokenizer is byte-level (one token per character), so the tail's tokens are its
    # own byte tokens, found as the last run of them in the ids the teacher is shown; one full forward pass scores
    # each by the row before it
    ids = chat_prompt_ids(lm.tokenizer, user_text)
    tail_ids = lm.tokenizer(tail, add_special_tokens=False)["input_ids"]
    assert len(tail_ids) == len(tail)
    start = max(i for i in range(len(ids) - len(tail_ids) + 1) if ids[i:i + len(tail_ids)] == tail_ids)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits[:, : lm.vocab_size], dim=-1)
    expected = sum(float(logp[i - 1, ids[i]]) for i in range(start, start + len(tail_ids))) / len(tail_ids)
    assert got == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="not part of the user turn"):
        mean_logprob_of_tail(lm, user_text, "absent text")
