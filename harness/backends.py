"""Generation backends: who samples the student's rollouts and forced continuations.

The diagnostic needs two kinds of student text: rollouts (G samples of the prompt) and, at every node, M forced
continuations per support token (``prompt + y_<i + [token]`` continued by the student). A :class:`Backend` does
both. ``transformers`` (default) runs them in-process over shared prefix KV caches (``harness.generation``);
``vllm`` (optional extra, GPU) hands them to vLLM with prefix caching. Either way the full-vocabulary
distributions p and q_t come from a transformers forward pass, so the records have the same meaning.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from harness.generation import (
    STOP_CHECK_TAIL_TOKENS,
    Branch,
    Generated,
    derive_seed,
    generate_branches,
    prefill,
    rows_per_batch,
)
from harness.models import LoadedModel
from harness.registry import Registry, resolve_spec


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
    name: str

    def rollouts(self, prompt_ids: Sequence[int], count: int, max_new_tokens: int, *, temperature: float,
                 seed_parts: Sequence[object], is_final: Callable[[str], bool] | None) -> list[Generated]:
        """``count`` independent samples continuing ``prompt_ids``; sample i is seeded ``derive_seed(*seed_parts,
        i)``."""
        ...

    def continuations(self, sources: Sequence[Source], requests: Sequence[Continuation], *, temperature: float,
                      is_final: Callable[[str], bool] | None, seed_parts: Sequence[object] = (),
                      on_progress: Callable[[int], None] | None = None) -> list[Generated]:
        """One generation per request, in request order; requests may continue different sources (rollouts of
        one question, or of several questions) and are batched together. ``on_progress(n)`` is called as
        requests finish."""
        ...


def request_seeds(requests: Sequence[Continuation], seed_parts: Sequence[object]) -> list[int]:
    """Each request's seed: its own, else ``derive_seed(*seed_parts, index)``."""
    return [r.seed if r.seed is not None else derive_seed(*seed_parts, index) for index, r in enumerate(requests)]


BACKENDS: Registry[Callable[[LoadedModel], Backend]] = Registry("backend")


def register_backend(name: str, description: str | None = None) -> Callable:
    return BACKENDS.register(name, description)


def resolve_backend(name: str, student: LoadedModel) -> Backend:
    return resolve_spec(BACKENDS, name)(student)


class TransformersBackend:
    """In-process generation: the rows of one call decode together over the sources' KV caches (batched, ragged,
    rows of different rollouts and questions mixed), each row with its own seeded random stream."""

    name = "transformers"

    def __init__(self, student: LoadedModel) -> None:
        self.student = student

    def rollouts(self, prompt_ids, count, max_new_tokens, *, temperature, seed_parts, is_final):
        cache, logits = prefill(self.student, prompt_ids)
        branches = [Branch(len(prompt_ids), None, max_new_tokens, seed=derive_seed(*seed_parts, i))
                    for i in range(count)]
        return generate_branches(self.student, cache, branches, temperature=temperature, first_logits=logits[-1],
                                 is_final=is_final)

    def continuations(self, sources, requests, *, temperature, is_final, seed_parts=(), on_progress=None):
        student = self.student
        caches = [source.cache if source.cache is not None
                  else prefill(student, list(source.prompt_ids) + list(source.response))[0] for source in sources]
        seeds = request_seeds(requests, seed_parts)
        branches = []
        for request, seed in zip(requests, seeds):
            source = sources[request.source]
            tail = tuple(source.response[max(0, request.position - STOP_CHECK_TAIL_TOKENS):request.position])
            branches.append(Branch(len(source.prompt_ids) + request.position, request.token,
                                   request.max_new_tokens, tail, request.source, seed))
        longest = max((b.prefix_len + b.max_new_tokens for b in branches), default=0)
        batch = rows_per_batch(student.device, longest)
        generated: list[Generated] = []
        while len(generated) < len(branches):
            chunk = branches[len(generated):len(generated) + batch]
            try:
                out = generate_branches(student, caches, chunk, temperature=temperature, is_final=is_final)
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2  # out of GPU memory: halve the batch and carry on (rows are seeded: same samples)
                torch.cuda.empty_cache()
                continue
            generated.extend(out)
            if on_progress is not None:
                on_progress(len(chunk))
        return generated


@register_backend("transformers", "in-process generation over shared prefix KV caches (default; CPU or GPU)")
def transformers_backend() -> Callable[[LoadedModel], Backend]:
    return TransformersBackend


@register_backend("vllm", "vLLM with prefix caching for rollouts and continuations (GPU; pip install "
                          "'opd-harness[vllm]')")
def vllm_backend() -> Callable[[LoadedModel], Backend]:
    from harness.vllm_backend import VLLMBackend  # imports vllm, only when chosen

    return VLLMBackend
