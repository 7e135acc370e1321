"""Compressed students: what a spec's ``@int4`` / ``@int8`` / ``@int4:g<group>`` / ``@prune:<fraction>`` suffix does
to a loaded model (simulated symmetric round-to-nearest quantisation of every Linear weight, or evenly spaced
decoder layers dropped). The suffix grammar is :mod:`harness.api.model_specs`; :func:`harness.sampling.models.resolve_model`
applies :func:`compress` after loading."""
from __future__ import annotations

import math
from typing import Any

import torch

from harness.api.errors import ModelError
from harness.api.model_specs import Compression


def compress(model: Any, tokenizer: Any, compression: Compression) -> tuple[Any, Any]:
    """``model`` with ``compression`` applied in place: its Linear weights quantised, or layers pruned."""
    if compression.bits:
        quantise_linear_weights(model, compression.bits, compression.group)
    else:
        prune_layers(model, compression.fraction)
    return model, tokenizer


def quantise_dequantise(weight: torch.Tensor, bits: int, group: int | None = None) -> torch.Tensor:
    """Symmetric round-to-nearest with one scale per row (output channel), or per ``group`` consecutive columns of
    a row (the last group of a row may be shorter): ``scale = max|w| / (2^(bits-1) - 1)`` over the scale's
    weights, levels ``-qmax..qmax``; returns the float weights the integer codes stand for. Error per entry <=
    scale / 2."""
    qmax = 2 ** (bits - 1) - 1
    rows, columns = weight.shape
    size = min(group or columns, columns)
    padded = torch.nn.functional.pad(weight, (0, -columns % size))  # zero columns change no group's max
    grouped = padded.reshape(rows, -1, size)
    scale = grouped.abs().amax(dim=2, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group stays zero
    codes = (grouped / scale).round().clamp(-qmax, qmax)
    return (codes * scale).reshape(rows, -1)[:, :columns]


@torch.no_grad()
def quantise_linear_weights(model: Any, bits: int, group: int | None = None) -> None:
    """Simulated weight-only quantisation of every ``nn.Linear`` (the output head included; where it is tied to
    the input embedding, that is quantised with it, one scale per token row or row group)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.copy_(quantise_dequantise(module.weight.float(), bits, group).to(module.weight.dtype))


def layers_to_drop(n_layers: int, fraction: float) -> list[int]:
    """``round(fraction * n)`` layer indices (at least one), evenly spaced, centred in equal blocks."""
    drop = max(1, math.floor(fraction * n_layers + 0.5))
    if drop >= n_layers:
        raise ModelError(f"Pruning {fraction:g} of {n_layers} layers would leave none; use a smaller fraction.")
    return sorted({int((i + 0.5) * n_layers / drop) for i in range(drop)})


def prune_layers(model: Any, fraction: float) -> list[int]:
    """Drop evenly spaced decoder layers in place; returns the kept original indices.

    Attention modules carry their layer index for the KV cache, so kept layers are renumbered, and the config's
    per-layer lists shrink with them, so caches built from the config have one slot per remaining layer.
    """
    decoder = model.get_decoder()
    n_layers = len(decoder.layers)
    dropped = set(layers_to_drop(n_layers, fraction))
    kept = [i for i in range(n_layers) if i not in dropped]
    decoder.layers = torch.nn.ModuleList(decoder.layers[i] for i in kept)
    for new_index, layer in enumerate(decoder.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    configs = {id(c): c for c in (model.config, getattr(model.config, "text_config", None), decoder.config) if c}
    for config in configs.values():
        config.num_hidden_layers = len(kept)
        if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == n_layers:
            config.layer_types = [config.layer_types[i] for i in kept]
    return kept
