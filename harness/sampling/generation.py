"""Sampling from the student: rollouts and forced-token branch continuations over shared prefix KV caches.

Each row of a generation batch continues a prefix of one of several batch-1 source caches (a prompt, or a prompt and
a full rollout): the prefix is copied, never recomputed, right-aligned into one preallocated buffer whose left gap is
masked, and all rows advance in lock-step. Rows that hit EOS or whose answer is already fixed leave the batch: the
last live rows move into their slots, so a finished branch costs one row copy and nothing more.

Randomness is per row: a row with a ``seed`` draws its step-t uniform from a counter-based generator
(:func:`row_uniforms`), so what it samples does not depend on which other rows share its batch, on chunking or on
row order (the floating-point logits themselves can still differ in the last bits with the batch's shape). Rows
without a seed share one ``torch.Generator`` in batch order, as callers outside the diagnostic still use.
"""
from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from harness.sampling.models import LoadedModel

# how many trailing tokens are decoded for the "answer already fixed?" test; the answer line is shorter than this
STOP_CHECK_TAIL_TOKENS = 24


@dataclass(frozen=True)
class Generated:
    """One sampled continuation: its new tokens and why it stopped (``eos`` | ``answer`` | ``length``)."""

    tokens: tuple[int, ...]
    finish_reason: str


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (seed, question id, rollout, node...): same inputs, same stream."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(device: torch.device, *parts: object) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*parts))
    return generator


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrapping arithmetic): a strong 64-bit mixer."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_uniforms(seeds: Sequence[int], steps: Sequence[int]) -> np.ndarray:
    """One uniform in [0, 1) per row: a counter-based draw from (row seed, step), 53 random bits.

    A pure function of its inputs, so a row's random stream is the same whatever batch it runs in.
    """
    seed_array = np.asarray(seeds, dtype=np.uint64)
    step_array = np.asarray(steps, dtype=np.uint64)
    mixed = _splitmix64(seed_array ^ _splitmix64(step_array * _GOLDEN))
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class PreallocatedLayer(DynamicLayer):
    """A KV layer with head-room: appending writes in place instead of ``torch.cat`` over the whole prefix.

    With a 300-token prompt and 32 branches, the stock layer's per-step concatenation was over a third of the
    decoding time on CPU; here each step copies only the new position. ``keys``/``values`` are views of the used part.
    """

    def __init__(self, sources: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: Sequence[tuple[int, int]],
                 headroom: int, align: int = 0) -> None:
        """Row r holds the first ``length`` positions of batch-1 source ``rows[r] = (source, length)``, all ending
        at one common column, at least ``align`` (the left gap is zero-filled, to be masked). Rows with the same
        (source, length) are filled by one broadcast copy: a prefix is never recomputed, only copied."""
        super().__init__()
        longest = max(align, *(length for _, length in rows))
        keys0, values0 = sources[rows[0][0]]
        self.dtype, self.device = keys0.dtype, keys0.device
        # uninitialised: every prefix is copied in below, its left gap zeroed (masked, but attention multiplies it by
        # a zero weight, which must not meet NaN garbage), and the head-room is written before it is ever read
        self._key_buffer = keys0.new_empty(len(rows), keys0.shape[1], longest + headroom, keys0.shape[-1])
        self._value_buffer = values0.new_empty(len(rows), values0.shape[1], longest + headroom, values0.shape[-1])
        self._copy_prefixes(sources, rows, first_slot=0, end=longest)
        self._length = longest
        self._rows = len(rows)  # live rows: the first ``_rows`` of the buffer (finished rows are compacted away)
        self.is_initialized = True
        self._refresh_views()

    def _copy_prefixes(self, sources: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: Sequence[tuple[int, int]],
                       first_slot: int, end: int) -> None:
        """Slot ``first_slot + i`` gets the prefix ``rows[i] = (source, length)`` in columns ``[end - length,
        end)`` and zeros before it; rows with the same (source, length) are filled by one broadcast copy."""
        groups: dict[tuple[int, int], list[int]] = {}
        for offset, key in enumerate(rows):
            groups.setdefault(tuple(key), []).append(first_slot + offset)
        for (source, length), members in groups.items():
            keys, values = sources[source]
            index = torch.tensor(members, device=keys.device)
            gap = end - length
            self._key_buffer[index, :, gap:end] = keys[:, :, :length]
            self._value_buffer[index, :, gap:end] = values[:, :, :length]
            if gap:
                self._key_buffer[index, :, :gap] = 0
                self._value_buffer[index, :, :gap] = 0

    def _refresh_views(self) -> None:
        self.keys = self._key_buffer[: self._rows, :, : self._length]
        self.values = self._value_buffer[: self._rows, :, : self._length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self._length + new > self._key_buffer.shape[-2]:  # out of head-room: grow geometrically
            grow = max(new, self._key_buffer.shape[-2])
            keys, values = self._key_buffer[: self._rows], self._value_buffer[: self._rows]
            self._key_buffer = torch.cat([keys, keys.new_empty(*keys.shape[:2], grow, keys.shape[-1])], dim=-2)
            self._value_buffer = torch.cat([values, values.new_empty(*values.shape[:2], grow, values.shape[-1])],
                                           dim=-2)
        self._key_buffer[: self._rows, :, self._length : self._length + new] = key_states
        self._value_buffer[: self._rows, :, self._length : self._length + new] = value_states
        self._length += new
        self._refresh_views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self._length += tokens_to_remove
        self._refresh_views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._key_buffer = self._key_buffer[: self._rows].repeat_interleave(repeats, dim=0)
        self._value_buffer = self._value_buffer[: self._rows].repeat_interleave(repeats, dim=0)
        self._rows *= repeats
        self._refresh_views()

    def admit(self, sources: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: Sequence[tuple[int, int]]) -> None:
        """Append rows after the live ones (continuous batching): row ``rows[i] = (source, length)`` gets that
        prefix right-aligned to the current end column, its left gap zeroed. Missing row slots are added, and a
        prefix longer than the current columns first widens the buffer on the left."""
        longest = max(length for _, length in rows)
        if longest > self._length:
            self.widen_left(longest - self._length)
        start = self._rows
        missing = start + len(rows) - self._key_buffer.shape[0]
        if missing > 0:  # growing the head-room kept only the live rows: make slots again (a copy, rare)
            self._key_buffer = torch.cat([self._key_buffer, self._key_buffer.new_empty(missing,
                                                                                         *self._key_buffer.shape[1:])])
            self._value_buffer = torch.cat([self._value_buffer,
                                            self._value_buffer.new_empty(missing, *self._value_buffer.shape[1:])])
        self._copy_prefixes(sources, rows, first_slot=start, end=self._length)
        self._rows += len(rows)
        self._refresh_views()

    def widen_left(self, columns: int) -> None:
        """``columns`` zero (masked) columns before the first one: a copy of the buffer, so kept rare."""
        pad = self._key_buffer.new_zeros(*self._key_buffer.shape[:2], columns, self._key_buffer.shape[-1])
        self._key_buffer = torch.cat([pad, self._key_buffer], dim=-2)
        self._value_buffer = torch.cat([pad, self._value_buffer], dim=-2)
        self._length += columns
        self._refresh_views()

    def drop_leading(self, columns: int) -> None:
        """Forget the first ``columns`` columns, masked for every live row: a view, no copy (the next growth copies
        only what is left), so a long continuous batch does not keep widening."""
        self._key_buffer = self._key_buffer[:, :, columns:]
        self._value_buffer = self._value_buffer[:, :, columns:]
        self._length -= columns
        self._refresh_views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (new row i is old row ``indices[i]``), in place: only the rows that change slot
        are copied (a gather of those rows, then a scatter), and the buffer keeps its capacity."""
        count = len(indices)
        moved = torch.nonzero(indices != torch.arange(count, device=indices.device)).flatten()
        if len(moved):
            sources = indices[moved]
            self._key_buffer[moved] = self._key_buffer[sources]
            self._value_buffer[moved] = self._value_buffer[sources]
        self._rows = count
        self._refresh_views()


def slicable(cache: DynamicCache) -> bool:
    """Plain full-attention layers can be sliced; sliding-window or recurrent layers need a fresh prefill."""
    return all(type(layer) in (DynamicLayer, PreallocatedLayer) for layer in cache.layers)


@torch.inference_mode()
def prefill(lm: LoadedModel, input_ids: Sequence[int], logits_to_keep: int = 1) -> tuple[DynamicCache, torch.Tensor]:
    """Run the prefix once; returns its cache and the float32 logits of the last ``logits_to_keep`` positions."""
    ids = torch.tensor([list(input_ids)], device=lm.device)
    out = lm.model(input_ids=ids, cache=DynamicCache(config=lm.model.config), use_cache=True,
                   logits_to_keep=logits_to_keep)
    return out.cache, out.logits[0].float()


@torch.inference_mode()
def extend(lm: LoadedModel, prefix: tuple[DynamicCache, torch.Tensor], tokens: Sequence[int]
           ) -> tuple[DynamicCache, torch.Tensor]:
    """Continue a prefilled prefix by ``tokens`` in one pass, the prefix's work not redone.

    ``prefix``: its cache and its last position's float32 logits (as :func:`prefill` returns them), left unchanged.
    Returns the cache of prefix + tokens and the float32 next-token logits before each token ([len(tokens), V]:
    row 0 is the prefix's own last logits, row i the distribution ``tokens[i]`` was drawn from). Used for the G
    rollouts of one prompt, which then share a single pass over the prompt.
    """
    cache, last = prefix
    own = DynamicCache(config=lm.model.config)
    for index, layer in enumerate(cache.layers):
        own.update(layer.keys, layer.values, index)  # a copy: the prefix cache serves the next rollout too
    out = lm.model(input_ids=torch.tensor([list(tokens)], device=lm.device), cache=own, use_cache=True,
                   logits_to_keep=len(tokens))
    logits = torch.cat([last.reshape(1, -1).float(), out.logits[0, : len(tokens) - 1].float()])
    return out.cache, logits


def sample_tokens(logits: torch.Tensor, temperature: float,
                  randomness: torch.Generator | np.ndarray) -> torch.Tensor:
    """One token per row from softmax(logits / T), by inverse CDF (one uniform per row).

    ``randomness`` is a generator (one draw per row, in row order) or the rows' uniforms themselves
    (:func:`row_uniforms`). ``torch.multinomial`` draws an exponential per vocabulary entry: over 10% of CPU
    decoding time at V=49k.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    if isinstance(randomness, torch.Generator):
        uniform = torch.rand(cdf.shape[0], 1, generator=randomness, device=cdf.device)
    else:
        uniform = torch.as_tensor(randomness, dtype=cdf.dtype).reshape(-1, 1).to(cdf.device)
    return torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


@dataclass(frozen=True)
class Branch:
    """One row to generate: continue the first ``prefix_len`` positions of a source cache.

    ``first_token`` forces the row's first token (a branch at a node); None samples it from the prefix's
    next-token logits. ``context_tail`` is the end of the response before this row, for the answer-fixed test.
    ``seed`` gives the row its own random stream (:func:`row_uniforms`; step t is the row's t-th token, a forced
    first token using up step 0); None draws from the call's shared generator.
    """

    prefix_len: int
    first_token: int | None
    max_new_tokens: int
    context_tail: tuple[int, ...] = ()
    source: int = 0  # which of the batch-1 source caches (and first-logit rows) this row continues
    seed: int | None = None


@dataclass(frozen=True)
class Decoding:
    """How every row of a :func:`generate_branches` call is sampled and when it stops: softmax(logits / T) with
    ``temperature``; ``generator`` is the shared random stream of rows without a ``seed`` (its state advances as
    they draw; None when every row has a seed); ``is_final`` ends a row whose decoded tail already fixes the
    answer (the task's own test; None: only EOS and the token budget end rows)."""

    temperature: float
    generator: torch.Generator | None = None
    is_final: Callable[[str], bool] | None = None


@torch.inference_mode()
def generate_branches(
    lm: LoadedModel,
    sources: DynamicCache | Sequence[DynamicCache],
    branches: Sequence[Branch],
    decoding: Decoding,
    *,
    first_logits: torch.Tensor | None = None,
    max_rows: int | None = None,
    on_finish: Callable[[int], None] | None = None,
) -> list[Generated]:
    """Generate every branch in one batch over batch-1 source caches (left unchanged), sampled as ``decoding`` says.

    ``first_logits`` holds each source's next-token logits ([V] for one source, [n_sources, V] for several); only
    rows without a forced first token use them. Rows may continue prefixes of different lengths and of different
    sources (nodes at different depths, different rollouts or questions): each row's
    prefix is copied right-aligned into one buffer, the gap on its left is masked out, and positions are given
    explicitly, as for left-padded batch generation. Forced tokens count toward ``max_new_tokens``.
    Either every branch has a ``seed`` or ``decoding.generator`` is given.

    ``max_rows`` caps the rows decoding at once (memory): the others wait in order and each takes the slot of a
    row that finished (continuous batching), so a long row never leaves the batch running nearly empty while
    rows still wait. ``on_finish(index)`` is called as each branch finishes.
    """
    temperature, generator, is_final = decoding.temperature, decoding.generator, decoding.is_final
    n_rows = len(branches)
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    finish: list[str | None] = [None] * n_rows
    live = [r for r, b in enumerate(branches) if b.max_new_tokens > 0]
    for r in sorted(set(range(n_rows)) - set(live)):
        finish[r] = "length"
        if on_finish is not None:
            on_finish(r)
    if not live:
        return [Generated((), "length") for _ in branches]
    branches_live = [branches[r] for r in live]
    seeded = all(b.seed is not None for b in branches_live)
    if not seeded and generator is None:
        raise ValueError("generate_branches needs a seed on every branch or a shared generator.")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}.")
    seeds = np.array([b.seed if seeded else 0 for b in branches], dtype=np.uint64)
    cap = len(live) if max_rows is None else min(max_rows, len(live))
    first, queue = live[:cap], deque(live[cap:])
    prefix_lens = [b.prefix_len for b in branches_live]
    longest = max(prefix_lens)  # every row, waiting ones too, fits the first alignment column
    headroom = max(b.max_new_tokens for b in branches_live) + 1
    sources = [sources] if isinstance(sources, DynamicCache) else list(sources)
    source_kv = [[(src.layers[i].keys, src.layers[i].values) for src in sources] for i in range(len(sources[0].layers))]
    first_keys = [(branches[r].source, branches[r].prefix_len) for r in first]
    cache = DynamicCache(config=lm.model.config)
    cache.layers = [PreallocatedLayer(kv, first_keys, headroom, align=longest) for kv in source_kv]
    continuous = bool(queue)
    ragged = min(prefix_lens) != longest or continuous
    device = lm.device
    active = torch.tensor(first, device=device)
    positions = torch.tensor([branches[r].prefix_len for r in first], device=device)
    mask = None
    if ragged:  # 1 where a row has a real prefix position, 0 in its left gap
        mask = _prefix_mask(positions, longest)

    def randomness(row_ids: list[int]):
        if not seeded:
            return generator
        return row_uniforms(seeds[row_ids], [len(rows[r]) for r in row_ids])

    def first_tokens(row_ids: list[int]) -> torch.Tensor:
        forced = [branches[r].first_token for r in row_ids]
        if all(token is not None for token in forced):
            return torch.tensor(forced, device=device)
        assert first_logits is not None, "unforced branches need the prefix's next-token logits"
        per_source = first_logits.reshape(-1, first_logits.shape[-1])
        tokens = sample_tokens(per_source[[branches[r].source for r in row_ids]], temperature, randomness(row_ids))
        for slot, token in enumerate(forced):
            if token is not None:
                tokens[slot] = token
        return tokens

    def goes_on(row: int, token: int) -> bool:
        """Record the row's new token; False (and the finish reason set) when the row is done."""
        rows[row].append(token)
        if token in lm.eos_token_ids:
            finish[row] = "eos"
        elif is_final is not None and is_final(_tail_text(lm, branches[row].context_tail, rows[row])):
            finish[row] = "answer"
        elif len(rows[row]) >= branches[row].max_new_tokens:
            finish[row] = "length"
        else:
            return True
        if on_finish is not None:
            on_finish(row)
        return False

    step_tokens = first_tokens(first)
    while True:
        keep = [slot for slot, (row, token) in enumerate(zip(active.tolist(), step_tokens.tolist()))
                if goes_on(row, token)]
        if len(keep) < len(active):  # finished rows leave the batch
            index = torch.tensor(_compaction(keep, len(active), order_free=seeded), device=device, dtype=torch.long)
            cache.batch_select_indices(index)
            active, step_tokens, positions = active[index], step_tokens[index], positions[index]
            mask = mask[index] if mask is not None else None
        while queue and len(active) < cap:  # waiting rows take the free slots
            admitted = [queue.popleft() for _ in range(min(cap - len(active), len(queue)))]
            tokens = first_tokens(admitted)
            entering = [(row, token) for row, token in zip(admitted, tokens.tolist()) if goes_on(row, token)]
            if not entering:
                continue
            new_rows = [row for row, _ in entering]
            keys = [(branches[r].source, branches[r].prefix_len) for r in new_rows]
            for layer, kv in zip(cache.layers, source_kv):
                layer.admit(kv, keys)
            width = cache.layers[0].get_seq_length()
            new_positions = torch.tensor([branches[r].prefix_len for r in new_rows], device=device)
            if mask.shape[1] < width:  # the buffer was widened on the left for a longer prefix
                mask = torch.cat([mask.new_zeros(len(mask), width - mask.shape[1]), mask], dim=1)
            mask = torch.cat([mask, _prefix_mask(new_positions, width)])
            active = torch.cat([active, torch.tensor(new_rows, device=device)])
            step_tokens = torch.cat([step_tokens, torch.tensor([t for _, t in entering], device=device)])
            positions = torch.cat([positions, new_positions])
        if not len(active):
            break
        if continuous:
            unused = cache.layers[0].get_seq_length() - int(positions.max())  # columns masked for every live row
            if unused > 0:
                for layer in cache.layers:
                    layer.drop_leading(unused)
                mask = mask[:, unused:]
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        out = lm.model(input_ids=step_tokens[:, None], cache=cache, use_cache=True,
                       attention_mask=mask, position_ids=positions[:, None] if ragged else None)
        cache, positions = out.cache, positions + 1
        step_tokens = sample_tokens(out.logits[:, -1], temperature, randomness(active.tolist()))
    return [Generated(tuple(tokens), str(reason)) for tokens, reason in zip(rows, finish)]


def _prefix_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[rows, width] attention mask: 1 on each row's last ``lengths[row]`` columns (its real prefix), 0 before."""
    return (torch.arange(width, device=lengths.device)[None, :] >= (width - lengths)[:, None]).long()


def _compaction(keep: list[int], slots: int, order_free: bool) -> list[int]:
    """Which old slot each remaining row comes from. In order (``keep`` itself) when rows share a generator in
    row order; otherwise each freed slot takes one of the last live rows, so that only as many rows move as
    finished (row order does not matter when every row has its own random stream)."""
    if not order_free:
        return keep
    count = len(keep)
    kept = set(keep)
    movers = iter(slot for slot in keep if slot >= count)
    return [slot if slot in kept else next(movers) for slot in range(count)]


def _tail_text(lm: LoadedModel, context_tail: Sequence[int], new_tokens: list[int]) -> str:
    tail = (list(context_tail) + new_tokens)[-STOP_CHECK_TAIL_TOKENS:]
    return lm.tokenizer.decode(tail, skip_special_tokens=True)


def rows_per_batch(device: torch.device, positions_per_row: int) -> int:
    """How many rows one generation batch takes. On 2 CPU cores throughput stops growing near 64 rows; the KV
    buffer is also capped (about 32k cached positions) so long-horizon tasks stay within a few GB of memory."""
    rows, positions = (256, 1 << 20) if device.type == "cuda" else (64, 1 << 15)
    return max(1, min(rows, positions // max(positions_per_row, 1)))


@torch.inference_mode()
def forward_logits(lm: LoadedModel, input_ids: Sequence[int], logits_to_keep: int) -> torch.Tensor:
    """Logits (float32) of the last ``logits_to_keep`` positions of one sequence, without keeping a cache."""
    ids = torch.tensor([list(input_ids)], device=lm.device)
    return lm.model(input_ids=ids, use_cache=False, logits_to_keep=logits_to_keep).logits[0].float()
