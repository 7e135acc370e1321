"""Branching and teacher-pass benchmarks (issue: speed and scale), on a random-weight model of SmolLM2-135M's shape.

Ratios are measured side by side in one process: the harness's way against the naive way.
"""
from __future__ import annotations

import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.sampling.generation import Branch, Decoding, forward_logits, generate_branches, make_generator, prefill
from harness.sampling.models import LoadedModel, tiny_tokenizer

PREFIX, BRANCHES, NEW_TOKENS = 512, 16, 32


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    """SmolLM2-135M's shape (30 layers, 576 wide, 9/3 heads) with random weights and a byte vocabulary, so the
    benchmark needs no download and measures the same per-token work."""
    config = LlamaConfig(vocab_size=259, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = None
    return LoadedModel("bench-135m-shape", model, tiny_tokenizer(), torch.device("cpu"), torch.float32)


def _timed(fn, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_shared_prefix_branching_vs_generate_per_continuation(benchmark, lm):
    ids = [3 + i % 250 for i in range(PREFIX)]

    def shared():  # prefill once, 16 rows decode together over copies of the prefix KV
        cache, _ = prefill(lm, ids)
        generate_branches(lm, cache, [Branch(PREFIX, 65 + b % 20, NEW_TOKENS) for b in range(BRANCHES)],
                          Decoding(1.0, make_generator(lm.device, 0)))

    def naive():  # what a harness without branching does: one generate() call per continuation
        for b in range(BRANCHES):
            lm.model.generate(torch.tensor([ids + [65 + b % 20]]), max_new_tokens=NEW_TOKENS - 1, do_sample=True,
                              min_new_tokens=NEW_TOKENS - 1, pad_token_id=0)

    naive_s = _timed(naive, repeats=1)
    shared_s = benchmark.pedantic(shared, rounds=2, iterations=1)  # noqa: F841 (timing kept by pytest-benchmark)
    shared_best = benchmark.stats.stats.min
    benchmark.extra_info.update(naive_s=round(naive_s, 2), shared_s=round(shared_best, 2),
                                speedup=round(naive_s / shared_best, 2))


def test_one_teacher_pass_per_rollout_vs_per_node(benchmark, lm):
    prompt = [3 + i % 250 for i in range(200)]  # 200-token prompt, 128-token response
    response = [3 + i % 250 for i in range(97, 225)]
    nodes = [0, 1, 2, 3, 5, 6, 9, 14, 17, 30, 33, 60, 70, 120]  # two per depth window, as the diagnostic picks

    def per_rollout():  # the harness: one forward pass gives q at every position
        forward_logits(lm, prompt + response, logits_to_keep=len(response) + 1)

    def per_node():  # naive: one forward pass per diagnosed node
        for position in nodes:
            forward_logits(lm, prompt + response[:position], logits_to_keep=1)

    naive_s = _timed(per_node, repeats=1)
    benchmark.pedantic(per_rollout, rounds=3, iterations=1)
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(per_node_s=round(naive_s, 3), per_rollout_s=round(best, 3),
                                speedup=round(naive_s / best, 2), nodes=len(nodes))


def test_rollout_throughput_vs_matmul_roofline(benchmark, lm):
    """Rollout tokens/s against this machine's measured fp32 matmul rate (FLOPs at 2 x parameters per token)."""
    params = sum(p.numel() for p in lm.model.parameters())
    a, w = torch.randn(64, 576), torch.randn(1536, 576)
    for _ in range(3):
        a @ w.T
    start = time.perf_counter()
    for _ in range(200):
        a @ w.T
    matmul_flops = 200 * 2 * 64 * 576 * 1536 / (time.perf_counter() - start)
    ids = [3 + i % 250 for i in range(300)]

    def rollouts():
        cache, logits = prefill(lm, ids)
        generate_branches(lm, cache, [Branch(len(ids), None, 64)] * 32, Decoding(1.0, make_generator(lm.device, 1)),
                          first_logits=logits[-1])

    benchmark.pedantic(rollouts, rounds=2, iterations=1)
    tokens_per_s = 32 * 64 / benchmark.stats.stats.min
    benchmark.extra_info.update(tokens_per_s=round(tokens_per_s, 1), matmul_gflops=round(matmul_flops / 1e9, 1),
                                fraction_of_matmul=round(tokens_per_s * 2 * params / matmul_flops, 3))
