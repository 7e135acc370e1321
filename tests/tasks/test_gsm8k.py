"""Tests for the GSM8K task: fake local data, a faked hub, the grader on hand-made responses, real data when present."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import tasks.gsm8k as gsm8k_module
from harness.api.answers import GoldAnswerError
from harness.api.data import DataError
from harness.api.task import TASKS, Question, Task, resolve_task
from tasks.gsm8k import GSM8K

JANET = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
         "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
         "How much in dollars does she make every day at the farmers' market?")
JANET_SOLUTION = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
                  "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def row(split: str, index: int, question: str, answer: object, solution: str = "It is so.") -> dict:
    return {"id": f"gsm8k-{split}-{index}", "question": question, "solution": solution, "answer": answer}


@pytest.fixture
def fake_data_dir(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [row("test", 0, JANET, "18", JANET_SOLUTION),
                                                     row("test", 1, "Test question B?", "1,000"),
                                                     row("test", 2, "Test question C?", "-3")])
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", [row("train", i, f"Train question {i}?", str(i), f"Step {i}.")
                                                      for i in range(3)])
    return tmp_path


def test_registered_and_protocol():
    assert "gsm8k" in TASKS
    task = resolve_task("gsm8k")
    assert isinstance(task, GSM8K) and isinstance(task, Task)
    assert task.name == "gsm8k" and task.max_new_tokens == 512 and task.description and task.shots == 0
    with pytest.raises(ValueError, match="no argument"):
        resolve_task("gsm8k:cot")
    with pytest.raises(ValueError, match="shots"):
        gsm8k_module.gsm8k(shots=9)


def test_load_local_fake(fake_data_dir):
    questions = GSM8K().load(fake_data_dir)
    assert [q.id for q in questions] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    assert [q.gold for q in questions] == ["18", "1000", "-3"]
    first = questions[0]
    assert first.prompt == ("Solve the following math problem. Reason step by step, then write the final answer as a "
                            "single number in \\boxed{}.\n\nProblem: " + JANET)
    # the calculator annotations are dropped; the demonstration ends in the prompt's format
    assert first.demonstration == ("Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day at "
                                   "the farmer's market.\n\nThe final answer is \\boxed{18}.")
    assert first.meta["solution"] == JANET_SOLUTION and "answer_as_published" not in first.meta
    assert questions[1].meta["answer_as_published"] == "1,000"
    assert [q.id for q in GSM8K().load(fake_data_dir, limit=2)] == ["gsm8k-test-0", "gsm8k-test-1"]
    assert GSM8K().load(fake_data_dir, limit=0) == []


def test_shots_come_from_train_and_never_from_the_evaluated_split(fake_data_dir):
    question = gsm8k_module.gsm8k(shots=2).load(fake_data_dir, 1)[0]
    prompt = question.prompt
    assert "Train question 0?" in prompt and "Train question 1?" in prompt and "Train question 2?" not in prompt
    assert "Test question" not in prompt and prompt.count("\\boxed{") == 3  # two solutions + the instruction
    assert prompt.index("Train question 1?") < prompt.index("Problem: " + JANET)
    assert prompt.endswith(GSM8K().load(fake_data_dir, 1)[0].prompt)


def test_train_split_questions_are_the_train_rows_after_the_shots(fake_data_dir):
    train = GSM8K().load_train(fake_data_dir)
    assert [q.id for q in train] == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]
    assert train[1].gold == "1" and "Problem: Train question 1?" in train[1].prompt
    assert train[1].demonstration.startswith("Step 1.")
    assert [q.id for q in GSM8K().load_train(fake_data_dir, limit=2)] == ["gsm8k-train-0", "gsm8k-train-1"]
    # with 2 shots, the two rows every prompt shows are not training questions; the rest carry the same shots
    shot = gsm8k_module.gsm8k(shots=2).load_train(fake_data_dir)
    assert [q.id for q in shot] == ["gsm8k-train-2"]
    assert "Train question 0?" in shot[0].prompt and shot[0].prompt.endswith(train[2].prompt)


def test_missing_file_explains(tmp_path):
    with pytest.raises(DataError, match="gsm8k/test.jsonl"):
        GSM8K().load(tmp_path)


@pytest.mark.parametrize("answer", [None, "", "   "])
def test_a_row_without_an_answer_is_one_clear_paragraph(tmp_path, answer):
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [row("test", 0, "Q?", "5"), row("test", 1, "Q?", answer)])
    with pytest.raises(DataError) as error:
        GSM8K().load(tmp_path)
    message = str(error.value)
    assert "test.jsonl row 2 has no answer" in message and "fix or remove that row" in message and "\n" not in message


def test_a_row_lacking_the_answer_field_names_it(tmp_path):
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [{"id": "gsm8k-test-0", "question": "Q?", "solution": "S"}])
    with pytest.raises(DataError, match="line 1 lacks the required field.*answer"):
        GSM8K().load(tmp_path)


def test_an_unreadable_answer_is_caught_at_load(tmp_path):
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [row("test", 0, "Q?", "eighteen")])
    with pytest.raises(DataError, match="row 1.*cannot read the gold answer 'eighteen'"):
        GSM8K().load(tmp_path)


def test_hub_path_is_lazy_and_splits_the_solution(monkeypatch):
    calls = []

    def fake_hub(path, name, split):
        calls.append((path, name, split))
        yield {"question": JANET, "answer": JANET_SOLUTION + "\n#### 18"}
        yield {"question": "Q1?", "answer": "Add them.\n#### 1,000"}
        raise AssertionError("read past the limit")

    monkeypatch.setattr(gsm8k_module, "load_hub", fake_hub)
    questions = GSM8K().load(None, limit=2)
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [(q.id, q.gold) for q in questions] == [("gsm8k-test-0", "18"), ("gsm8k-test-1", "1000")]
    assert questions[0].meta["solution"] == JANET_SOLUTION and questions[0].meta["source"] == "openai/gsm8k"


def test_hub_shots_come_from_the_hub_train_split(monkeypatch):
    calls = []

    def fake_hub(path, name, split):
        calls.append(split)
        return iter([{"question": f"{split} question?", "answer": "Worked.\n#### 7"}])

    monkeypatch.setattr(gsm8k_module, "load_hub", fake_hub)
    (question,) = gsm8k_module.gsm8k(shots=1).load(None, limit=1)
    assert sorted(calls) == ["test", "train"]
    assert question.prompt.index("train question?") < question.prompt.index("Problem: test question?")


def test_hub_row_without_final_line_explains(monkeypatch):
    monkeypatch.setattr(gsm8k_module, "load_hub", lambda path, name, split: iter([{"question": "Q", "answer": "5"}]))
    with pytest.raises(DataError, match="ending in '#### <number>'"):
        GSM8K().load(None)


GRADE_CASES = [
    # the spellings a careful user expects to count
    ("16 - 3 - 4 = 9, 9 * 2 = 18\n#### 18", "18", True),
    ("The final answer is $\\boxed{18}$.", "18", True),
    ("She makes 9 * 2 = $18 every day.", "18", True),
    ("The answer is $18.00.", "18", True),
    ("\\boxed{18 \\text{ dollars}}", "18", True),
    ("Answer: 18 dollars.", "18", True),
    ("\\boxed{\\frac{36}{2}}", "\\frac{36}{2}", True),  # math-verify
    ("The answer is 20.\nWait, she also eats three. The answer is 18.", "18", True),
    ("#### 18\nCheck: 16 - 3 - 4 = 9 eggs, 2 each.", "18", True),
    # and the ones that must not
    ("The answer is 18.\nWait, she also bakes four. The answer is 14.", "14", False),
    ("\\boxed{-18}", "-18", False),
    ("\\boxed{180}", "180", False),
    ("I cannot work this out.", None, False),
]


@pytest.mark.parametrize("response, extracted, correct", GRADE_CASES)
def test_grade(response, extracted, correct):
    question = Question(id="q", prompt="p", gold="18", demonstration="", meta={})
    grade = GSM8K().grade(question, response)
    assert (grade.extracted, grade.correct) == (extracted, correct)


def test_grade_gold_spellings_and_unreadable_gold():
    task = GSM8K()
    for gold in ("1,000", "1000.00", "$1,000", 1000):
        assert task.grade(Question("q", "p", gold, "", {}), "#### 1000\n").correct
    with pytest.raises(GoldAnswerError, match="cannot read the gold answer 'a thousand'"):
        task.grade(Question("q", "p", "a thousand", "", {}), "#### 1000")


def test_answer_is_final():
    task = GSM8K()
    assert task.answer_is_final("so \\boxed{18}") and task.answer_is_final("#### 18\n")
    assert not task.answer_is_final("so \\boxed{18") and not task.answer_is_final("#### 18")
    assert not task.answer_is_final("She makes 18 dollars.")


def test_real_data(shared_data):
    task = GSM8K()
    questions = task.load(shared_data)
    assert len(questions) == 1319 and len({q.id for q in questions}) == 1319
    assert (questions[0].id, questions[0].gold, questions[1].gold) == ("gsm8k-test-0", "18", "3")
    assert all(task.grade(q, q.demonstration).correct for q in questions)
    assert all(task.answer_is_final(q.demonstration) for q in questions)
    assert not any("<<" in q.demonstration for q in questions)
    train = [json.loads(line)["question"] for line in (shared_data / "gsm8k" / "train.jsonl").open()]
    shots = gsm8k_module.gsm8k(shots=8).load(shared_data, 1)[0].prompt
    assert all(question in shots for question in train[:8])
    assert not {q.meta["question"] for q in questions} & set(train)  # the splits share no question


@pytest.mark.parametrize("argv, expected", [
    (["gsm8k", "--gold", "18", "--response", "9 * 2 = 18\n#### 18"], {"extracted": "18", "correct": True}),
    (["gsm8k", "--gold", "1,000", "--response", "so \\boxed{\\$1{,}000.00}."], {"extracted": "1000", "correct": True}),
    (["gsm8k", "--gold", "18", "--response", "The answer is 20. No: the answer is 18."],
     {"extracted": "18", "correct": True}),
    (["gsm8k", "--gold", "-3", "--response", "It drops 3 degrees, so the change is -3."],
     {"extracted": "-3", "correct": True}),
    (["gsm8k", "--gold", "18", "--response", "no idea"], {"extracted": None, "correct": False}),
    (["mmlu:cot", "--gold", "B", "--response", "Let's look at each option:\nA. x\nAnswer: B"],
     {"extracted": "B", "correct": True}),
    (["boolq:cot", "--gold", "false", "--response", "Yes, it says so, but only once.\nAnswer: no"],
     {"extracted": "no", "correct": True}),
])
def test_opd_grade_prints_json(capsys, argv, expected):
    from harness.cli.main import main

    assert main(["grade", *argv]) == 0
    assert json.loads(capsys.readouterr().out) == {"task": argv[0], "gold": argv[2], **expected}


def test_opd_grade_unreadable_gold_is_one_clear_error(capsys):
    from harness.cli.main import main

    assert main(["grade", "gsm8k", "--gold", "eighteen", "--response", "#### 18"]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "The gsm8k task cannot read the gold answer 'eighteen'" in printed and "1,000" in printed
    assert "Traceback" not in printed


@pytest.mark.parametrize("spec", ["gsm8k", "boolq:cot"])
def test_a_run_records_the_task_spec_prompt_and_grades(spec, fake_data_dir, tmp_path, capsys):
    """End to end on the tiny random model: run.json keeps the spec, questions.parquet the CoT prompt, and every
    stored grade is what the task's grader says of the stored response."""
    import pyarrow.parquet as pq

    from harness.cli.main import main

    write_jsonl(fake_data_dir / "boolq" / "validation.jsonl",
                [{"idx": 0, "question": "is the sky blue", "passage": "Sky -- The sky is blue.", "answer": True}])
    out = tmp_path / "run"
    assert main(["run", "--task", spec, "--student", "tiny-random", "--teacher", "self:correct-demo", "--limit", "1",
                 "--rollouts", "3", "--max-new-tokens", "6", "--data-dir", str(fake_data_dir), "--out", str(out),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert json.loads((out / "run.json").read_text())["config"]["task"] == spec
    task = resolve_task(spec)
    (question,) = task.load(fake_data_dir, 1)
    rows = pq.read_table(out / "questions.parquet").to_pylist()
    assert len(rows) == 3 and {r["prompt"] for r in rows} == {question.prompt}
    assert "step by step" in question.prompt
    for r in rows:
        grade = task.grade(question, r["response"])
        assert (r["extracted"], r["correct"], r["gold"]) == (grade.extracted, grade.correct, question.gold)
