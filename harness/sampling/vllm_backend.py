"""The optional vLLM generation backend (``opd run --backend vllm``; GPU, ``pip install 'opd-harness[vllm]'``).

vLLM samples the student's rollouts and forced continuations; everything else is unchanged: p and every teacher's
q_t still come from the transformers model, and grading is the task's. All requests of one call go to vLLM in a
single ``generate`` call, so its prefix cache shares ``prompt + y_<i`` between the continuations of a rollout.

What differs from ``--backend transformers``:

* vLLM cannot run the task's ``is_final`` test while decoding, so rollouts and continuations run to EOS or
  ``max_new_tokens`` instead of stopping once the answer is fixed: the grades are the same, only more tokens are
  generated (``finish_reason`` is ``eos`` or ``length``, never ``answer``).
* Every sample has its own seed (the request's, else ``derive_seed(*seed_parts, index)``), as with the
  transformers backend, but vLLM turns a seed into other samples: records are reproducible, and a different
  (equally valid) random draw than the transformers backend's.
* ``Source.cache`` (a transformers KV cache) is ignored; vLLM keeps its own.

vLLM loads models from a directory, so the already-loaded student (any spec: hub id, local path, GGUF-derived,
``@int4``/``@prune`` compressed) is written once with ``save_pretrained`` under ``cache_dir()/vllm/<fingerprint>``
and reused by later runs. ``vllm`` is imported here only, when the backend is chosen.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from harness.api.errors import ModelError
from harness.sampling.backends import Continuation, OneCallAtATime, Source, request_seeds
from harness.sampling.generation import Generated, derive_seed
from harness.sampling.models import LoadedModel, model_fingerprint, save_model_dir
from harness.storage.cache import cache_dir

INSTALL_HINT = ("--backend vllm needs vLLM and a CUDA GPU: pip install 'opd-harness[vllm]' "
                "(or use the default --backend transformers)")
# the transformers student (and teachers) share the GPU with vLLM: leave them half of it
GPU_MEMORY_UTILIZATION = 0.5
# vLLM's finish reasons -> the harness's
FINISH_REASONS = {"stop": "eos", "length": "length"}


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise ModelError(f"{INSTALL_HINT}. vLLM is not installed.") from None
    return vllm


def cuda_available() -> bool:
    """Whether a CUDA device is visible (a function, so the CPU tests can stand in a fake GPU)."""
    return torch.cuda.is_available()


def export_dir(student: LoadedModel) -> Path:
    """The student's weights and tokenizer as a model directory vLLM can load, written once per fingerprint."""
    target = cache_dir() / "vllm" / model_fingerprint(student)
    if not (target / "config.json").exists():
        save_model_dir(student.model, student.tokenizer, target)
    return target


class VLLMBackend(OneCallAtATime):
    """Rollouts and forced continuations sampled by vLLM with prefix caching; see the module docstring. vLLM keeps
    its own prefix cache, so it neither reuses the caller's prompt pass nor merges calls (:class:`OneCallAtATime`)."""

    name = "vllm"

    def __init__(self, student: LoadedModel) -> None:
        self.vllm = import_vllm()
        if not cuda_available():
            raise ModelError(f"{INSTALL_HINT}. No CUDA device is visible.")
        self.student = student
        self._llm: Any = None

    @property
    def llm(self) -> Any:
        """The vLLM engine, built on first use (once per backend)."""
        if self._llm is None:
            model_dir = str(export_dir(self.student))
            try:
                self._llm = self.vllm.LLM(
                    model=model_dir, tokenizer=model_dir, dtype=str(self.student.dtype).replace("torch.", ""),
                    enable_prefix_caching=True, gpu_memory_utilization=GPU_MEMORY_UTILIZATION, seed=0,
                )
            except Exception as error:  # unsupported architecture, out of memory...: one paragraph, --debug for more
                raise ModelError(
                    f"vLLM could not load the student {self.student.spec!r} (exported to {model_dir}): {error}. "
                    "Use the default --backend transformers."
                ) from error
        return self._llm

    def _params(self, temperature: float, max_tokens: int, seed: int) -> Any:
        # stop at the same EOS tokens as the transformers backend (tokenizer's and generation config's)
        return self.vllm.SamplingParams(n=1, temperature=temperature, max_tokens=max_tokens, seed=seed,
                                        stop_token_ids=sorted(self.student.eos_token_ids))

    def _generate(self, prompts: list[list[int]], params: list[Any]) -> list[tuple[tuple[int, ...], str]]:
        if not prompts:
            return []
        outputs = self.llm.generate([self.vllm.TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                    use_tqdm=False)
        results = []
        for output in outputs:  # vLLM returns outputs in the order of the prompts
            completion = output.outputs[0]
            reason = str(completion.finish_reason)
            results.append((tuple(int(t) for t in completion.token_ids), FINISH_REASONS.get(reason, reason)))
        return results

    def rollouts(self, prompt_ids: Sequence[int], count: int, max_new_tokens: int, *, temperature: float,
                 seed_parts: Sequence[object], is_final: Callable[[str], bool] | None,
                 prompt_pass: Any = None) -> list[Generated]:
        if max_new_tokens < 1:
            return [Generated((), "length") for _ in range(count)]
        prompt = [int(t) for t in prompt_ids]
        params = [self._params(temperature, max_new_tokens, derive_seed(*seed_parts, i)) for i in range(count)]
        return [Generated(tokens, reason) for tokens, reason in self._generate([prompt] * count, params)]

    def continuations(self, sources: Sequence[Source], requests: Sequence[Continuation], *, temperature: float,
                      is_final: Callable[[str], bool] | None, seed_parts: Sequence[object] = (),
                      on_progress: Callable[[int], None] | None = None) -> list[Generated]:
        eos = self.student.eos_token_ids
        results: list[Generated | None] = [None] * len(requests)
        submitted, prompts, params = [], [], []
        for index, (request, seed) in enumerate(zip(requests, request_seeds(requests, seed_parts))):
            token = int(request.token)
            if request.max_new_tokens < 1:  # as generate_branches: nothing to generate
                results[index] = Generated((), "length")
            elif token in eos:  # the forced token ends the text
                results[index] = Generated((token,), "eos")
            elif request.max_new_tokens == 1:  # the forced token is the whole budget (vLLM needs max_tokens >= 1)
                results[index] = Generated((token,), "length")
            else:
                source = sources[request.source]
                submitted.append(index)
                prompts.append([int(t) for t in source.prompt_ids]
                               + [int(t) for t in source.response[:request.position]] + [token])
                params.append(self._params(temperature, request.max_new_tokens - 1, seed))
        for index, (tokens, reason) in zip(submitted, self._generate(prompts, params)):
            results[index] = Generated((int(requests[index].token),) + tokens, reason)
        if on_progress is not None:
            on_progress(len(requests))
        return results  # type: ignore[return-value]
