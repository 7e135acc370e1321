"""harness.sampling.compression and harness.api.model_specs: compressed students (``@int4``, ``@int8``,
``@int4:g<group>``, ``@prune:<f>``) and teachers with padded output rows."""
from __future__ import annotations

import pytest
import torch

from harness.api.errors import ModelError
from harness.api.model_specs import Compression, bits_per_weight, split_compression
from harness.api.task import resolve_task
from harness.diagnostic.question import _teacher_logits
from harness.sampling.compression import layers_to_drop, prune_layers, quantise_dequantise
from harness.sampling.generation import Branch, Decoding, generate_branches, make_generator, prefill
from harness.sampling.models import (
    LoadedModel,
    _load_tiny,
    check_same_tokenizer,
    load_model,
    tiny_model,
    tiny_tokenizer,
)
from harness.sampling.teacher import ContextInputs, RolloutView, resolve_teacher


def linear_weights(model) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().clone() for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@pytest.mark.parametrize("bits", [4, 8])
def test_quantised_weights_stay_within_half_a_step_of_the_originals(bits):
    original = linear_weights(_load_tiny(0)[0])
    quantised = load_model(f"tiny-random@int{bits}", "cpu")
    qmax = 2 ** (bits - 1) - 1
    for name, weight in linear_weights(quantised.model).items():
        step = original[name].abs().amax(dim=1, keepdim=True) / qmax
        error = (weight - original[name]).abs()
        assert (error <= step / 2 + 1e-7).all(), name
        levels = weight / step  # every entry is an integer number of steps within [-qmax, qmax]
        assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= qmax + 1e-4
        assert error.max() > 0  # something was actually rounded


def test_int4_is_coarser_than_int8_and_zero_rows_survive():
    weight = torch.randn(16, 64)
    weight[3] = 0
    err4 = (quantise_dequantise(weight, 4) - weight).abs().mean()
    err8 = (quantise_dequantise(weight, 8) - weight).abs().mean()
    assert err8 < err4 / 8
    assert torch.equal(quantise_dequantise(weight, 4)[3], torch.zeros(64))


