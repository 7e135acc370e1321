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
    generate_branches,
    make_generator,
    prefill,
    rows_per_batch,
)
from harness.models import LoadedModel
from harness.registry import Registry, resolve_spec


@dataclass(frozen=True)
class Continuation:
    """Continue ``prompt + response[:position] + [token]``; ``token`` is the first of the returned tokens and counts
    toward ``max_new_tokens``."""

    position: int
    token: int
    max_new_tokens: int


class Backend(Protocol):
    name: str

    def rollouts(self, prompt_ids: Sequence[int], count: int, max_new_tokens: int, *, temperature: float,
                 seed_parts: Sequence[object], is_final: Callable[[str], bool] | None) -> list[Generated]:
        """``count`` independent samples continuing ``prompt_ids``, seeded from ``seed_parts``."""
        ...

    def continuations(self, prompt_ids: Sequence[int], response: Sequence[int], requests: Sequence[Continuation], *,
                      temperature: float, seed_parts: Sequence[object], is_final: Callable[[str], bool] | None,
                      prefix_cache: Any = None, on_progress: Callable[[int], None] | None = None) -> list[Generated]:
        """One generation per request, in request order. ``prefix_cache`` may hold the transformers KV cache of
        ``prompt + response`` (backends that keep their own prefix cache ignore it); ``on_progress(n)`` is called
        as requests finish."""
        ...


BACKENDS: Registry[Callable[[LoadedModel], Backend]] = Registry("backend")


def register_backend(name: str, description: str | None = None) -> Callable:
    return BACKENDS.register(name, description)


def resolve_backend(name: str, student: LoadedModel) -> Backend:
    return resolve_spec(BACKENDS, name)(student)


class TransformersBackend:
    """In-process generation: all rows of one call decode together over one prefix KV cache (batched, ragged)."""

    name = "transformers"

    def __init__(self, student: LoadedModel) -> None:
        self.student = student

    def rollouts(self, prompt_ids, count, max_new_tokens, *, temperature, seed_parts, is_final):
        cache, logits = prefill(self.student, prompt_ids)
        return generate_branches(self.student, cache, [Branch(len(prompt_ids), None, max_new_tokens)] * count,
                                 temperature=temperature, first_logits=logits[-1], is_final=is_final,
                                 generator=make_generator(self.student.device, *seed_parts))

    def continuations(self, prompt_ids, response, requests, *, temperature, seed_parts, is_final,
                      prefix_cache=None, on_progress=None):
        student, prompt_len = self.student, len(prompt_ids)
        if prefix_cache is None:
            prefix_cache, _ = prefill(student, list(prompt_ids) + list(response))
        branches = [Branch(prompt_len + r.position, r.token, r.max_new_tokens,
                           tuple(response[max(0, r.position - STOP_CHECK_TAIL_TOKENS):r.position]))
                    for r in requests]
        generator = make_generator(student.device, *seed_parts)
        longest = max((r.position + r.max_new_tokens for r in requests), default=0)
        batch = rows_per_batch(student.device, prompt_len + longest)
        generated: list[Generated] = []
        while len(generated) < len(branches):
            chunk = branches[len(generated):len(generated) + batch]
            try:
                out = generate_branches(student, prefix_cache, chunk, temperature=temperature, generator=generator,
                                        is_final=is_final)
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2  # out of GPU memory: halve the batch and carry on
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
