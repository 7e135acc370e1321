"""Generation backends: who samples the student's rollouts and forced continuations.

The diagnostic needs two kinds of student text: rollouts (G samples of the prompt) and, at every node, M forced
continuations per support token (``prompt + y_<i + [token]`` continued by the student). A :class:`Backend` does
both. ``transformers`` (default) runs them in-process over shared prefix KV caches (``harness.sampling.generation``);
``vllm`` (optional extra, GPU) hands them to vLLM with prefix caching. Either way the full-vocabulary
distributions p and q_t come from a transformers forward pass, so the records have the same meaning.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from harness.api.registry import Registry, imported_when_called, resolve_spec
from harness.sampling.generation import (
    STOP_CHECK_TAIL_TOKENS,
    Branch,
    Decoding,
    Generated,
    derive_seed,
    generate_branches,
    prefill,
    rows_per_batch,
)
from harness.sampling.models import LoadedModel


@dataclass(frozen=True)
class Source:
    """A text that continuations branch from: ``prompt_ids + response``. ``cache`` may hold its transformers KV
    cache (backends that keep their own prefix cache ignore it); without one the backend prefills it."""

    prompt_ids: tuple[int, ...]
    response: tuple[int, ...]
    cache: Any = None


@dataclass(frozen=True)
class Continuation:
    """Continue ``prompt + response[:position] + [token]`` of source ``source``; ``token`` is the first of the
    returned tokens and counts toward ``max_new_tokens``. ``seed`` is the continuation's own random stream
    (None: ``derive_seed(*seed_parts, index in the call)``), so what it samples does not depend on the other
    requests of the call or on how a backend batches them."""

    position: int
    token: int
    max_new_tokens: int
    seed: int | None = None
    source: int = 0


class Backend(Protocol):
    """Who samples the student's rollouts and forced continuations: everything the diagnostic, the runner and
    :mod:`harness.sampling.lockstep` use of a backend, and nothing else.

    ``name`` is the registry name (``--backend``), recorded in run.json. ``reuses_prompt_pass`` says whether
    :meth:`rollouts` starts from the caller's ``prefill`` of the prompt handed as ``prompt_pass=`` (a backend with
    its own engine says False: callers then pass None, and it ignores the argument). ``merges_calls`` says whether
    :meth:`generate_calls` decodes several calls in one batch; only then do questions run side by side
    (``harness.workflows.runner.questions_in_flight``); a backend that cannot merge says False and runs them one after the
    other (:class:`OneCallAtATime`). Every sample has its own seeded random stream, so what a backend samples does
    not depend on the calls or requests it was batched with.
    """

    name: str
    reuses_prompt_pass: bool
    merges_calls: bool

    def rollouts(self, prompt_ids: Sequence[int], count: int, max_new_tokens: int, *, temperature: float,
                 seed_parts: Sequence[object], is_final: Callable[[str], bool] | None,
                 prompt_pass: Any = None) -> list[Generated]:
        """``count`` independent samples continuing ``prompt_ids``; sample i is seeded ``derive_seed(*seed_parts,
        i)``. ``prompt_pass``: the prompt's ``prefill`` (cache, logits), given only where ``reuses_prompt_pass``."""
        ...

    def continuations(self, sources: Sequence[Source], requests: Sequence[Continuation], *, temperature: float,
                      is_final: Callable[[str], bool] | None, seed_parts: Sequence[object] = (),
                      on_progress: Callable[[int], None] | None = None) -> list[Generated]:
        """One generation per request, in request order; requests may continue different sources (rollouts of
        one question, or of several questions) and are batched together. ``on_progress(n)`` is called as
        requests finish."""
        ...

    def generate_calls(self, calls: Sequence[Call]) -> list[list[Generated]]:
        """Each call's generations (:class:`RolloutCall` as :meth:`rollouts`, :class:`ContinuationCall` as
        :meth:`continuations`), in call order; merged into one batch where ``merges_calls``."""
        ...


def request_seeds(requests: Sequence[Continuation], seed_parts: Sequence[object]) -> list[int]:
    """Each request's seed: its own, else ``derive_seed(*seed_parts, index)``."""
    return [r.seed if r.seed is not None else derive_seed(*seed_parts, index) for index, r in enumerate(requests)]


BACKENDS: Registry[Callable[[LoadedModel], Backend]] = Registry("backend")


def register_backend(name: str, description: str | None = None) -> Callable:
    return BACKENDS.register(name, description)


def resolve_backend(name: str, student: LoadedModel) -> Backend:
    return resolve_spec(BACKENDS, name)(student)


@dataclass(frozen=True)
class RolloutCall:
    """One :meth:`Backend.rollouts` call as data, so that several can be merged into one batch."""

    prompt_ids: tuple[int, ...]
    count: int
    max_new_tokens: int
    temperature: float
    seed_parts: tuple[object, ...]
    is_final: Callable[[str], bool] | None
    prompt_pass: Any = None  # the prompt's ``prefill`` (cache, logits) when the caller has it: not run again


@dataclass(frozen=True)
class ContinuationCall:
    """One :meth:`Backend.continuations` call as data, so that several can be merged into one batch."""

    sources: tuple[Source, ...]
    requests: tuple[Continuation, ...]
    temperature: float
    is_final: Callable[[str], bool] | None
    seed_parts: tuple[object, ...] = ()
    on_progress: Callable[[int], None] | None = None


Call = RolloutCall | ContinuationCall


