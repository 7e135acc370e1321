"""Branch generation over a shared prefix KV cache: equals plain decoding, samples the right distribution."""
from __future__ import annotations

import numpy as np
import torch

from harness.generation import Branch, derive_seed, generate_branches, make_generator, prefill, sample_tokens
from harness.models import load_model


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
    generated = generate_branches(lm, cache, branches, temperature=1e-6, generator=make_generator(lm.device, 0))
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
    rows = generate_branches(lm, cache, [Branch(len(ids), eos, 5), Branch(len(ids), 65, 5)], temperature=1.0,
                             generator=make_generator(lm.device, 1))
    assert rows[0].tokens == (eos,) and rows[0].finish_reason == "eos"
    assert len(rows[1].tokens) >= 1
    for old, layer in zip(before, cache.layers):
        assert torch.equal(old, layer.keys)


def test_answer_fixed_stops_generation():
    lm = load_model("tiny-random", "cpu")
    ids = list(range(30, 50))
    cache, logits = prefill(lm, ids)
    rows = generate_branches(lm, cache, [Branch(len(ids), None, 30)] * 3, temperature=1.0, first_logits=logits[-1],
                             generator=make_generator(lm.device, 2), is_final=lambda text: len(text) >= 3)
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
