"""Plain batched ``generate`` on recorded call shapes: the reference the pipeline's generation is measured against.

A benchmark records every ``harness.sampling.generation.generate_branches`` call of a run (:class:`CallRecorder`) and then
replays each call's shape with ``model.generate``: as many rows (in chunks of the live-row cap the pipeline honours,
``rows_per_batch``), continuing a prefilled prefix as long as the call's longest (handed to ``generate`` as its
cache, so only decoding is timed), each row sampling the call's mean row length. Used by the end-to-end demo
benchmark and the GSM8K cost benchmark.
"""
from __future__ import annotations

import heapq
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class CallRecorder:
    """Wraps ``generate_branches``: per call (rows, longest prefix, each row's new tokens), the seconds spent
    inside it, and the generated tokens by finish reason (``eos`` | ``answer`` | ``length``) and by kind (rollout
    rows sample their first token; continuation rows are forced)."""

    inner: object
    calls: list = field(default_factory=list)
    slots: list = field(default_factory=list)  # per call, the rows decoding at once (the live-row cap, or fewer)
    seconds: float = 0.0
    tokens_by_finish: Counter = field(default_factory=Counter)
    tokens_by_kind: Counter = field(default_factory=Counter)

    def __call__(self, lm, sources, branches, **kwargs):
        start = time.perf_counter()
        generated = self.inner(lm, sources, branches, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls.append((len(branches), max(b.prefix_len for b in branches), [len(g.tokens) for g in generated]))
        self.slots.append(min(kwargs.get("max_rows") or len(branches), len(branches)))
        for branch, row in zip(branches, generated):
            kind = "rollout" if branch.first_token is None else "continuation"
            self.tokens_by_finish[f"{kind}_{row.finish_reason}"] += len(row.tokens)
            self.tokens_by_kind[kind] += len(row.tokens)
        return generated

    @property
    def tokens(self) -> int:
        return sum(sum(lengths) for _, _, lengths in self.calls)

    def slot_utilization(self) -> float | None:
        """Generated tokens over the row-steps the calls' batches offered (slots x decode steps of each call, the
        steps from :func:`schedule_steps`): 1.0 when every slot decodes a row at every step; below it, the batches
        ran part-empty, e.g. while the last rows of a call finished alone."""
        offered = sum(slots * schedule_steps(lengths, slots) for (_, _, lengths), slots in zip(self.calls, self.slots))
        return self.tokens / offered if offered else None


def schedule_steps(lengths, slots: int) -> int:
    """Decode steps of one continuous batch: rows in order, ``slots`` at a time, each waiting row taking the first
    slot to free up (as ``generate_branches`` admits them), a row of n tokens holding its slot n steps."""
    free_at = [0] * max(1, slots)
    for length in lengths:
        heapq.heappush(free_at, heapq.heappop(free_at) + length)
    return max(free_at)


def replay_with_generate(student, calls) -> tuple[int, float]:
    """Plain batched ``generate`` on every recorded call's shape: (tokens generated, seconds of decoding)."""
    import torch
    from transformers import DynamicCache

    from harness.sampling.generation import prefill, rows_per_batch

    generator = torch.Generator().manual_seed(0)
    vocab = student.model.config.vocab_size
    tokens, seconds = 0, 0.0
    prefixes: dict[int, tuple] = {}
    for rows, prefix_len, lengths in calls:
        new = max(1, round(sum(lengths) / rows))
        if prefix_len not in prefixes:  # a prefix of this length, prefilled once (not timed)
            ids = torch.randint(3, vocab, (1, prefix_len + 1), generator=generator)
            prefixes[prefix_len] = (ids, prefill(student, ids[0, :prefix_len].tolist())[0])
        ids, cache = prefixes[prefix_len]
        cap = rows_per_batch(student.device, prefix_len + max(lengths))
        for chunk in [min(cap, rows - start) for start in range(0, rows, cap)]:
            batch_cache = DynamicCache(config=student.model.config)
            for index, layer in enumerate(cache.layers):
                batch_cache.update(layer.keys.expand(chunk, -1, -1, -1).contiguous(),
                                   layer.values.expand(chunk, -1, -1, -1).contiguous(), index)
            start = time.perf_counter()
            with torch.inference_mode():
                student.model.generate(ids.expand(chunk, -1), cache=batch_cache, do_sample=True,
                                       max_new_tokens=new, min_new_tokens=new, pad_token_id=0,
                                       attention_mask=torch.ones(chunk, prefix_len + 1, dtype=torch.long))
            seconds += time.perf_counter() - start
            tokens += chunk * new
    return tokens, seconds
