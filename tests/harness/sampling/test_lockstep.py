"""Questions side by side (harness.sampling.lockstep): parked sampler calls merge into one backend batch per round, each
job gets its own calls' results, one job's error leaves the others running, and an abandoned batch ends its
threads."""
from __future__ import annotations

import threading

from harness.sampling.backends import OneCallAtATime, RolloutCall
from harness.sampling.generation import Generated
from harness.sampling.lockstep import LockstepCancelled, run_lockstep


class RecordingBackend:
    """Answers each call with one Generated per row whose tokens name the call; records every merged batch."""

    name = "recording"
    reuses_prompt_pass = False
    merges_calls = True

    def __init__(self) -> None:
        self.batches: list[list[tuple]] = []

    def generate_calls(self, calls):
        self.batches.append([call.seed_parts for call in calls])
        return [[Generated(tuple(call.seed_parts[1:]), "length")] * (call.count if isinstance(call, RolloutCall)
                                                                    else len(call.requests)) for call in calls]


def _job(name: str, rounds: int, fail_at: int | None = None):
    def job(sampler):
        seen = []
        for round_ in range(rounds):
            if round_ == fail_at:
                raise ValueError(f"{name} failed")
            if round_ == 0:
                out = sampler.rollouts((1, 2), 2, 4, temperature=1.0, seed_parts=(name, round_), is_final=None)
            else:
                out = sampler.continuations((), (), temperature=1.0, is_final=None, seed_parts=(name, round_))
            seen.append(out)
        return name, seen
    return job


def test_parked_calls_merge_per_round_in_job_order_and_results_go_back_to_their_job():
    backend = RecordingBackend()
    outcomes = dict(run_lockstep([_job("a", 3), _job("b", 1), _job("c", 2)], backend))
    # round 1: everyone's first call; round 2: a and c (b finished); round 3: a alone
    assert backend.batches == [[("a", 0), ("b", 0), ("c", 0)], [("a", 1), ("c", 1)], [("a", 2)]]
    assert outcomes[0] == ("a", [[Generated((0,), "length")] * 2, [], []])
    assert outcomes[1] == ("b", [[Generated((0,), "length")] * 2])
    assert outcomes[2][0] == "c" and len(outcomes[2][1]) == 2


def test_a_failing_job_is_reported_and_the_others_finish():
    backend = RecordingBackend()
    outcomes = dict(run_lockstep([_job("a", 3), _job("b", 3, fail_at=1), _job("c", 3)], backend))
    assert isinstance(outcomes[1], ValueError) and "b failed" in str(outcomes[1])
    assert outcomes[0][0] == "a" and outcomes[2][0] == "c"
    assert backend.batches[1] == [("a", 1), ("c", 1)]


def test_a_backend_error_reaches_every_job_of_the_batch():
    class Broken(RecordingBackend):
        def generate_calls(self, calls):
            raise RuntimeError("out of memory")

    outcomes = dict(run_lockstep([_job("a", 2), _job("b", 2)], Broken()))
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes.values())


def test_calls_without_merging_run_one_by_one_on_a_plain_backend():
    class Plain(OneCallAtATime):
        name = "plain"

        def __init__(self):
            self.calls = []

        def rollouts(self, prompt_ids, count, max_new_tokens, *, temperature, seed_parts, is_final, prompt_pass=None):
            self.calls.append(("rollouts", seed_parts))
            return [Generated((7,), "eos")] * count

        def continuations(self, sources, requests, *, temperature, is_final, seed_parts=(), on_progress=None):
            self.calls.append(("continuations", seed_parts))
            return []

    backend = Plain()
    outcomes = dict(run_lockstep([_job("a", 2), _job("b", 1)], backend))
    assert backend.calls == [("rollouts", ("a", 0)), ("rollouts", ("b", 0)), ("continuations", ("a", 1))]
    assert outcomes[1] == ("b", [[Generated((7,), "eos")] * 2])


def test_closing_early_cancels_the_parked_jobs_and_their_threads_end():
    backend = RecordingBackend()
    cancelled = []

    def job(sampler):
        try:
            sampler.continuations((), (), temperature=1.0, is_final=None, seed_parts=("x", 0))
            sampler.continuations((), (), temperature=1.0, is_final=None, seed_parts=("x", 1))
        except LockstepCancelled:
            cancelled.append(threading.current_thread().name)
            raise

    before = threading.active_count()
    steps = run_lockstep([_job("quick", 0), job, job], backend)
    assert next(steps)[0] == 0  # the job without calls finishes in the first round
    steps.close()  # the caller stops: the two parked jobs must not stay blocked forever
    assert sorted(cancelled) == ["lockstep-1", "lockstep-2"]
    assert threading.active_count() == before

