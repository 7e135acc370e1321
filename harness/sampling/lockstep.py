"""Several questions diagnosed side by side, their generation merged into shared batches.

Each question runs its own sequential code (``diagnose_question``, unchanged) in a worker thread whose sampler is
a :class:`LockstepSampler`. A sampler call does not run at once: the worker parks it and waits. When every
unfinished question is parked, the parked calls go to the backend as one batch (``Backend.generate_calls``),
so the few rows of one question's rollouts or last branches share a batch with the other questions' instead of
decoding almost alone. Only one thread runs at a time, handed the turn in question order, so what happens does not
depend on thread scheduling, and each generated row keeps its own seed, so what it samples does not depend on the
questions it was batched with.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.sampling.backends import Backend, Call, ContinuationCall, OneCallAtATime, RolloutCall
from harness.sampling.generation import Generated


class LockstepCancelled(BaseException):
    """Raised inside a worker whose batch was abandoned (the caller stopped early), so that its thread ends; a
    ``BaseException`` so that no ``except Exception`` in the job's code mistakes it for a failure to handle."""


@dataclass
class _Worker:
    """One job's thread and the hand-over between it and the driver."""

    job: Callable[[Backend], Any]
    go: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    back: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    call: Call | None = None  # the parked sampler call, None while running or once finished
    reply: list[Generated] | BaseException | None = None
    done: bool = False
    cancelled: bool = False  # abandoned before its first turn: the job never starts
    outcome: Any = None  # the job's return value, or the exception it raised


class LockstepSampler(OneCallAtATime):
    """The backend as a worker sees it: each call is parked until the driver runs the merged batch (a worker's
    own calls, one after the other, are merged with the other workers', not with each other)."""

    def __init__(self, backend: Backend, current: threading.local) -> None:
        self.backend, self._current = backend, current
        self.name = backend.name
        self.reuses_prompt_pass = backend.reuses_prompt_pass

    def rollouts(self, prompt_ids, count, max_new_tokens, *, temperature, seed_parts, is_final, prompt_pass=None):
        return self._park(RolloutCall(tuple(prompt_ids), count, max_new_tokens, temperature, tuple(seed_parts),
                                      is_final, prompt_pass))

    def continuations(self, sources, requests, *, temperature, is_final, seed_parts=(), on_progress=None):
        return self._park(ContinuationCall(tuple(sources), tuple(requests), temperature, is_final,
                                           tuple(seed_parts), on_progress))

    def _park(self, call: Call) -> list[Generated]:
        worker: _Worker | None = getattr(self._current, "worker", None)
        if worker is None:  # not inside a lockstep job: nothing to merge with
            return self.backend.generate_calls([call])[0]
        worker.call = call
        worker.back.release()  # hand the turn back to the driver
        worker.go.acquire()  # until the merged batch ran
        reply, worker.reply = worker.reply, None
        if isinstance(reply, BaseException):
            raise reply
        return reply


def run_lockstep(jobs: Sequence[Callable[[Backend], Any]], backend: Backend) -> Iterator[tuple[int, Any]]:
    """Run ``jobs`` (each called with the sampler it must use) side by side; yields ``(index, outcome)`` as each
    finishes, in index order among those finishing in the same round. ``outcome`` is the job's return value or
    the exception it raised (the other jobs carry on). Closing the iterator early ends the unfinished jobs'
    threads with :class:`LockstepCancelled` raised at their parked call."""
    current = threading.local()
    sampler = LockstepSampler(backend, current)
    workers = [_Worker(job) for job in jobs]

    def body(worker: _Worker) -> None:
        current.worker = worker
        worker.go.acquire()
        if worker.cancelled:
            return
        try:
            worker.outcome = worker.job(sampler)
        except BaseException as error:  # noqa: BLE001  (handed to the driver, which decides)
            worker.outcome = error
        finally:
            worker.done = True
            worker.back.release()

    threads = [threading.Thread(target=body, args=(w,), name=f"lockstep-{i}", daemon=True)
               for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    running = list(range(len(workers)))
    try:
        while running:
            for index in running:  # one turn each, in order: runs until it parks a call or finishes
                workers[index].go.release()
                workers[index].back.acquire()
            finished = [i for i in running if workers[i].done]
            for index in finished:
                yield index, workers[index].outcome
            running = [i for i in running if not workers[i].done]
            if not running:
                break
            try:
                replies: list[Any] = backend.generate_calls([workers[i].call for i in running])
            except Exception as error:  # noqa: BLE001  (every job of the batch sees the backend's error)
                replies = [error] * len(running)
            for index, reply in zip(running, replies):
                workers[index].call, workers[index].reply = None, reply
    finally:
        for index in running:  # abandoned (an error or an interrupt in the caller): let the threads end
            if not workers[index].done:
                workers[index].cancelled = True
                workers[index].reply = LockstepCancelled("the lockstep batch was abandoned")
                workers[index].go.release()
        for thread in threads:
            thread.join(timeout=5)
