"""The grammar of a model spec's compression suffixes (``@int4``, ``@int8``, ``@int4:g<group>``, ``@prune:<fraction>``)
and what a spec tells of a model's size, without loading anything: the reports order students by it, and
:mod:`harness.sampling.models` applies the steps it names when it loads the model."""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.api.errors import ModelError

_COMPRESSION = re.compile(
    r"^(?P<base>.+)@(?P<kind>int(?P<bits>[48])(?::g(?P<group>[0-9]+))?|prune:(?P<fraction>[0-9.]+))$")
_SUFFIX_HELP = "use @int4, @int8, @int4:g<group size> (e.g. @int4:g32) or @prune:<fraction in (0,1)>"


@dataclass(frozen=True)
class Compression:
    """One compression step named by a spec suffix: quantisation to ``bits`` (one scale per output channel, or per
    ``group`` input columns) or pruning a ``fraction`` of layers."""

    bits: int | None = None
    fraction: float | None = None
    group: int | None = None

    def describe(self) -> str:
        if self.bits:
            scales = f"one scale per {self.group} columns" if self.group else "one scale per output channel"
            return f"int{self.bits} (simulated RTN, {scales})"
        return f"by pruning {self.fraction:g} of its layers"


def split_compression(spec: str) -> tuple[str, Compression | None]:
    """``"smollm2-135m@int4"`` -> ``("smollm2-135m", Compression(bits=4))``; no suffix -> ``(spec, None)``."""
    match = _COMPRESSION.match(spec)
    if match is None:
        if "@" in spec and spec.rpartition("@")[2].startswith(("int", "prune")):
            raise ModelError(f"Unknown compression suffix in {spec!r}: {_SUFFIX_HELP}.")
        return spec, None
    if match["bits"] is not None:
        group = None if match["group"] is None else int(match["group"])
        if group == 0:
            raise ModelError(f"A quantisation group needs at least one column, got {spec!r}: e.g. @int4:g32.")
        return match["base"], Compression(bits=int(match["bits"]), group=group)
    try:
        fraction = float(match["fraction"])
    except ValueError:
        fraction = -1.0
    if not 0 < fraction < 1:
        raise ModelError(f"@prune:<fraction> needs a fraction strictly between 0 and 1, got {match['fraction']!r}.")
    return match["base"], Compression(fraction=fraction)


def bits_per_weight(spec: str) -> float:
    """Storage per original weight as far as the spec's compression suffixes tell (16 for none): ``bits`` plus a
    16-bit scale shared by each group (a per-channel scale costs ~0 per weight), times the fraction of layers kept.
    Orders students by size: ``@int4`` (4) < ``@int4:g32`` (4.5) < ``@int8`` (8) < uncompressed."""
    precision, kept = 16.0, 1.0
    base, compression = split_compression(spec)
    while compression is not None:
        if compression.bits:
            precision = min(precision, compression.bits + (16 / compression.group if compression.group else 0.0))
        else:
            kept *= 1.0 - compression.fraction
        base, compression = split_compression(base)
    return precision * kept