def test_group_wise_quantisation_matches_a_loop_over_groups():
    """Each group of ``g`` consecutive columns of a row gets its own scale max|w| / qmax (the last group of a row
    shorter when ``g`` does not divide the width), computed here entry by entry in plain Python."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 11, generator=generator, dtype=torch.float64)
    weight[2, 4:8] = 0  # an all-zero group stays zero
    for bits, group in ((4, 4), (4, 3), (8, 4), (4, 11), (4, 64)):
        qmax = 2 ** (bits - 1) - 1
        expected = torch.zeros_like(weight)
        for row in range(5):
            for start in range(0, 11, group):
                values = weight[row, start:start + group].tolist()
                scale = max(abs(v) for v in values) / qmax or 1.0
                for offset, v in enumerate(values):
                    expected[row, start + offset] = max(-qmax, min(qmax, round(v / scale))) * scale
        assert torch.allclose(quantise_dequantise(weight, bits, group), expected, rtol=0, atol=1e-12), (bits, group)
    assert torch.equal(quantise_dequantise(weight, 4, 11), quantise_dequantise(weight, 4))  # one group = per row


def test_groups_keep_small_weights_that_a_row_outlier_would_round_to_zero():
    weight = torch.full((1, 64), 0.01)
    weight[0, 0] = 1.0  # the outlier sets the row's scale to 1/7: every 0.01 rounds to 0
    assert torch.count_nonzero(quantise_dequantise(weight, 4)) == 1
    grouped = quantise_dequantise(weight, 4, 32)
    assert torch.allclose(grouped[0, 32:], weight[0, 32:])  # a group of equal values is exact


def test_group_wise_students_load_and_sort_by_bits_per_weight():
    original = linear_weights(_load_tiny(0)[0])
    grouped = linear_weights(load_model("tiny-random@int4:g8", "cpu").model)
    per_channel = linear_weights(load_model("tiny-random@int4", "cpu").model)
    for name, weight in original.items():
        assert (grouped[name] - weight).abs().mean() < (per_channel[name] - weight).abs().mean(), name
    assert bits_per_weight("m") == 16 and bits_per_weight("m@int4") == 4 and bits_per_weight("m@int4:g32") == 4.5
    assert bits_per_weight("m@prune:0.5@int8") == 4 == bits_per_weight("m@int8@prune:0.5")


def test_compressed_specs_are_cached_apart_from_the_original():
    from harness.sampling.models import ModelCache

    models = ModelCache()  # one run's models
    plain, int8 = models.load("tiny-random", "cpu"), models.load("tiny-random@int8", "cpu")
    assert plain is not int8 and int8.spec == "tiny-random@int8"
    assert not torch.equal(plain.model.lm_head.weight, int8.model.lm_head.weight)
    assert models.load("tiny-random@int8", "cpu") is int8
    assert ModelCache().load("tiny-random@int8", "cpu") is not int8  # another run loads its own copy


def test_compression_suffixes_parse_and_bad_ones_say_how_to_fix_them():
    assert split_compression("smollm2-135m") == ("smollm2-135m", None)
    base, compression = split_compression("hf:org/model@prune:0.25")
    assert base == "hf:org/model" and compression.fraction == 0.25
    assert split_compression("tiny-random:3@int4")[1].bits == 4
    assert split_compression("m@int4:g32")[1] == Compression(bits=4, group=32)
    for bad in ("smollm2-135m@int3", "smollm2-135m@prune:1.5", "smollm2-135m@prune:0", "m@int4:g0", "m@int4:32",
                "m@int4:gx"):
        with pytest.raises(ModelError):
            split_compression(bad)


def test_prune_drops_evenly_spaced_layers():
    assert layers_to_drop(8, 0.25) == [2, 6]
    assert layers_to_drop(30, 0.25) == [1, 5, 9, 13, 16, 20, 24, 28]  # round(7.5) = 8 layers
    assert layers_to_drop(2, 0.25) == [1]  # at least one
    with pytest.raises(ModelError):
        layers_to_drop(2, 0.9)


def test_pruned_model_keeps_the_right_layers_and_still_generates():
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=0, layers=8)
    model.config.layer_types = [f"full_attention_{i}" for i in range(8)]
    originals = [layer.mlp.up_proj.weight.clone() for layer in model.model.layers]
    kept = prune_layers(model, 0.25)
    assert kept == [0, 1, 3, 4, 5, 7]
    assert model.config.num_hidden_layers == 6 and len(model.model.layers) == 6
    assert model.config.layer_types == [f"full_attention_{i}" for i in kept]
    for new, old in enumerate(kept):
        assert torch.equal(model.model.layers[new].mlp.up_proj.weight, originals[old])
        assert model.model.layers[new].self_attn.layer_idx == new
    model.config.layer_types = ["full_attention"] * 6  # real layer names, so the KV cache can be built from them
    lm = LoadedModel("pruned", model.eval(), tokenizer, torch.device("cpu"), torch.float32)
    cache, logits = prefill(lm, [1, 2, 3, 4])
    out = generate_branches(lm, cache, [Branch(4, None, 5)] * 2, Decoding(1.0, make_generator(lm.device, 0)),
                            first_logits=logits[-1])
    assert all(len(g.tokens) >= 1 for g in out) and len(cache.layers) == 6


def test_pruned_spec_loads_and_runs():
    lm = load_model("tiny-random@prune:0.5", "cpu")
    assert lm.model.config.num_hidden_layers == 1
    assert torch.isfinite(prefill(lm, [5, 6, 7])[1]).all()


def padded(spec: str, extra: int) -> LoadedModel:
    """A teacher whose output matrix has ``extra`` unused padding rows beyond the tokenizer."""
    model, tokenizer = _load_tiny(1)
    model.resize_token_embeddings(len(tokenizer) + extra)
    return LoadedModel(spec, model.eval(), tokenizer, torch.device("cpu"), torch.float32)


def test_a_teacher_with_padding_rows_is_accepted_and_sliced_to_the_students_vocabulary():
    student, teacher = load_model("tiny-random", "cpu"), padded("padded", 64)
    check_same_tokenizer(student, teacher)
    with pytest.raises(ModelError):  # the other way round the student's tokens would have no teacher row
        check_same_tokenizer(teacher, student)
    task = resolve_task("test-parity")
    question = task.load(None, 1)[0]
    inputs = ContextInputs(task, question, 0, [RolloutView(0, "ab", True)], student=student)
    logits, context_text = _teacher_logits(resolve_teacher("model:padded"), teacher, inputs, [10, 11, 12], {}, 0)
    assert logits.shape == (3, student.vocab_size) and context_text is None  # it sees the student's own prompt
