"""Context builders on fake rollouts: the scored rollout is never shown, None where a context cannot be built,
labels are right; plus the ``model:<spec>+<context>`` combination and one end-to-end run with every new teacher."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import teachers.larger_demo as larger_demo
import teachers.summary as summary
from harness.api.registry import RegistryError
from harness.api.task import Question, resolve_task
from harness.diagnostic.question import Settings
from harness.sampling.models import load_model
from harness.sampling.teacher import ContextInputs, RolloutView, RunState, needs_text, resolve_teacher
from harness.workflows.runner import RunConfig, run
from teachers.correct_demo import correct_demo_context

TASK = resolve_task("test-parity")
QUESTION = TASK.load(None, 1)[0]
# rollout r's text is "resp-r"; grades alternate correct / incorrect
ROLLOUTS = [RolloutView(r, f"resp-{r}", r % 2 == 0) for r in range(4)]


def inputs(scored: int, rollouts=ROLLOUTS, question=QUESTION, student=None, state=None) -> ContextInputs:
    return ContextInputs(TASK, question, scored, rollouts, student=student, state=state or RunState())


def shown(text: str) -> set[int]:
    return {view.rollout_id for view in ROLLOUTS if view.response in text}


def test_other_rollouts_excludes_the_scored_one_and_filters_by_grade():
    assert [v.rollout_id for v in inputs(2).other_rollouts()] == [0, 1, 3]
    assert [v.rollout_id for v in inputs(2).other_rollouts(correct=True)] == [0]
    assert [v.rollout_id for v in inputs(2).other_rollouts(correct=False)] == [1, 3]


def test_contexts_keep_working_without_the_new_fields():
    assert ContextInputs(TASK, QUESTION, 0, ROLLOUTS).student is None  # old four-argument construction


@pytest.mark.parametrize("scored", range(4))
def test_self_demo_shows_a_correct_rollout_that_is_not_the_scored_one(scored):
    text = resolve_teacher("self:self-demo").context(inputs(scored))
    assert QUESTION.prompt in text and text.endswith(QUESTION.prompt)
    assert shown(text) == {2 if scored == 0 else 0}


def test_self_demo_is_none_without_another_correct_rollout():
    only_scored_correct = [RolloutView(0, "resp-0", True), RolloutView(1, "resp-1", False)]
    assert resolve_teacher("self:self-demo").context(inputs(0, only_scored_correct)) is None
    assert resolve_teacher("self:self-demo").context(inputs(1, only_scored_correct)) is not None


@pytest.mark.parametrize("scored", range(4))
def test_correct_wrong_labels_one_of_each_and_hides_the_scored_one(scored):
    text = resolve_teacher("self:correct-wrong").context(inputs(scored))
    assert scored not in shown(text) and len(shown(text)) == 2
    correct_part, wrong_part = text.split("### Incorrect response")
    assert "### Correct response" in correct_part
    assert any(f"resp-{r}" in correct_part for r in (0, 2)) and any(f"resp-{r}" in wrong_part for r in (1, 3))


def test_correct_wrong_is_none_when_a_kind_is_missing():
    rollouts = [RolloutView(0, "resp-0", True), RolloutView(1, "resp-1", False), RolloutView(2, "resp-2", True)]
    assert resolve_teacher("self:correct-wrong").context(inputs(1, rollouts)) is None  # only wrong one is scored
    assert resolve_teacher("self:correct-wrong").context(inputs(0, rollouts)) is not None


def test_summary_is_generated_once_per_question_and_cached(monkeypatch):
    calls = []

    def fake_generate(lm, prompt, n, max_new, temperature, seed_parts, is_final=None):
        calls.append(prompt)
        return ["The answer is even."]

    monkeypatch.setattr(summary, "generate_texts", fake_generate)
    state = RunState()
    student = load_model("tiny-random", "cpu")
    teacher = resolve_teacher("self:summary")
    texts = {teacher.context(inputs(r, student=student, state=state)) for r in range(4)}
    assert len(calls) == 1 and QUESTION.demonstration in calls[0]
    (text,) = texts
    assert "The answer is even." in text and text.endswith(QUESTION.prompt) and not shown(text)
    # another student (another run, or even the same state) gets its own summary, written by itself
    teacher.context(inputs(0, student=load_model("tiny-random:1", "cpu"), state=state))
    teacher.context(inputs(0, student=student, state=RunState()))
    assert len(calls) == 3


def test_summary_really_generates_with_a_summariser_model():
    teacher = resolve_teacher("self:summary:tiny-random:3")
    assert teacher.name == "self:summary:tiny-random:3"
    text = teacher.context(inputs(0, student=load_model("tiny-random", "cpu")))
    assert text is None or text.endswith(QUESTION.prompt)  # a random model may write nothing printable


def test_summary_is_none_without_a_writer_or_a_demonstration(monkeypatch):
    monkeypatch.delenv("OPD_SUMMARIZER", raising=False)
    assert resolve_teacher("self:summary").context(inputs(0)) is None  # no student, no summariser
    no_demo = Question(id="x", prompt="Question x", gold="even", demonstration="")
    assert resolve_teacher("self:summary:tiny-random:3").context(inputs(0, question=no_demo)) is None


def test_larger_demo_shows_the_first_correct_sample_and_none_when_all_are_wrong(monkeypatch):
    samples = {"q": ["abc", "ab", "abcd"]}  # parity: 3 letters wrong, 2 right
    monkeypatch.setattr(larger_demo, "generate_texts", lambda *args, **kwargs: samples["q"])
    monkeypatch.setattr(larger_demo, "text_model", lambda spec, inputs: None)
    teacher = resolve_teacher("self:larger-demo:some-model")
    state = RunState()
    text = teacher.context(inputs(0, state=state))
    assert "### Correct response\nab\n" in text and text.endswith(QUESTION.prompt)
    samples["q"] = ["abc", "a"]
    assert teacher.context(inputs(1, state=state)) == text  # sampled once per question and run
    other = Question(id="other", prompt="Question other", gold="even", demonstration="ab")
    assert teacher.context(inputs(0, question=other, state=state)) is None
    assert teacher.context(inputs(0, state=RunState())) is None  # a new run samples again


def test_larger_demo_default_model_comes_from_the_environment(monkeypatch):
    seen = []
    monkeypatch.setattr(larger_demo, "larger_demo_of", lambda inputs, spec: seen.append(spec))
    monkeypatch.setenv("OPD_LARGER_DEMO_MODEL", "tiny-random:9")
    resolve_teacher("self:larger-demo").context(inputs(0))
    monkeypatch.delenv("OPD_LARGER_DEMO_MODEL")
    resolve_teacher("self:larger-demo").context(inputs(0))
    assert seen == ["tiny-random:9", larger_demo.DEFAULT_MODEL]


def test_model_plus_context_shows_an_external_model_a_context_teachers_context():
    teacher = resolve_teacher("model:tiny-random:1+correct-demo")
    assert teacher.model == "tiny-random:1" and teacher.context is correct_demo_context
    assert set(teacher.needs) == {"second model", "gold"}
    assert "needs a second model, gold answers" in teacher.description
    assert resolve_teacher("model:tiny-random:1+self:self-demo").context(inputs(1)) is not None
    for bad in ("model:tiny-random:1+self", "model:tiny-random:1+no-such-context", "model:tiny-random:1+model:x"):
        with pytest.raises(RegistryError):
            resolve_teacher(bad)
    with pytest.raises(ValueError):
        resolve_teacher("model:tiny-random:1+")


def test_descriptions_say_what_each_teacher_needs():
    assert needs_text(()) == "needs nothing"
    for spec in ("self:self-demo", "self:correct-wrong", "self:summary", "self:larger-demo:x", "idp:default"):
        assert "; needs " in resolve_teacher(spec).description


NEW_TEACHERS = ("self:self-demo", "self:correct-wrong", "self:summary", "self:larger-demo:tiny-random:2",
                "idp:default", "model:tiny-random:1+self:self-demo")


def test_a_run_with_every_new_teacher_records_context_ok(tmp_path):
    # two rollouts: "other rollouts" is a single one, so correct-wrong can never be built (context_ok False)
    config = RunConfig(task="test-parity", student="tiny-random", teachers=NEW_TEACHERS, limit=2,
                       settings=Settings(rollouts=2, continuations=2, max_new_tokens=8), device="cpu")
    meta = run(config, tmp_path)
    assert meta["status"] == "complete"
    df = pq.read_table(tmp_path / "nodes.parquet").to_pandas()
    assert set(df.teacher) == set(NEW_TEACHERS)
    wrong = df[df.teacher == "self:correct-wrong"]
    assert len(wrong) and not wrong.context_ok.any() and wrong.teacher_logprobs.isna().all()
    demo = df[df.teacher == "self:self-demo"]
    questions = pq.read_table(tmp_path / "questions.parquet").to_pandas()
    for row in demo.itertuples():  # buildable exactly when the other rollout is correct
        other = questions[(questions.question_id == row.question_id) & (questions.rollout_id != row.rollout_id)]
        assert row.context_ok == bool(other.correct.any())
    assert df[df.teacher == "self:summary"].context_ok.all()  # parity questions all have a demonstration
