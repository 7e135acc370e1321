"""Branch generation over shared prefix KV caches: equals plain decoding, samples the right distribution, each seeded
row draws its own stream whatever batch it runs in, and finished rows are compacted in place."""
from __future__ import annotations

import numpy as np
import torch

from harness.sampling.generation import (
    Branch,
    Decoding,
    Generated,
    derive_seed,
    extend,
    generate_branches,
    make_generator,
    prefill,
    row_uniforms,
    sample_tokens,
)
from harness.sampling.models import load_model


def _greedy_reference(lm, ids, n):
    out = lm.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                            eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


def test_ragged_branches_match_independent_greedy_decoding():
    lm = load_model("tiny-random", "cpu")
    ids = list(range(10, 60))
    cache, _ = prefill(lm, ids, logits_to_keep=1)
    lengths = [20, 20, 33, 41, 50]
    branches = [Branch(length, ids[length] if length < len(ids) else 7, 6) for length in lengths]
    # temperature -> 0 makes sampling greedy, so each row must equal an independent greedy decode of its prefix
    generated = generate_branches(lm, cache, branches, Decoding(1e-6, make_generator(lm.device, 0)))
    for length, branch, row in zip(lengths, branches, generated):
        prefix = ids[:length] + [branch.first_token]
        assert list(row.tokens) == [branch.first_token] + _greedy_reference(lm, prefix, 5)
        assert row.finish_reason == "length"


def test_source_cache_is_left_unchanged_and_rows_stop_at_eos():
    lm = load_model("tiny-random", "cpu")
    ids = list(range(30, 70))
    cache, _ = prefill(lm, ids)
    before = [layer.keys.clone() for layer in cache.layers]
    eos = next(iter(lm.eos_token_ids))
    rows = generate_branches(lm, cache, [Branch(len(ids), eos, 5), Branch(len(ids), 65, 5)],
                             Decoding(1.0, make_generator(lm.device, 1)))
    assert rows[0].tokens == (eos,) and rows[0].finish_reason == "eos"
    assert len(rows[1].tokens) >= 1
    for old, layer in zip(before, cache.layers):
        assert torch.equal(old, layer.keys)


def test_answer_fixed_stops_generation():
    lm = load_model("tiny-random", "cpu")
    ids = list(range(30, 50))
    cache, logits = prefill(lm, ids)
    rows = generate_branches(lm, cache, [Branch(len(ids), None, 30)] * 3,
                             Decoding(1.0, make_generator(lm.device, 2), lambda text: len(text) >= 3),
                             first_logits=logits[-1])
    assert all(r.finish_reason in ("answer", "eos") and len(r.tokens) <= 3 for r in rows)


def test_inverse_cdf_sampler_matches_the_distribution():
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -30.0]]).expand(20000, -1)
    tokens = sample_tokens(logits, 1.0, make_generator(torch.device("cpu"), 3))
    freq = np.bincount(tokens.numpy(), minlength=5) / len(tokens)
    probs = torch.softmax(logits[0], -1).numpy()
    assert np.all(np.abs(freq - probs) <= 5 * np.sqrt(probs * (1 - probs) / len(tokens)) + 1e-4)
    assert freq[4] == 0.0


def test_seeds_are_stable_and_distinct():
    assert derive_seed(0, "q1", 2) == derive_seed(0, "q1", 2)
    assert derive_seed(0, "q1", 2) != derive_seed(0, "q1", 3)
    assert 0 <= derive_seed("x") < 2**63


def test_row_uniforms_are_a_pure_function_of_seed_and_step_and_uniform():
    from scipy import stats

    seeds = np.arange(50_000, dtype=np.uint64) * np.uint64(7919) + np.uint64(3)
    first = row_uniforms(seeds, np.zeros(len(seeds), dtype=np.int64))
    assert np.array_equal(first, row_uniforms(seeds, np.zeros(len(seeds), dtype=np.int64)))
    assert first.min() >= 0.0 and first.max() < 1.0
    assert stats.kstest(first, "uniform").pvalue > 1e-3  # uniform across seeds
    along = row_uniforms(np.full(50_000, 12345, dtype=np.uint64), np.arange(50_000))
    assert stats.kstest(along, "uniform").pvalue > 1e-3  # and along one row's steps
    assert abs(np.corrcoef(along[:-1], along[1:])[0, 1]) < 0.03  # consecutive draws unrelated
    assert len(set(first.tolist())) == len(first)


