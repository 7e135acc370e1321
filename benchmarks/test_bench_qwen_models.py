"""The offline Qwen2.5-Coder models: load time (first, then cached), disk, and peak memory with the 1.5B teacher
beside the 0.5B student.

Issue 29 (items 3 and 5): "the disk and memory each needs, and the load time measured here"; "peak memory with the
1.5B teacher loaded beside the 0.5B student (aim: fits 24 GiB with room for the OS)".

Every measurement is its own fresh Python process, as ``opd run`` starts. Nothing is asserted about time.

``test_qwen_models_load_time_and_disk``, on a private, empty model cache (``$OPD_CACHE_DIR`` in a temporary
directory), so "first" really joins, hashes and dequantises the parts and "cached" only reads the safetensors:

* ``<model>_first_load_s`` / ``_cached_load_s``: ``harness.sampling.models.load_model(spec, "cpu")`` wall seconds, and the
  process's peak resident memory (``VmHWM``) for each (a cached load maps the weights without reading them yet).
* ``<model>_cache_gib``: the cache directory it leaves (float32 safetensors + tokenizer); during the first load
  the joined GGUF (``<model>_gguf_gib``, as large as the installed parts) sits beside it, deleted afterwards
  (``leftover_gguf_bytes``). About 5 minutes on 2 cores; ~10 GB of free disk.

``test_qwen_teacher_beside_student_peak_memory``, on the user's model cache: both models loaded in one process, a
student pass and a teacher pass over 8 rollouts x 400 tokens, each one batched call ([8, 400], full logits; peak
RSS after them is ``peak_rss_gib``), then the teacher as 8 calls of [1, 400], which is what ``harness.diagnostic.question``
does today (one pass per (teacher, rollout)), and the batched pass again (A-B-A, every weight read in before):
``teacher_batched_vs_per_rollout_speedup`` is per-rollout seconds over the batched passes' mean. About 4-10 minutes
on 2 cores; ~13 GiB of RAM.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.api.errors import ModelError
from harness.sampling import gguf_parts

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"qwen2.5-coder-0.5b": gguf_parts.QWEN_CODER_05B, "qwen2.5-coder-1.5b": gguf_parts.QWEN_CODER_15B}
ROLLOUTS, TOKENS = 8, 400

_PEAK = """
def peak_gib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
"""

LOAD = _PEAK + """
import json, sys, time
t = time.perf_counter()
from harness.sampling.models import load_model
lm = load_model(sys.argv[1], "cpu")
print(json.dumps({"s": time.perf_counter() - t, "peak_gib": peak_gib(),
                  "params": sum(p.numel() for p in lm.model.parameters())}))
