"""``opd validate`` end to end on tiny random models: a 2-step run, resume after a kill, refusals before any work."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest

from harness.workflows.validate import CHECKPOINT_FILE, RESULT_FILE, run_dir, run_validation
from harness.workflows.validate_config import Ranges, Training, ValidateConfig, ValidateError

needs_trl = pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs the train extra (TRL)")
TASK = "test-validate-parity"  # registered in tests/fakes.py


TEACHERS = ("self:correct-demo", "model:tiny-random:1", "self")


def _config(**changes) -> ValidateConfig:
    config = ValidateConfig(task=TASK, student="tiny-random", teachers=TEACHERS,
                            training=Training(steps=2, lr=1e-3, batch=2, rollouts=2, max_new_tokens=6,
                                              checkpoint_every=1),
                            ranges=Ranges(eval_limit=6, train_limit=6), seeds=(0,), samples=2, device="cpu")
    return replace(config, **changes)


@pytest.fixture(scope="module")
def diagnostic(tmp_path_factory):
    from harness.cli.main import main

    out = tmp_path_factory.mktemp("diag") / "run"
    code = main(["run", "--task", TASK, "--student", "tiny-random", *sum((["--teacher", t] for t in TEACHERS), []),
                 "--limit", "4", "--rollouts", "3", "--nodes-per-window", "1", "--top-k", "2", "--continuations",
                 "2", "--max-new-tokens", "6", "--device", "cpu", "--out", str(out), "--quiet", "--no-cache"])
    assert code == 0
    return out


def test_unchanged_weights_answer_exactly_alike_under_one_seed():
    """What lets the control reuse the before pass instead of evaluating again: two evaluations of the same weights
    with the same seed give the same answers, greedy and sampled; another seed samples other answers."""
    from harness.sampling.models import load_model
    from harness.workflows.validate import _questions_loader, evaluate_model

    task, questions_of, _ = _questions_loader(_config())
    questions = list(questions_of(None))[:6]
    lm = load_model("tiny-random", "cpu")
    first, again = (evaluate_model(lm, task, questions, 3, seed=0) for _ in range(2))
    assert first == again
    other = evaluate_model(lm, task, questions, 3, seed=1)
    assert other["greedy_response"] == first["greedy_response"]  # greedy does not depend on the seed
    assert other != first  # the sampled answers follow the seed


@needs_trl
def test_two_step_run_end_to_end(tmp_path, diagnostic):
    out = tmp_path / "validation"
    report = run_validation(_config(diagnostic=str(diagnostic)), out)
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["diagnostic_range"] == [0, 4] and protocol["eval_range"] == [4, 10]
    assert protocol["train_range"] == [10, 16]
    rows = {r["condition"]: r for r in report["rows"]}
    assert list(rows) == ["control", "grpo", *TEACHERS]
    # the control's after is the before pass (unchanged weights, same streams: see the test below): exactly no gain
    assert rows["control"]["gain_sampled"]["estimate"] == 0 and rows["control"]["gain_greedy"]["estimate"] == 0
    control = json.loads((run_dir(out, "control", 0) / RESULT_FILE).read_text())
    assert control["after"] == json.loads((out / "before.json").read_text()) and control["steps"] == 0
    for condition in ("grpo", *TEACHERS):
        result = json.loads((run_dir(out, condition, 0) / RESULT_FILE).read_text())
        assert result["steps"] == 2 and len(result["log"]) == 2
        assert all(set(step["questions"]) <= set(protocol["train_ids"]) for step in result["log"])
        assert not (run_dir(out, condition, 0) / CHECKPOINT_FILE).exists()
    for teacher in TEACHERS[:2]:  # a context / another model: a real target, a non-zero loss and gradient
        log = json.loads((run_dir(out, teacher, 0) / RESULT_FILE).read_text())["log"]
        assert all(step["loss"] > 0 and step["grad_norm"] > 0 for step in log)
        assert rows[teacher]["walign"]["questions"] >= 1 and "gap" in rows[teacher]
    # the gap is paired by answer k (opd accuracy's delta); where a context has every answer it is the plain
    # difference of the two pass rates, and it exists exactly for the questions with at least one pair
    predictors = json.loads((out / "predictors.json").read_text())
    rates = predictors["per_question"]
    for teacher in TEACHERS:
        gap = predictors["paired_gap"][teacher]
        assert set(gap) == {q for q, r in rates[teacher].items() if r is not None}
        row = next(r for r in predictors["rows"] if r["condition"] == teacher)
        for q, value in gap.items():
            if row["unavailable"] == 0 and row["answers"] == row["questions"] * 2:  # every answer present
                assert value == pytest.approx(rates[teacher][q] - rates["student"][q])
    # three teachers: the rank correlations exist for every predictor that is defined
    assert {c["predictor"] for c in report["correlations"]} >= {"walign", "gap"}
    assert (out / "validation.md").read_text().count("self:correct-demo") >= 1
    # the same command again trains nothing (every result is there)
    calls = []
    run_validation(_config(diagnostic=str(diagnostic)), out, on_step=lambda *a: calls.append(a))
    assert calls == []


class _Kill(Exception):
    pass


class _KillAt:
    """Progress that raises (a kill) when the given number of training steps has been taken."""

    def __init__(self, after_steps: int) -> None:
        self.left = after_steps

    def add_total(self, kind, amount):
        pass

    def advance(self, kind, amount=1):
        if kind == "training steps":
            self.left -= amount
            if self.left == 0:
                raise _Kill


@needs_trl
def test_resume_after_a_kill_gives_the_uninterrupted_result(tmp_path):
    config = _config(teachers=("self:correct-demo",), training=replace(_config().training, steps=3))
    whole = tmp_path / "whole"
    run_validation(config, whole)
    killed = tmp_path / "killed"
    # grpo runs first (control trains nothing): kill it after its 2nd step, past its first checkpoints
    with pytest.raises(_Kill):
        run_validation(config, killed, _KillAt(2))
    assert (run_dir(killed, "grpo", 0) / CHECKPOINT_FILE).is_file()
    assert not (run_dir(killed, "grpo", 0) / RESULT_FILE).exists()
    steps = []
    run_validation(config, killed, on_step=lambda c, s, n: steps.append(c))
    assert steps == ["grpo", "self:correct-demo"]  # the control had finished: not redone
    for condition in ("grpo", "self:correct-demo"):
        a = json.loads((run_dir(whole, condition, 0) / RESULT_FILE).read_text())
        b = json.loads((run_dir(killed, condition, 0) / RESULT_FILE).read_text())
        assert [s["loss"] for s in a["log"]] == pytest.approx([s["loss"] for s in b["log"]], rel=1e-5)
        assert a["after"] == b["after"]


# ------------------------------------------------------------------------------------------------ refusals


@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("harness.sampling.models.load_model", refuse)


def _main(tmp_path, *extra):
    from harness.cli.main import main

    return main(["validate", "--task", TASK, "--student", "tiny-random", "--steps", "2", "--eval-limit", "6",
                 "--train-limit", "6", "--out", str(tmp_path / "v"), "--quiet", *extra])


@pytest.mark.parametrize("extra, message", [
    (["--teacher", "self:corect-demo"], "Did you mean"),
    (["--teacher", "self:correct-demo", "--eval-start", "0", "--train-start", "3"], "ranges overlap"),
    (["--teacher", "self:correct-demo", "--loss", "grpo"], "teacher-free reference"),
    (["--teacher", "self:correct-demo", "--loss", "test-validate-untrainable"], "no trained form"),
    (["--teacher", "self:correct-demo", "--train-limit", "60"], "has 40 questions"),
    (["--teacher", "control"], "reference condition"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, no_model_loads, extra, message):
    from harness.diagnostic.losses import LOSSES, register_loss

    if "test-validate-untrainable" not in LOSSES:
        register_loss("test-validate-untrainable", "test fake: a scored loss with no trained form")(
            lambda: LOSSES.get("rkl")())
    assert _main(tmp_path, *extra) == 2
    printed = capsys.readouterr().out
    assert "error:" in printed and message in printed and "Traceback" not in printed
    assert not (tmp_path / "v").exists()  # nothing written


def test_without_trl_the_command_says_how_to_install_it(tmp_path, capsys, no_model_loads, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    assert _main(tmp_path, "--teacher", "self:correct-demo") == 2
    assert "opd-harness[train]" in capsys.readouterr().out
    assert not (tmp_path / "v").exists()


def test_the_diagnostic_must_hold_every_teacher(tmp_path, diagnostic, no_model_loads, capsys):
    assert _main(tmp_path, "--teacher", "self:self-demo", "--rollouts", "3", "--diagnostic", str(diagnostic)) == 2
    assert "has no nodes of teacher(s) self:self-demo" in capsys.readouterr().out


def test_a_validation_directory_keeps_its_protocol(tmp_path):
    from harness.workflows.validate import fix_protocol

    fix_protocol(tmp_path, {"config": {"lr": 1, "ranges": {"a": 1, "b": 2}}, "eval_range": [0, 1]})
    fix_protocol(tmp_path, {"config": {"lr": 1, "ranges": {"a": 1, "b": 2}}, "eval_range": [0, 1]})  # the same: fine
    with pytest.raises(ValidateError, match=r"differs in lr\)"):
        fix_protocol(tmp_path, {"config": {"lr": 2, "ranges": {"a": 1, "b": 2}}, "eval_range": [0, 1]})
    with pytest.raises(ValidateError, match=r"differs in ranges\.b, sample\)"):  # nested settings named dotted
        fix_protocol(tmp_path, {"config": {"lr": 1, "ranges": {"a": 1, "b": 3}, "sample": 1}, "eval_range": [0, 1]})
    with pytest.raises(ValidateError, match="differs in the question ranges"):
        fix_protocol(tmp_path, {"config": {"lr": 1, "ranges": {"a": 1, "b": 2}}, "eval_range": [0, 2]})


def test_response_logits_of_a_padded_batch_are_each_sequence_alone():
    import torch

    from harness.sampling.models import load_model
    from harness.workflows.validate import response_logits

    lm = load_model("tiny-random", "cpu")
    prefixes, responses = [[5, 6, 7, 8, 9], [5, 6, 7], [1, 2, 3, 4, 5, 6, 7]], [[10, 11, 12], [13, 14], [15]]
    for p, r, got in zip(prefixes, responses, response_logits(lm.model, prefixes, responses, lm.vocab_size)):
        alone = lm.model(input_ids=torch.tensor([p + r])).logits[0, len(p) - 1: len(p) - 1 + len(r)]
        torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)


@needs_trl
def test_a_validation_grows_a_given_number_of_runs_at_a_time(tmp_path):
    config = _config(teachers=("self:correct-demo",))
    out, finished = tmp_path / "v", []
    report = run_validation(config, out, max_runs=2, on_step=lambda c, s, n: finished.append(c))
    assert finished == ["control", "grpo"]
    assert {r["condition"]: r["seeds"] for r in report["rows"]} == {"control": [0], "grpo": [0],
                                                                  "self:correct-demo": []}
    assert "(not run)" in (out / "validation.md").read_text()
    run_validation(config, out, max_runs=2, on_step=lambda c, s, n: finished.append(c))
    assert finished == ["control", "grpo", "self:correct-demo"]  # nothing retrained, the last one added


@needs_trl
def test_report_only_rewrites_the_report_of_finished_runs_without_loading_or_training(tmp_path, monkeypatch):
    import importlib.util

    from harness.workflows.validate import report_finished

    config = _config(teachers=("self:correct-demo",))
    out = tmp_path / "v"
    run_validation(config, out, max_runs=2)  # control and grpo finished, the teacher not
    written = (out / "validation.json").read_text()  # as text: the report holds NaN (no correlation at 1 teacher)
    (out / "validation.json").unlink()
    (out / "validation.md").unlink()
    monkeypatch.setattr("harness.sampling.models.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    real = importlib.util.find_spec  # and TRL is not needed to report
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    report_finished(config, out)
    assert (out / "validation.json").read_text() == written
    assert "(not run)" in (out / "validation.md").read_text()
    assert not run_dir(out, "self:correct-demo", 0).exists()  # nothing trained
    with pytest.raises(ValidateError, match=r"differs in training\.lr\)"):  # the settings must be the validation's
        report_finished(replace(config, training=replace(config.training, lr=0.5)), out)


def test_report_only_without_a_validation_says_what_to_run(tmp_path, capsys, no_model_loads):
    assert _main(tmp_path, "--teacher", "self:correct-demo", "--report-only") == 2
    printed = capsys.readouterr().out
    assert "holds no validation to report on" in printed and "without --report-only" in printed
    assert "Traceback" not in printed and not (tmp_path / "v").exists()


@needs_trl
def test_a_teacher_with_another_tokenizer_is_refused_before_evaluation(tmp_path):
    from harness.api.errors import ModelError

    with pytest.raises(ModelError, match="does not share the student's tokenizer"):
        run_validation(_config(teachers=("self:correct-demo", "model:test-oracle")), tmp_path / "v")
    assert not (tmp_path / "v" / "before.json").exists() and not (tmp_path / "v" / "runs").exists()


# ------------------------------------------------------------------------------------------------ training split

SPLIT_TASK = "test-validate-split"  # test-validate-parity with a 12-question train split (tests/fakes.py)


def _plan(config):
    from harness.workflows.validate import _questions_loader, plan

    _, questions_of, train_of = _questions_loader(config)
    return plan(config, questions_of, train_of)


def test_training_questions_come_from_the_train_split_where_the_task_has_one():
    planned = _plan(_config(task=SPLIT_TASK))
    assert planned.train_split == "train" and planned.train_range == (0, 6)
    assert planned.train_ids == tuple(f"vp-train-{i}" for i in range(6))
    assert planned.eval_range == (0, 6) and planned.eval_ids == tuple(f"vp-{i}" for i in range(6))
    moved = _plan(_config(task=SPLIT_TASK, ranges=Ranges(eval_limit=6, train_limit=4, train_start=5)))
    assert moved.train_range == (5, 9) and moved.train_ids == tuple(f"vp-train-{i}" for i in range(5, 9))
    # without a train split: a range of the same order, after evaluation, recorded as such
    plain = _plan(_config())
    assert plain.train_split is None and plain.train_range == (6, 12)
    assert plain.train_ids == tuple(f"vp-{i}" for i in range(6, 12))


@pytest.mark.parametrize("task, ranges, message", [
    (SPLIT_TASK, Ranges(eval_limit=6, train_limit=6, train_start=8), "train split has 12 questions"),
    (f"{SPLIT_TASK}:1", Ranges(eval_limit=6, train_limit=6), "repeats evaluation or diagnostic question(s) (same "
                                                            "id or prompt): vp-1"),
])
def test_a_train_split_that_is_too_short_or_repeats_evaluation_is_refused(task, ranges, message):
    with pytest.raises(ValidateError) as error:
        _plan(_config(task=task, ranges=ranges))
    assert message in str(error.value)
    # a repeat outside the evaluation range is no overlap
    if task.endswith(":1"):
        assert _plan(_config(task=task, ranges=Ranges(eval_limit=6, eval_start=2, train_limit=6))).train_split


@needs_trl
def test_a_run_on_a_train_split_trains_on_it_and_records_it(tmp_path):
    out = tmp_path / "v"
    config = _config(task=SPLIT_TASK, teachers=("self:correct-demo",), training=replace(_config().training, steps=1))
    run_validation(config, out)
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["train_split"] == "train" and protocol["train_range"] == [0, 6]
    assert protocol["train_ids"] == [f"vp-train-{i}" for i in range(6)]
    for condition in ("grpo", "self:correct-demo"):
        log = json.loads((run_dir(out, condition, 0) / RESULT_FILE).read_text())["log"]
        assert log and all(q.startswith("vp-train-") and q in protocol["train_ids"] for s in log for q in s["questions"])
    assert "training questions [0, 6) of the task's train split" in (out / "validation.md").read_text()


def test_gsm8k_trains_on_its_train_split_and_no_training_question_is_an_evaluation_one(shared_data):
    """On the real local GSM8K: the planned training questions are rows of train.jsonl, and no training problem's
    text is the text of any test problem (read straight from the files, not through the task)."""
    if not (shared_data / "gsm8k" / "train.jsonl").is_file():
        pytest.skip("no local GSM8K train split")

    def rows(split):
        with open(shared_data / "gsm8k" / f"{split}.jsonl") as lines:
            return {row["id"]: " ".join(row["question"].split()) for row in map(json.loads, lines)}

    test, train = rows("test"), rows("train")
    config = _config(task="gsm8k", teachers=("self:correct-demo",), data_dir=str(shared_data),
                     ranges=Ranges(eval_limit=300, train_limit=500))
    planned = _plan(config)
    assert planned.train_split == "train" and len(planned.train_ids) == 500 and planned.train_range == (0, 500)
    assert set(planned.eval_ids) <= set(test) and len(planned.eval_ids) == 300
    assert set(planned.train_ids) <= set(train)  # every training question is a train row
    assert not {train[i] for i in planned.train_ids} & set(test.values())  # and none is any test problem
