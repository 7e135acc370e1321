"""The screened selection (``--selection screened``, harness.diagnostic.selection) on the exact-oracle fakes.

What must hold: the estimate ``S_hat`` of every kept node comes from fresh continuations only, drawn after the
decision to keep it, so it is unbiased for the exact ``S`` (computed here by enumerating every future of the
4-token oracle model); the screening evidence that decided the keep (the rollout itself, sibling rollouts sharing
the prefix, screening continuations; recorded per node as ``screen_correct``/``screen_trials``) would bias it, and
the test shows it does, so it has the power to catch an implementation that reuses that evidence.

The statistic: a kept node's evidence is "mixed" by construction (a success and a failure), so evidence reused
for the sampled token leans towards the rollout's outcome and evidence reused for the alternatives leans against
it. ``D = sum over kept nodes and support tokens of w_k * sign * (correct_k - trials_k * S_k)``, with ``w = -1``
for the sampled token and ``+1`` for the others and ``sign = +1`` when the rollout failed, ``-1`` when it succeeded,
is centred on 0 for any estimator independent of the evidence, with variance ``sum trials_k S_k (1 - S_k)``.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from harness.api.progress import NoProgress
from harness.api.task import resolve_task
from harness.cli.main import main
from harness.diagnostic.losses import resolve_loss
from harness.diagnostic.question import Participants, Settings, diagnose_question
from harness.sampling.backends import OneCallAtATime
from harness.sampling.models import load_model
from harness.sampling.teacher import resolve_teacher
from harness.storage.cache import WorkCache
from harness.storage.records import LOSS_NAMES
from harness.workflows.runner import ConfigError, RunConfig, config_fingerprint, run
from tests.helpers import HORIZON, rollout_prefix
from tests.helpers import exact_success as _exact


def _run(task: str, student_spec: str, seed: int, m: int, selection: str = "screened", top_k: int = 3,
         max_new: int = HORIZON):
    student = load_model(student_spec, "cpu")
    # the student as its own teacher: no teacher pass, so many seeds stay cheap (alignments are not under test)
    who = Participants(resolve_task(task), student, student_spec, [(resolve_teacher("self"), student)],
                       [resolve_loss(name) for name in LOSS_NAMES], seed)
    settings = Settings(rollouts=6, continuations=m, top_k=top_k, nodes_per_window=2, max_new_tokens=max_new,
                        selection=selection)
    return who, diagnose_question(who.task.load(None)[0], who, settings, NoProgress())


def _z(terms: list[tuple[float, float]]) -> float:
    """(deviation, variance) terms -> the standardised sum."""
    deviation = sum(d for d, _ in terms)
    variance = sum(v for _, v in terms)
    return deviation / math.sqrt(variance)


@pytest.mark.slow
def test_fresh_estimates_are_unbiased_and_reused_screening_evidence_is_not():
    fresh, reused = [], []
    nodes, success = 0, None
    for seed in range(100):
        who, result = _run("test-count-a", "test-oracle", seed, m=2)
        if success is None:  # one student for every seed: enumerate its futures once
            success, _ = _exact(who, 1.0)
        for row in result.node_rows:
            nodes += 1
            prefix = rollout_prefix(who, result, row)
            sign = -1.0 if row["rollout_correct"] else 1.0
            for k, token in enumerate(row["support_token_ids"]):
                s = success(prefix + (token,))
                weight = -1.0 if k == 0 else 1.0
                correct, trials = row["succ_correct"][k], row["succ_trials"][k]
                fresh.append((weight * sign * (correct - trials * s), trials * s * (1 - s)))
                # the biased variant: the evidence that chose the node pooled into S_hat
                correct += row["screen_correct"][k] + (int(row["rollout_correct"]) if k == 0 else 0)
                trials += row["screen_trials"][k] + (1 if k == 0 else 0)
                reused.append((weight * sign * (correct - trials * s), trials * s * (1 - s)))
    assert nodes > 500, "too few kept nodes for a test with power"
    assert abs(_z(fresh)) < 4.0, f"S_hat of kept nodes is biased: z = {_z(fresh):.2f}"
    assert _z(reused) > 4.0, f"the biased variant went undetected: z = {_z(reused):.2f}"


@pytest.mark.parametrize("task, student", [("test-count-a", "test-oracle"),
                                           ("test-first-a-even", "test-oracle-sharp:1")])
def test_kept_nodes_match_exact_enumeration_from_fresh_trials_only(task, student):
    checked = 0
    for seed in range(3):
        who, result = _run(task, student, seed, m=400, top_k=4)
        success, _ = _exact(who, 1.0)
        for row in result.node_rows:
            assert row["selection"] == "screened"
            # M fresh trials per support token; the rollout (part of the keep decision) is not one of them
            assert row["succ_trials"] == [400] * len(row["support_token_ids"])
            assert list(np.add(row["succ_correct_a"], row["succ_correct_b"])) == row["succ_correct"]
            # the keep decision saw a success and a failure (the rollout's own outcome included)
            evidence_correct = sum(row["screen_correct"]) + int(row["rollout_correct"])
            assert 0 < evidence_correct < sum(row["screen_trials"]) + 1
            prefix = rollout_prefix(who, result, row)
            for token, correct, trials in zip(row["support_token_ids"], row["succ_correct"], row["succ_trials"]):
                exact = success(prefix + (token,))
                bound = 5 * math.sqrt(max(exact * (1 - exact), 1e-12) / trials) + 1.0 / trials
                assert abs(correct / trials - exact) <= bound, (row["position"], token, correct / trials, exact)
            checked += 1
    assert checked


def test_screened_never_branches_where_the_answer_is_fixed_or_the_support_is_one_token():
    """``test-count-a-final`` says the answer is final once an "a" is written; rollouts sampled without that stop
    (as a backend that cannot stop early samples them) go on past it. METHOD's windows branch there, the screened
    selection never does; and with K = 0 every support is the sampled token alone: nothing is screened at all."""

    class NoStop(OneCallAtATime):  # the transformers backend, rollouts run to EOS or the horizon as vLLM's do
        def __init__(self, inner):
            self.inner, self.name = inner, "no-stop"

        def rollouts(self, *args, **kwargs):
            return self.inner.rollouts(*args, **{**kwargs, "is_final": None})

        def continuations(self, *args, **kwargs):
            return self.inner.continuations(*args, **kwargs)

    fixed_after_a = {"windows": 0, "screened": 0}
    for selection in fixed_after_a:
        for seed in range(6):
            student = load_model("test-oracle", "cpu")
            who = Participants(resolve_task("test-count-a-final"), student, "test-oracle",
                               [(resolve_teacher("self"), student)], [resolve_loss(n) for n in LOSS_NAMES], seed)
            who = dataclasses.replace(who, backend=NoStop(who.sampler))
            settings = Settings(rollouts=6, continuations=1, top_k=3, max_new_tokens=HORIZON, selection=selection)
            result = diagnose_question(who.task.load(None)[0], who, settings, NoProgress())
            for row in result.node_rows:
                fixed_after_a[selection] += int(0 in rollout_prefix(who, result, row))  # token 0 is "a"
    assert fixed_after_a["windows"] > 0, "guard: the rollouts must reach positions after an 'a'"
    assert fixed_after_a["screened"] == 0

    _, result = _run("test-count-a", "test-oracle", 0, m=2, top_k=0)
    assert result.node_rows == [] and result.screening.candidates == 0
    generated_by_rollouts = sum(row["response_tokens"] for row in result.question_rows)
    assert result.generated_tokens == generated_by_rollouts  # not one continuation


# ------------------------------------------------------------------------------------------------ runs and options


def _config(selection: str = "windows", **changes) -> RunConfig:
    return RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=1, device="cpu",
                     settings=Settings(rollouts=4, continuations=2, max_new_tokens=8, selection=selection),
                     **changes)


def test_the_selection_is_recorded_in_run_json_and_per_node(tmp_path):
    meta = run(_config("screened"), tmp_path / "screened")
    nodes = pq.read_table(tmp_path / "screened" / "nodes.parquet").to_pandas()
    saved = json.loads((tmp_path / "screened" / "run.json").read_text())
    assert saved["config"]["settings"]["selection"] == "screened"
    screening = saved["counts"]["screening_this_session"]
    assert screening["candidates"] >= screening["kept"] == len(nodes) > 0 and screening == meta["counts"][
        "screening_this_session"]
    assert set(nodes.selection) == {"screened"}
    assert all(len(c) == len(t) == len(s) for c, t, s in zip(nodes.screen_correct, nodes.screen_trials,
                                                             nodes.support_token_ids))
    run(_config(), tmp_path / "windows")
    nodes = pq.read_table(tmp_path / "windows" / "nodes.parquet").to_pandas()
    assert set(nodes.selection) == {"windows"} and nodes.screen_trials.isna().all()
    saved = json.loads((tmp_path / "windows" / "run.json").read_text())
    assert saved["counts"]["screening_this_session"]["candidates"] == 0


def test_the_selection_is_part_of_the_fingerprint_and_the_reuse_cache_key(tmp_path):
    cache = WorkCache(tmp_path / "cache")
    run(_config(), tmp_path / "out", cache=cache)
    with pytest.raises(ConfigError, match="different configuration"):  # never mixed into a windows run
        run(_config("screened"), tmp_path / "out", cache=cache)
    meta = run(_config("screened"), tmp_path / "other", cache=cache)
    assert meta["cache_hits"]["sampled_hits"] == 0  # the windows run's sampled work is not reused
    assert meta["counts"]["generated_tokens_this_session"] > 0
    again = run(_config("screened"), tmp_path / "again", cache=cache)
    assert again["cache_hits"]["sampled_hits"] == 1 and again["counts"]["generated_tokens_this_session"] == 0
    assert config_fingerprint(_config()) != config_fingerprint(_config("screened"))


def test_an_unknown_selection_is_refused_with_a_suggestion_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
                 "--selection", "screend", "--out", str(out)])
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 2 and "--selection must be one of windows, screened (got 'screend'); did you mean 'screened'?" \
        in printed
    assert "Traceback" not in printed and not out.exists()