def test_seeded_rows_sample_the_same_whatever_batch_they_run_in():
    """Each seeded row draws its own stream: alone, together, in another order, or beside rows that finish early
    (finished rows are compacted away), it samples the same tokens."""
    lm = load_model("tiny-random", "cpu")
    ids = list(range(30, 60))
    cache, logits = prefill(lm, ids)
    eos = next(iter(lm.eos_token_ids))
    rows = [Branch(len(ids) - cut, token, length, seed=derive_seed("row", i))
            for i, (cut, token, length) in enumerate([(0, None, 9), (3, 65, 6), (0, None, 2), (7, eos, 5),
                                                      (1, 70, 8), (0, None, 4)])]
    kwargs = dict(decoding=Decoding(1.0), first_logits=logits[-1])
    # rows with a forced token continue shorter prefixes of the same source; unforced rows sample their first
    # token from the prompt's logits, so they all continue the full prompt
    together = generate_branches(lm, cache, rows, **kwargs)
    alone = [generate_branches(lm, cache, [row], **kwargs)[0] for row in rows]
    reversed_order = generate_branches(lm, cache, rows[::-1], **kwargs)[::-1]
    assert together == alone == reversed_order
    assert together[3] == Generated((eos,), "eos") and len({g.tokens for g in together}) == len(rows)


def test_in_place_compaction_equals_a_gather():
    from harness.sampling.generation import PreallocatedLayer, _compaction

    keys = torch.randn(1, 2, 7, 3)
    layer = PreallocatedLayer([(keys, keys + 1)], [(0, 7)] * 6, headroom=2)
    layer.update(torch.randn(6, 2, 1, 3), torch.randn(6, 2, 1, 3))
    before_k, before_v = layer.keys.clone(), layer.values.clone()
    keep = [0, 2, 3, 5]  # rows 1 and 4 finished
    for order_free in (False, True):
        index = _compaction(keep, 6, order_free)
        assert sorted(index) == keep
        copy = PreallocatedLayer([(keys, keys + 1)], [(0, 7)] * 6, headroom=2)
        copy.update(before_k[:, :, -1:], before_v[:, :, -1:])
        copy.batch_select_indices(torch.tensor(index))
        assert torch.equal(copy.keys, before_k[index]) and torch.equal(copy.values, before_v[index])
    assert _compaction(keep, 6, True) == [0, 5, 2, 3]  # the last live row fills the freed slot: one row moves


def test_extending_a_prefilled_prompt_equals_one_pass_over_prompt_and_rollout():
    lm = load_model("tiny-random", "cpu")
    prompt, rollout = list(range(10, 40)), [50, 60, 70, 80]
    whole_cache, whole = prefill(lm, prompt + rollout, logits_to_keep=len(rollout) + 1)
    prefix = prefill(lm, prompt)
    kept = [layer.keys.clone() for layer in prefix[0].layers]
    cache, logits = extend(lm, prefix, rollout)
    assert logits.shape == (len(rollout), whole.shape[-1])
    torch.testing.assert_close(logits, whole[: len(rollout)], rtol=0, atol=1e-5)  # row i: y_i's distribution
    for mine, reference in zip(cache.layers, whole_cache.layers):
        torch.testing.assert_close(mine.keys, reference.keys, rtol=0, atol=1e-5)
    assert all(torch.equal(k, layer.keys) for k, layer in zip(kept, prefix[0].layers))  # the prompt cache serves again