class OneCallAtATime:
    """The part of :class:`Backend` a backend that cannot merge calls shares: :meth:`generate_calls` runs them one
    after the other through its own ``rollouts`` and ``continuations``, and it neither merges calls nor starts
    from the caller's prompt pass."""

    reuses_prompt_pass = False
    merges_calls = False

    def generate_calls(self, calls: Sequence[Call]) -> list[list[Generated]]:
        return [self.rollouts(c.prompt_ids, c.count, c.max_new_tokens, temperature=c.temperature,
                              seed_parts=c.seed_parts, is_final=c.is_final) if isinstance(c, RolloutCall)
                else self.continuations(c.sources, c.requests, temperature=c.temperature,
                                        is_final=c.is_final, seed_parts=c.seed_parts, on_progress=c.on_progress)
                for c in calls]


class TransformersBackend:
    """In-process generation: the rows of one call decode together over the sources' KV caches (batched, ragged,
    rows of different rollouts and questions mixed), each row with its own seeded random stream. At most
    :func:`~harness.sampling.generation.rows_per_batch` rows decode at once; waiting rows take the slots of finished ones."""

    name = "transformers"
    reuses_prompt_pass = True  # rollouts(..., prompt_pass=) starts from the caller's pass over the prompt
    merges_calls = True

    def __init__(self, student: LoadedModel) -> None:
        self.student = student

    def rollouts(self, prompt_ids, count, max_new_tokens, *, temperature, seed_parts, is_final, prompt_pass=None):
        return self.generate_calls([RolloutCall(tuple(prompt_ids), count, max_new_tokens, temperature,
                                                tuple(seed_parts), is_final, prompt_pass)])[0]

    def continuations(self, sources, requests, *, temperature, is_final, seed_parts=(), on_progress=None):
        return self.generate_calls([ContinuationCall(tuple(sources), tuple(requests), temperature, is_final,
                                                     tuple(seed_parts), on_progress)])[0]

    def generate_calls(self, calls: Sequence[Call]) -> list[list[Generated]]:
        """Every call's rows in one continuous batch (calls with another temperature or stop test run in their
        own). Each row keeps its own seed, so what it samples does not depend on the calls it was merged with."""
        results: list[list[Generated] | None] = [None] * len(calls)
        groups: dict[tuple[float, Any], list[int]] = {}
        for index, call in enumerate(calls):
            groups.setdefault((call.temperature, call.is_final), []).append(index)
        for (temperature, is_final), members in groups.items():
            for index, generated in zip(members, self._merged([calls[i] for i in members], temperature, is_final)):
                results[index] = generated
        return results  # type: ignore[return-value]

    def _merged(self, calls: Sequence[Call], temperature: float, is_final) -> list[list[Generated]]:
        student = self.student
        caches, first_logits, branches, owners = [], [], [], []
        for call_index, call in enumerate(calls):
            if isinstance(call, RolloutCall):
                cache, logits = call.prompt_pass if call.prompt_pass is not None else prefill(student, call.prompt_ids)
                source = len(caches)
                caches.append(cache)
                first_logits.append(logits[-1])
                branches.extend(Branch(len(call.prompt_ids), None, call.max_new_tokens, source=source,
                                       seed=derive_seed(*call.seed_parts, i)) for i in range(call.count))
                owners.extend([call_index] * call.count)
                continue
            offset = len(caches)
            for source in call.sources:
                caches.append(source.cache if source.cache is not None
                              else prefill(student, list(source.prompt_ids) + list(source.response))[0])
                first_logits.append(None)
            for request, seed in zip(call.requests, request_seeds(call.requests, call.seed_parts)):
                source = call.sources[request.source]
                tail = tuple(source.response[max(0, request.position - STOP_CHECK_TAIL_TOKENS):request.position])
                branches.append(Branch(len(source.prompt_ids) + request.position, request.token,
                                       request.max_new_tokens, tail, offset + request.source, seed))
            owners.extend([call_index] * len(call.requests))
        if not branches:
            return [[] for _ in calls]
        logits = None
        if any(row is not None for row in first_logits):  # rollouts sample their first token from the prompt's
            template = next(row for row in first_logits if row is not None)
            logits = torch.stack([row if row is not None else torch.zeros_like(template) for row in first_logits])

        reported: set[int] = set()  # a retry after running out of memory redoes rows already counted

        def finished(row: int) -> None:
            call = calls[owners[row]]
            report = call.on_progress if isinstance(call, ContinuationCall) else None
            if report is not None and row not in reported:
                reported.add(row)
                report(1)

        batch = rows_per_batch(student.device, max(b.prefix_len + b.max_new_tokens for b in branches))
        while True:
            try:
                generated = generate_branches(student, caches, branches, Decoding(temperature, is_final=is_final),
                                              first_logits=logits, max_rows=batch, on_finish=finished)
                break
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2  # out of GPU memory: fewer rows at once, from the start (rows are seeded: same samples)
                torch.cuda.empty_cache()
        out: list[list[Generated]] = [[] for _ in calls]
        for owner, row in zip(owners, generated):
            out[owner].append(row)
        return out


@register_backend("transformers", "in-process generation over shared prefix KV caches (default; CPU or GPU)")
def transformers_backend() -> Callable[[LoadedModel], Backend]:
    return TransformersBackend


# vLLM is an optional extra: registered by name, its module (and vllm) imported only when --backend vllm is chosen
BACKENDS.add("vllm", imported_when_called("harness.sampling.vllm_backend:VLLMBackend"),
             "vLLM with prefix caching for rollouts and continuations (GPU; pip install 'opd-harness[vllm]')")
