"""harness.sampling.backends: every backend implements the whole Backend Protocol (no caller probes for a member), and a
backend that cannot merge calls runs them one after the other, in call order."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

from harness.sampling.backends import (
    Backend,
    Continuation,
    ContinuationCall,
    OneCallAtATime,
    RolloutCall,
    Source,
    TransformersBackend,
)
from harness.sampling.generation import Generated
from harness.sampling.lockstep import LockstepSampler
from harness.sampling.vllm_backend import VLLMBackend
from tests.helpers import ROOT

MEMBERS = {"name", "reuses_prompt_pass", "merges_calls", "rollouts", "continuations", "generate_calls"}


def test_the_protocol_lists_what_callers_use():
    listed = set(Backend.__annotations__) | {n for n in vars(Backend) if callable(vars(Backend)[n])
                                             and not n.startswith("_")}
    assert listed == MEMBERS
    assert "prompt_pass" in Backend.rollouts.__code__.co_varnames


def test_every_backend_implements_all_of_it():
    for backend in (TransformersBackend, VLLMBackend, LockstepSampler):
        missing = {m for m in MEMBERS - {"name", "reuses_prompt_pass"} if not hasattr(backend, m)}
        assert missing == set(), (backend, missing)
        assert "prompt_pass" in backend.rollouts.__code__.co_varnames, backend
    assert (TransformersBackend.reuses_prompt_pass, TransformersBackend.merges_calls) == (True, True)
    assert (VLLMBackend.reuses_prompt_pass, VLLMBackend.merges_calls) == (False, False)


def test_no_caller_probes_a_backend():
    package = ROOT / "harness"
    probe = re.compile(r"(getattr|hasattr)\([^)]*[\"'](generate_calls|reuses_prompt_pass|merges_calls|rollouts|"
                       r"continuations|prompt_pass|on_progress)[\"']")
    assert [p.name for p in package.rglob("*.py") if probe.search(p.read_text())] == []


def test_one_call_at_a_time_answers_each_call_in_order():
    class Echo(OneCallAtATime):
        name = "echo"

        def __init__(self):
            self.seen = []

        def rollouts(self, prompt_ids, count, max_new_tokens, *, temperature, seed_parts, is_final, prompt_pass=None):
            self.seen.append(("rollouts", tuple(prompt_ids), count, max_new_tokens, temperature, seed_parts))
            return [Generated((int(prompt_ids[0]), i), "length") for i in range(count)]

        def continuations(self, sources, requests, *, temperature, is_final, seed_parts=(), on_progress=None):
            self.seen.append(("continuations", len(sources), len(requests), temperature, seed_parts))
            if on_progress is not None:
                on_progress(len(requests))
            return [Generated((r.token,), "eos") for r in requests]

    backend, progressed = Echo(), []
    calls = [RolloutCall((5, 6), 2, 3, 1.0, ("a",), None),
             ContinuationCall((Source((5,), (6, 7)),), (Continuation(1, 9, 4), Continuation(0, 8, 4)), 0.5, None,
                              ("b",), progressed.append),
             RolloutCall((4,), 1, 2, 1.0, ("c",), None)]
    assert backend.generate_calls(calls) == [[Generated((5, 0), "length"), Generated((5, 1), "length")],
                                             [Generated((9,), "eos"), Generated((8,), "eos")],
                                             [Generated((4, 0), "length")]]
    assert backend.seen == [("rollouts", (5, 6), 2, 3, 1.0, ("a",)), ("continuations", 1, 2, 0.5, ("b",)),
                            ("rollouts", (4,), 1, 2, 1.0, ("c",))]
    assert progressed == [2]


def test_only_a_merging_backend_runs_questions_side_by_side(monkeypatch):
    from harness.api.task import resolve_task
    from harness.diagnostic.question import Participants, Settings
    from harness.sampling.models import load_model
    from harness.sampling.teacher import resolve_teacher
    from harness.workflows.runner import IN_FLIGHT_VARIABLE, questions_in_flight

    monkeypatch.setenv(IN_FLIGHT_VARIABLE, "3")  # even when asked for three
    student = load_model("test-oracle", "cpu")
    who = Participants(resolve_task("test-parity"), student, "test-oracle", [(resolve_teacher("self"), student)], [], 0)

    class Single(OneCallAtATime):
        name = "single"

    assert questions_in_flight(who, Settings()) == 3  # the default: transformers, which merges
    assert questions_in_flight(dataclasses.replace(who, backend=Single()), Settings()) == 1


def test_the_vllm_back_end_is_listed_without_importing_its_module():
    code = ("import sys; from harness.sampling.backends import BACKENDS; "
            "print('vllm' in BACKENDS, 'harness.sampling.vllm_backend' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]
