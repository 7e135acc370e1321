"""The grammar of a model spec's compression suffixes (harness.api.model_specs) and the size a spec tells, each case
against a hand-written expectation; every malformed suffix is one ModelError naming the accepted spellings."""
from __future__ import annotations

import pytest

from harness.api.errors import ModelError
from harness.api.model_specs import Compression, bits_per_weight, split_compression


@pytest.mark.parametrize("spec, expected", [
    ("smollm2-135m", ("smollm2-135m", None)),
    ("hf:org/model@main", ("hf:org/model@main", None)),  # an @ that names no compression is part of the spec
    ("m@int4", ("m", Compression(bits=4))),
    ("m@int8", ("m", Compression(bits=8))),
    ("m@int4:g32", ("m", Compression(bits=4, group=32))),
    ("m@prune:0.25", ("m", Compression(fraction=0.25))),
    ("m@int8@prune:0.5", ("m@int8", Compression(fraction=0.5))),  # the last suffix first
])
def test_split_compression(spec, expected):
    assert split_compression(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("m@int3", "Unknown compression suffix"), ("m@int4:32", "Unknown compression suffix"),
    ("m@prunes", "Unknown compression suffix"), ("m@int4:g0", "at least one column"),
    ("m@prune:1", "strictly between 0 and 1"), ("m@prune:0", "strictly between 0 and 1"),
    ("m@prune:1.2.3", "strictly between 0 and 1"),
])
def test_malformed_suffixes_are_refused(spec, words):
    with pytest.raises(ModelError, match=words):
        split_compression(spec)


@pytest.mark.parametrize("spec, bits", [
    ("m", 16.0), ("m@int8", 8.0), ("m@int4", 4.0), ("m@int4:g32", 4.5), ("m@int4:g16", 5.0),
    ("m@prune:0.25", 12.0), ("m@int8@prune:0.5", 4.0), ("m@prune:0.5@int4:g32", 2.25),
    ("m@int8@int4", 4.0),  # the coarser precision wins, a second quantisation never adds bits
])
def test_bits_per_weight(spec, bits):
    assert bits_per_weight(spec) == pytest.approx(bits)


def test_descriptions_name_the_step():
    assert Compression(bits=4).describe() == "int4 (simulated RTN, one scale per output channel)"
    assert Compression(bits=4, group=32).describe() == "int4 (simulated RTN, one scale per 32 columns)"
    assert Compression(fraction=0.25).describe() == "by pruning 0.25 of its layers"
