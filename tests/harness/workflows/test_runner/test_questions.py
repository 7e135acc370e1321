"""End-to-end runs on tiny random models: records hold every METHOD column and recompute exactly."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.cli.main import main
from harness.diagnostic.losses import SupportView, resolve_loss
from harness.diagnostic.question import Settings
from harness.storage.records import LOSS_NAMES, NODE_SCHEMA, QUESTION_SCHEMA
from harness.workflows.runner import ConfigError, RunConfig, run

METHOD_COLUMNS = [
    "task", "student", "teacher", "question_id", "rollout_id", "position", "depth_norm", "rollout_correct",
    "support_token_ids", "sampled_token_id", "grpo_advantage", "student_logprobs", "teacher_logprobs",
    "kl_student_teacher", "succ_correct", "succ_trials", "ideal_grad",
    "align_rkl", "align_fkl", "align_jsd", "align_sampled", "align_grpo",
]
TEACHERS = ("self", "self:correct-demo", "model:tiny-random:1")


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = RunConfig(task="test-parity", student="tiny-random", teachers=TEACHERS, limit=2,
                       settings=Settings(rollouts=4, continuations=3, max_new_tokens=10), device="cpu")
    meta = run(config, out)
    return out, meta


def test_records_have_every_method_column(parity_run):
    out, meta = parity_run
    nodes = pq.read_table(out / "nodes.parquet")
    assert nodes.schema.equals(NODE_SCHEMA)
    assert set(METHOD_COLUMNS) <= set(nodes.column_names)
    assert pq.read_table(out / "questions.parquet").schema.equals(QUESTION_SCHEMA)
    saved = json.loads((out / "run.json").read_text())
    assert saved["status"] == "complete" and saved["config"]["teachers"] == list(TEACHERS)
    assert {"torch", "transformers", "python"} <= set(saved["versions"]) and saved["device"] == "cpu"
    assert len(saved["code"]) == 32 and int(saved["code"], 16) >= 0  # which sources made the records
    assert saved["counts"]["informative_nodes"] > 0 and saved["timings"]["total_s"] > 0
    df = nodes.to_pandas()
    assert set(df.teacher) == set(TEACHERS)
    assert len(df) == saved["counts"]["nodes"] * len(TEACHERS)


def test_every_alignment_recomputes_from_the_records_own_columns(parity_run):
    out, _ = parity_run
    df = pq.read_table(out / "nodes.parquet").to_pandas()
    losses = {name: resolve_loss(name) for name in LOSS_NAMES}
    checked = 0
    for row in df.itertuples():
        support = list(row.support_token_ids)
        assert row.sampled_token_id == support[0]
        p = np.exp(np.array(row.student_logprobs))
        s_hat = np.array(row.succ_correct) / np.array(row.succ_trials)
        v_hat = p @ s_hat / p.sum()
        g = np.append(p * (s_hat - v_hat), 0.0)
        informative = s_hat.max() != s_hat.min()
        assert informative == row.informative
        if informative:
            np.testing.assert_allclose(row.ideal_grad, g, atol=1e-15)
        view = SupportView(np.array(row.student_logprobs), np.array(row.teacher_logprobs), 0,
                           row.kl_student_teacher, row.jsd_rbar, row.grpo_advantage)
        for name in LOSS_NAMES:
            stored = getattr(row, f"align_{name}")
            if not informative:
                assert math.isnan(stored)
                continue
            d = losses[name].support_direction(view)
            if row.teacher == "self" and name != "grpo":
                # q == p: a zero direction has no alignment (METHOD), it is counted in the zero-d share instead
                assert getattr(row, f"dnorm_{name}") == 0.0 and math.isnan(stored)
            else:
                g = np.array(row.ideal_grad)
                norms = np.linalg.norm(g) * np.linalg.norm(d)
                assert stored == pytest.approx(g @ d / norms if norms > 0 else math.nan, abs=1e-9, nan_ok=True)
                checked += 1
    assert checked > 0


def test_depth_and_windows_and_advantages(parity_run):
    out, _ = parity_run
    df = pq.read_table(out / "nodes.parquet").to_pandas()
    questions = pq.read_table(out / "questions.parquet").to_pandas()
    assert (df.depth_norm == df.position / df.rollout_len).all()
    per_window = df[df.teacher == "self"].groupby(["question_id", "rollout_id", "window"]).size()
    assert per_window.max() <= 2  # B = 2 nodes per depth window
    for qid, group in questions.groupby("question_id"):
        rewards = group.correct.astype(float)
        np.testing.assert_allclose(group.grpo_advantage, rewards - rewards.mean())


def test_same_seed_gives_identical_records(parity_run, tmp_path):
    out, _ = parity_run
    config = RunConfig(task="test-parity", student="tiny-random", teachers=TEACHERS, limit=2,
                       settings=Settings(rollouts=4, continuations=3, max_new_tokens=10), device="cpu")
    run(config, tmp_path / "again")
    first = pq.read_table(out / "nodes.parquet").to_pandas()
    second = pq.read_table(tmp_path / "again" / "nodes.parquet").to_pandas()
    pd.testing.assert_frame_equal(first, second)


def test_bad_configuration_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="--rollouts must be at least 1"):
        run(RunConfig(task="test-parity", student="tiny-random", settings=Settings(rollouts=0)), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "nodes.parquet").write_text("old")
    with pytest.raises(ConfigError, match="--overwrite"):
        run(RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=1,
                      settings=Settings(rollouts=1, max_new_tokens=2)), tmp_path / "busy")


def test_cli_run_leaderboard_and_list(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--teacher",
                 "self:correct-demo", "--limit", "1", "--rollouts", "3", "--max-new-tokens", "8", "--out", str(out),
                 "--quiet", "--device", "cpu"])
    assert code == 0
    assert "nodes diagnosed" in capsys.readouterr().out
    assert main(["leaderboard", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["teacher"], r["loss"]) for r in rows} >= {("self", "rkl"), ("self:correct-demo", "jsd"), ("-", "grpo")}
    for row in rows:
        assert {"questions", "rollouts", "nodes", "informative", "align", "align_correct", "align_incorrect",
                "walign", "pos_frac"} <= set(row)
    assert main(["list", "teachers"]) == 0
    listing = capsys.readouterr().out
    assert "self:correct-demo" in listing and "model" in listing


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--task", "boolx"], "Did you mean 'boolq'"),
        (["run", "--task", "test-parity", "--teacher", "self:corect-demo"], "Did you mean 'self:correct-demo'"),
        (["run", "--task", "test-parity", "--student", "tiny-randm"], "Did you mean 'tiny-random'"),
        (["run", "--task", "test-parity", "--teacher", "model:tiny-randm"], "Unknown model 'tiny-randm'. Did you mean "
                                                                            "'tiny-random'"),
        (["run", "--task", "test-parity", "--rollouts", "0"], "--rollouts must be at least 1"),
        (["run", "--task", "test-parity", "--temperature", "0"], "--temperature must be > 0"),
        (["run", "--task", "test-parity", "--temperature", "-0.5"], "--temperature must be > 0 (got -0.5)"),
        (["run", "--task", "test-parity", "--limit", "-3"], "--limit must be a positive"),
        (["run", "--task", "test-parity", "--limit", "0"], "--limit must be a positive number of questions (got 0)"),
        (["run", "--task", "boolq", "--data-dir", "/nonexistent/dir"], "does not exist"),
        (["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "model:test-oracle"],
         "does not share the student's tokenizer"),
    ],
)
def test_bad_input_is_one_clear_error(argv, message, tmp_path, capsys):
    _assert_one_clear_error(argv, message, tmp_path, capsys)


def _assert_one_clear_error(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert message in printed and "Traceback" not in printed
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize(
    "argv, message",
    [
        (["leaderboard", "RUN", "--loss", "rkll"],
         "Unknown loss 'rkll'. Did you mean 'rkl'"),
        (["leaderboard", "RUN", "--loss", "rkl", "--loss", "JSD"], "Did you mean 'jsd'?"),
        (["leaderboard", "RUN", "--resamples", "0"], "--resamples must be a positive integer (got 0)"),
        (["leaderboard", "RUN", "--permutations", "-5", "--seed", "-1"],
         "--permutations must be a positive integer (got -5); --seed must be 0 or more (got -1)"),
        (["plot", "RUN", "--loss", "fkll", "--out", "PLOTS"], "Unknown loss 'fkll'. Did you mean 'fkl'"),
        (["plot", "RUN", "--loss", "grpo", "--out", "PLOTS"],
         "Loss 'grpo' cannot be used here: the divergence figure draws one line per teacher"),
        (["plot", "RUN", "--resamples", "0", "--out", "PLOTS"], "--resamples must be a positive integer (got 0)"),
        (["analyze", "RUN", "--resamples", "-1"], "--resamples must be a positive integer (got -1)"),
        (["compare", "RUN", "RUN", "--permutations", "0"], "--permutations must be a positive integer (got 0)"),
        (["view", "RUN", "--question", "parity-0", "--loss", "klr"], "Unknown loss 'klr'"),
    ],
)
def test_bad_report_input_is_one_clear_error(argv, message, parity_run, tmp_path, capsys):
    """`opd leaderboard` / `opd plot` on a finished run: bad loss names and numbers, one paragraph, exit 2."""
    out, _ = parity_run
    swap = {"RUN": str(out), "PLOTS": str(tmp_path / "plots")}
    assert main([swap.get(arg, arg) for arg in argv]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert printed.startswith("error:") and message in printed and "Traceback" not in printed
    if "--loss" in argv:
        assert "See `opd list losses`" in printed or "Choose --loss among rkl, fkl, jsd, sampled." in printed
    assert not (tmp_path / "plots").exists()  # checked before any work


def test_disagreement_priority_uses_teacher_tv_and_teacher_top_tokens(tmp_path):
    from harness.api.task import resolve_task
    from harness.sampling.generation import forward_logits
    from harness.sampling.models import load_model
    from harness.sampling.prompting import chat_prompt_ids

    config = RunConfig(task="test-parity", student="tiny-random", teachers=("model:tiny-random:1",), limit=1,
                       settings=Settings(rollouts=2, continuations=2, max_new_tokens=8, priority="disagreement"),
                       device="cpu")
    run(config, tmp_path / "dis")
    df = pq.read_table(tmp_path / "dis" / "nodes.parquet").to_pandas()
    questions = pq.read_table(tmp_path / "dis" / "questions.parquet").to_pandas()
    teacher = load_model("tiny-random:1", "cpu")
    question = resolve_task("test-parity").load(None, 1)[0]
    assert len(df) > 0
    for row in df.itertuples():
        # the stored priority is max_t TV(p, q_t); with one teacher it equals the node's TV column
        assert row.priority == pytest.approx(row.tv, abs=1e-5)
        tokens = list(questions[questions.rollout_id == row.rollout_id].response_token_ids.iloc[0])
        assert len(tokens) == row.rollout_len and tokens[row.position] == row.sampled_token_id
        ids = chat_prompt_ids(teacher.tokenizer, question.prompt) + tokens
        q_logits = forward_logits(teacher, ids, logits_to_keep=len(tokens) + 1)[: len(tokens)]
        assert int(q_logits[row.position].argmax()) in list(row.support_token_ids)


def test_bad_data_rows_and_output_paths_are_clear_errors(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "boolq").mkdir(parents=True)
    (data / "boolq" / "validation.jsonl").write_text(
        '{"idx": 0, "question": "is it", "passage": "p", "answer": true}\n'
        '{"idx": 1, "question": "is it", "passage": "p"}\n'  # the gold answer is missing on line 2
    )
    _assert_one_clear_error(["run", "--task", "boolq", "--student", "tiny-random", "--data-dir", str(data)],
                            "validation.jsonl, line 2", tmp_path, capsys)
    (data / "boolq" / "validation.jsonl").write_text('{"idx": 0, "question": "is it", "passage": "p", "answer": tr\n')
    _assert_one_clear_error(["run", "--task", "boolq", "--student", "tiny-random", "--data-dir", str(data)],
                            "line 1", tmp_path, capsys)
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    code = main(["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
                 "--rollouts", "1", "--max-new-tokens", "2", "--out", str(a_file), "--quiet", "--device", "cpu"])
    assert code == 2 and "is a file, not a directory" in " ".join(capsys.readouterr().out.split())
    assert a_file.read_text() == "not a directory"
    # an --out that cannot be created: below a regular file (we run as root, so a chmod would not stop the write)
    for unwritable in (a_file / "sub", Path("/proc/opd-harness-test/out")):
        if unwritable.parts[1] == "proc" and not Path("/proc/self").exists():
            continue  # no procfs here
        code = main(["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
                     "--rollouts", "1", "--max-new-tokens", "2", "--out", str(unwritable), "--quiet", "--device",
                     "cpu"])
        printed = " ".join(capsys.readouterr().out.split())
        assert code == 2 and "Traceback" not in printed
        assert f"Cannot create or write --out {unwritable}" in printed and "choose a writable directory" in printed
        assert not unwritable.exists()
    assert a_file.read_text() == "not a directory"


def test_empty_selection_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "boolq").mkdir(parents=True)
    (data / "boolq" / "validation.jsonl").write_text("\n")  # a data file without a single question
    _assert_one_clear_error(["run", "--task", "boolq", "--student", "tiny-random", "--data-dir", str(data)],
                            "No questions selected for task 'boolq': check --limit and the data.", tmp_path, capsys)


def test_each_prompt_is_prefilled_once_per_model(tmp_path, monkeypatch):
    """The rollouts and the planning of a question start from one pass over its prompt (not one each), and a
    teacher on another model passes over its own context once."""
    import harness.diagnostic.question as diagnostic
    import harness.sampling.backends as backends

    passes: list[tuple[int, tuple[int, ...]]] = []
    original = diagnostic.prefill

    def counting(lm, input_ids, *args, **kwargs):
        passes.append((id(lm), tuple(input_ids)))
        return original(lm, input_ids, *args, **kwargs)

    monkeypatch.setattr(diagnostic, "prefill", counting)
    monkeypatch.setattr(backends, "prefill", counting)
    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self", "model:tiny-random:1"), limit=2,
                       settings=Settings(rollouts=3, continuations=2, max_new_tokens=6), device="cpu")
    run(config, tmp_path / "run")
    assert passes and len(passes) == len(set(passes))
