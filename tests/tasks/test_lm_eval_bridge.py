"""Tests for the ``lm_eval:<task>`` bridge on a local YAML task over a JSONL file: offline, no hub access.

User YAML directories alone are indexed first, so these tests never pay for indexing lm-eval's built-in tasks.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.api.registry import RegistryError
from harness.api.task import Task, resolve_task
from tasks.lm_eval import INCLUDE_PATH_ENV, LmEvalTask

pytest.importorskip("lm_eval")

ROWS = [{"q": "2+2", "a": "4"}, {"q": "3+3", "a": "6"}, {"q": "5+4", "a": "9"}]


def write_task(directory: Path, name: str, data: Path, cache: Path, extra: str = "",
               output_type: str = "generate_until") -> None:
    # JSON is valid YAML: quoting every path this way survives any characters in tmp_path
    (directory / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {json.dumps(str(data))}}}, cache_dir: {json.dumps(str(cache))}}}\n"
        "test_split: test\n"
        f"output_type: {output_type}\n"
        'doc_to_text: "Q: {{q}}\\nA:"\n'
        'doc_to_target: "{{a}}"\n'
        "metric_list:\n  - metric: exact_match\n"
        + extra
    )


@pytest.fixture
def yaml_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    directory = tmp_path / "yaml"
    directory.mkdir()
    cache = tmp_path / "hf-cache"
    write_task(directory, "opd_toy_plain", data, cache, 'generation_kwargs:\n  until: ["\\n"]\n')
    write_task(directory, "opd_toy_fewshot", data, cache,
               'description: "Add the numbers.\\n\\n"\nnum_fewshot: 1\nfewshot_split: test\n'
               'generation_kwargs:\n  until: ["\\n", "Q:"]\n  max_gen_toks: 17\n')
    write_task(directory, "opd_toy_loglik", data, cache, output_type="loglikelihood")
    monkeypatch.setenv(INCLUDE_PATH_ENV, str(directory))
    return directory


def test_resolves_loads_and_grades(yaml_dir):
    task = resolve_task("lm_eval:opd_toy_plain")
    assert isinstance(task, Task) and isinstance(task, LmEvalTask)
    assert task.name == "lm_eval:opd_toy_plain"
    assert task.max_new_tokens == 256  # no max_gen_toks: lm-eval's default
    questions = task.load(None)
    assert [q.id for q in questions] == ["opd_toy_plain-0", "opd_toy_plain-1", "opd_toy_plain-2"]
    assert [q.gold for q in questions] == ["4", "6", "9"]
    assert questions[0].prompt == "Q: 2+2\nA:"
    assert questions[0].meta["doc"] == ROWS[0]
    assert len(task.load(None, limit=2)) == 2
    for question in questions:
        assert task.grade(question, question.gold).correct
        assert task.grade(question, question.demonstration).correct
    gold = task.grade(questions[0], " 4\nQ: 3+3")  # cut at the first "until" string, leading blank ignored
    assert gold.correct and gold.extracted == "4"
    wrong = task.grade(questions[0], "5")
    assert not wrong.correct and wrong.extracted == "5"
    assert not task.grade(questions[0], "").correct
    assert task.answer_is_final("4\n") and not task.answer_is_final("4")


def test_fewshot_description_and_generation_kwargs(yaml_dir):
    task = resolve_task("lm_eval:opd_toy_fewshot")
    assert task.max_new_tokens == 17
    question = task.load(None)[0]
    assert question.prompt.startswith("Add the numbers.\n\nQ: ")
    assert question.prompt.endswith("Q: 2+2\nA:") and question.prompt.count("Q:") == 2  # one shot, then the doc
    assert task.grade(question, "4 Q: next").correct  # second stop string
    assert task.answer_is_final("4 Q:")


def test_refuses_non_generative_tasks(yaml_dir):
    with pytest.raises(RegistryError, match="only generate_until tasks"):
        resolve_task("lm_eval:opd_toy_loglik")


def test_unknown_name_and_missing_argument(yaml_dir, monkeypatch):
    for spec in ("lm_eval", "lm_eval:"):
        with pytest.raises(RegistryError, match="needs an lm-eval task name"):
            resolve_task(spec)
    monkeypatch.setenv(INCLUDE_PATH_ENV, str(yaml_dir / "does-not-exist"))
    with pytest.raises(RegistryError, match="does not exist"):
        resolve_task("lm_eval:opd_toy_plain")


def test_include_paths_are_an_argument_not_an_environment_channel(yaml_dir, monkeypatch):
    """--include-path reaches the factory as an argument (the environment is only read, and comes after it)."""
    monkeypatch.delenv(INCLUDE_PATH_ENV)
    task = resolve_task("lm_eval:opd_toy_plain", include_paths=[str(yaml_dir)])
    assert [q.gold for q in task.load(None)] == ["4", "6", "9"]
    assert INCLUDE_PATH_ENV not in os.environ


def test_grade_command_refuses_an_lm_eval_task_with_one_paragraph(yaml_dir, capsys):
    from harness.cli.main import main

    code = main(["grade", "lm_eval:opd_toy_plain", "--gold", "4", "--response", "4"])
    out = capsys.readouterr().out
    assert code == 2
    assert out.startswith("error:") and "source document" in out and "Traceback" not in out