"""

SIDE_BY_SIDE = _PEAK + """
import json, time, torch
from harness.sampling.models import check_same_tokenizer, load_model
t = time.perf_counter()
student, teacher = load_model("qwen2.5-coder-0.5b", "cpu"), load_model("qwen2.5-coder-1.5b", "cpu")
check_same_tokenizer(student, teacher)
out = {"load_both_s": time.perf_counter() - t, "peak_after_load_gib": peak_gib()}
# token ids of ordinary text (below the tokenizer's special tokens); the cost does not depend on which
ids = torch.randint(0, 151_000, (%(rollouts)d, %(tokens)d), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    for lm in (student, teacher):  # read every weight page in once, outside the timings
        lm.model(input_ids=ids[:1, :8])
    t = time.perf_counter()
    student_logits = student.model(input_ids=ids).logits.float()  # the student's weights resident too, as in a run
    out["student_batched_forward_s"] = time.perf_counter() - t
    t = time.perf_counter()
    batched = teacher.model(input_ids=ids).logits.float()
    out["teacher_batched_forward_s"] = time.perf_counter() - t
    out["peak_after_batched_gib"] = peak_gib()
    del student_logits
    difference, seconds = 0.0, 0.0
    for row, expected in zip(ids, batched):  # one at a time, so only one rollout's logits are held besides
        t = time.perf_counter()
        single = teacher.model(input_ids=row[None]).logits[0].float()
        seconds += time.perf_counter() - t
        difference = max(difference, float((single - expected).abs().max()))
    out["teacher_per_rollout_forwards_s"] = seconds
    del batched
    t = time.perf_counter()  # A-B-A: the machine's speed drifts, so the batched pass runs again after
    teacher.model(input_ids=ids)
    out["teacher_batched_forward_s_before_after"] = [out["teacher_batched_forward_s"], time.perf_counter() - t]
out["max_abs_logit_difference"] = difference
out["peak_gib"] = peak_gib()
out["threads"] = torch.get_num_threads()
print(json.dumps(out))
""" % {"rollouts": ROLLOUTS, "tokens": TOKENS}


def _installed_or_skip() -> None:
    for parts in MODELS.values():
        try:
            gguf_parts.part_paths(parts)
        except ModelError as error:
            pytest.skip(str(error))


def _run(code: str, cache: Path, *args: str) -> dict:
    env = {**os.environ, "OPD_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_qwen_models_load_time_and_disk(benchmark, tmp_path):
    """Each model loaded twice by fresh processes on a private empty cache: the first joins, verifies and
    dequantises, the second reads the cache."""
    _installed_or_skip()
    cache = tmp_path / "cache"
    info: dict = {}

    def measure():
        cached_so_far = 0
        for spec, parts in MODELS.items():
            first = _run(LOAD, cache, spec)
            cached = _run(LOAD, cache, spec)
            name = spec.removeprefix("qwen2.5-coder-")
            info[f"{name}_params_m"] = round(first["params"] / 1e6)
            info[f"{name}_first_load_s"] = round(first["s"], 1)
            info[f"{name}_first_load_peak_gib"] = round(first["peak_gib"], 2)
            info[f"{name}_cached_load_s"] = round(cached["s"], 1)
            info[f"{name}_cached_load_peak_gib"] = round(cached["peak_gib"], 2)  # weights mmapped, not yet read
            info[f"{name}_cache_gib"] = round((_bytes(cache / "models") - cached_so_far) / 2**30, 2)
            cached_so_far = _bytes(cache / "models")
            info[f"{name}_gguf_gib"] = round(parts.size / 2**30, 2)  # the parts, and the joined file while it lives
        info["leftover_gguf_bytes"] = _bytes(cache / "gguf")

    started = time.perf_counter()
    benchmark.pedantic(measure, rounds=1, iterations=1)
    info["wall_s"] = round(time.perf_counter() - started)
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))


def test_qwen_teacher_beside_student_peak_memory(benchmark):
    """One fresh process: both models from the user's model cache (made first if absent, outside the measurement),
    a student pass and a teacher pass over 8 x 400 tokens, each one batched call, then the teacher as 8 calls of
    one rollout and once more batched; peak RSS counts every weight page the passes read (mmapped safetensors) and
    the logits."""
    _installed_or_skip()
    from harness.storage.cache import cache_dir

    for spec in MODELS:  # outside the timing: a missing cache entry is made here
        _run(LOAD, cache_dir(), spec)
    info: dict = {}

    def measure():
        both = _run(SIDE_BY_SIDE, cache_dir())
        batched = both["teacher_batched_forward_s_before_after"]
        both["teacher_batched_forward_s_before_after"] = [round(seconds, 1) for seconds in batched]
        info.update({k: round(v, 2) if isinstance(v, float) and v > 0.01 else v for k, v in both.items()})
        info["shape"] = f"{ROLLOUTS}x{TOKENS}"
        info["teacher_batched_vs_per_rollout_speedup"] = round(
            both["teacher_per_rollout_forwards_s"] / (sum(batched) / 2), 2)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    info["peak_rss_gib"] = info["peak_after_batched_gib"]  # both models resident + both batched passes' logits
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))