def test_continuations_of_several_sources_each_continue_their_own_prefix():
    from harness.sampling.backends import Continuation, Source, TransformersBackend

    lm = load_model("tiny-random", "cpu")
    prompt = tuple(range(10, 30))
    responses = [(40, 41, 42, 43, 44), (50, 51, 52)]
    requests = [Continuation(3, 90, 5, seed=1, source=0), Continuation(1, 91, 4, seed=2, source=1),
                Continuation(0, 92, 3, seed=3, source=0), Continuation(2, 93, 6, seed=4, source=1)]
    generated = TransformersBackend(lm).continuations([Source(prompt, r) for r in responses], requests,
                                                      temperature=1e-6, is_final=None)
    for request, row in zip(requests, generated):  # temperature -> 0: greedy, so an independent decode agrees
        prefix = list(prompt) + list(responses[request.source][:request.position]) + [request.token]
        assert list(row.tokens) == [request.token] + _greedy_reference(lm, prefix, request.max_new_tokens - 1)


def _greedy_until_eos(lm, prefix, first_token, n):
    """An independent greedy decode of ``prefix + [first_token]`` for ``n`` tokens in all, cut after an EOS."""
    tokens = [first_token] + (_greedy_reference(lm, prefix + [first_token], n - 1) if n > 1 else [])
    for index, token in enumerate(tokens):
        if token in lm.eos_token_ids:
            return tokens[: index + 1]
    return tokens


def test_continuous_batching_rows_equal_independent_greedy_decoding():
    """With at most ``max_rows`` decoding at once, waiting rows take the slots of finished ones; each row must still
    be exactly its own greedy decode. The rows are built so that a waiting row is longer than the batch's columns
    after unused columns were dropped (the buffer widens on the left) and one row ends on its forced token."""
    lm = load_model("tiny-random", "cpu")
    ids = list(range(10, 70))
    cache, _ = prefill(lm, ids)
    eos = next(iter(lm.eos_token_ids))
    shapes = [(50, 3), (10, 30), (10, 5), (50, 4), (33, 1), (20, 9), (58, 6), (5, 12)]
    branches = [Branch(length, ids[length], new, seed=derive_seed("continuous", i))
                for i, (length, new) in enumerate(shapes)]
    branches.insert(3, Branch(40, eos, 8, seed=derive_seed("continuous", "eos")))
    finished = []
    for max_rows in (1, 2, 3, 100):
        finished.clear()
        generated = generate_branches(lm, cache, branches, Decoding(1e-6), max_rows=max_rows,
                                      on_finish=finished.append)
        assert sorted(finished) == list(range(len(branches)))  # every row reported once
        for branch, row in zip(branches, generated):
            expected = _greedy_until_eos(lm, ids[: branch.prefix_len], branch.first_token, branch.max_new_tokens)
            assert list(row.tokens) == expected, (max_rows, branch)
            assert row.finish_reason == ("eos" if expected[-1] in lm.eos_token_ids else "length")


def test_continuous_batching_draws_each_seeded_row_from_its_own_stream():
    """Sampling at temperature 1: capped at 1, 2 or 4 live rows, seeded rows sample exactly what they sample all
    in one batch (their uniforms depend on their seed and step only, not on when they entered the batch)."""
    lm = load_model("tiny-random", "cpu")
    ids = list(range(30, 70))
    cache, logits = prefill(lm, ids)
    rows = [Branch(len(ids) - cut, token, length, seed=derive_seed("stream", i))
            for i, (cut, token, length) in enumerate([(0, None, 9), (3, 65, 6), (0, None, 2), (9, 71, 12),
                                                      (1, 70, 8), (0, None, 4), (20, 40, 7)])]
    kwargs = dict(decoding=Decoding(1.0), first_logits=logits[-1])
    together = generate_branches(lm, cache, rows, **kwargs)
    for max_rows in (1, 2, 4):
        assert generate_branches(lm, cache, rows, max_rows=max_rows, **kwargs) == together
    assert len({g.tokens for g in together}) == len(rows)


def test_max_rows_must_be_positive():
    import pytest

    lm = load_model("tiny-random", "cpu")
    cache, logits = prefill(lm, [5, 6, 7])
    with pytest.raises(ValueError, match="max_rows"):
        generate_branches(lm, cache, [Branch(3, 9, 2, seed=1)], Decoding(1.0), max_rows=0)
