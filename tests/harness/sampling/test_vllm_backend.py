"""The optional vLLM backend, on CPU against a fake ``vllm`` module with vLLM's attribute layout.

The fake records what ``LLM(...)`` and ``LLM.generate`` receive and answers with deterministic outputs (a pure
function of prompt and seed), so these tests check what the backend asks vLLM for and how it reads the answers:
prompts, budgets, seeds, order, finish reasons, the exported model directory, the CLI's errors, and a whole run.
The last test uses the real vLLM and is skipped unless both it and a CUDA device are present.
"""
from __future__ import annotations

import importlib.util
import random
import sys
import types
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import harness.sampling.vllm_backend as vllm_backend
from harness.api.errors import ModelError
from harness.cli.main import main
from harness.diagnostic.question import Settings
from harness.sampling.backends import Continuation, Source, resolve_backend
from harness.sampling.generation import derive_seed
from harness.sampling.models import LoadedModel, load_model
from harness.sampling.vllm_backend import VLLMBackend
from harness.storage.records import NODE_SCHEMA, QUESTION_SCHEMA
from harness.workflows.runner import RunConfig, run

PROMPT = [60, 61, 62]
RESPONSE = [70, 71, 72, 73, 74, 75]
SOURCES = [Source(tuple(PROMPT), tuple(RESPONSE))]


def make_fake_vllm() -> types.ModuleType:
    """A stand-in ``vllm``: ``LLM``, ``SamplingParams``, ``TokensPrompt`` and outputs laid out as vLLM's
    (``outputs[i].outputs[0].token_ids`` / ``.finish_reason``). Each answer depends only on (prompt, seed): byte
    tokens, ending in a stop token ("stop") about a third of the time, else exactly ``max_tokens`` ("length")."""
    fake = types.ModuleType("vllm")
    fake.engines = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.__dict__.update(kwargs)

    def TokensPrompt(**kwargs):  # a TypedDict in vLLM: a plain dict at run time
        return dict(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            assert (Path(kwargs["model"]) / "config.json").exists(), "vLLM needs a model directory"
            self.kwargs = kwargs
            self.calls = []
            fake.engines.append(self)

        def generate(self, prompts, sampling_params, use_tqdm=True):
            assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts)
            self.calls.append((prompts, sampling_params))
            outputs = []
            for prompt, params in zip(prompts, sampling_params):
                ids = list(prompt["prompt_token_ids"])
                rng = random.Random(f"{ids}|{params.seed}")
                length = rng.randint(1, params.max_tokens)
                tokens = [rng.randrange(32, 127) for _ in range(length)]
                if length < params.max_tokens or rng.random() < 0.3:
                    tokens[-1], reason = params.stop_token_ids[0], "stop"
                else:
                    reason = "length"
                completion = types.SimpleNamespace(index=0, token_ids=tokens, finish_reason=reason, text="")
                outputs.append(types.SimpleNamespace(prompt_token_ids=ids, outputs=[completion]))
            return outputs

    fake.LLM, fake.SamplingParams, fake.TokensPrompt = LLM, SamplingParams, TokensPrompt
    return fake


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    """The fake ``vllm`` importable, a (pretend) visible GPU, and a private model cache directory."""
    fake = make_fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(vllm_backend, "cuda_available", lambda: True)
    monkeypatch.setenv("OPD_CACHE_DIR", str(tmp_path / "model-cache"))
    return fake


@pytest.fixture
def student():
    return load_model("tiny-random", "cpu")


def test_continuations_send_prompt_prefix_and_forced_token_in_one_call(fake_vllm, student):
    backend = resolve_backend("vllm", student)
    assert isinstance(backend, VLLMBackend) and backend.name == "vllm"
    requests = [Continuation(0, 65, 6), Continuation(3, 66, 4), Continuation(3, 66, 4), Continuation(5, 67, 3),
                Continuation(1, 68, 12)]
    progress = []
    out = backend.continuations(SOURCES, requests, temperature=0.7, seed_parts=(0, "q", 1, "branches"),
                                is_final=lambda text: True, on_progress=progress.append)
    (engine,) = fake_vllm.engines
    (prompts, params), = engine.calls  # every request of the call in one generate: prefix caching shares them
    assert [p["prompt_token_ids"] for p in prompts] == [PROMPT + RESPONSE[:r.position] + [r.token] for r in requests]
    assert [p.max_tokens for p in params] == [r.max_new_tokens - 1 for r in requests]
    assert all(p.temperature == 0.7 and p.n == 1 for p in params)
    assert all(p.stop_token_ids == sorted(student.eos_token_ids) for p in params)
    seeds = [p.seed for p in params]
    assert seeds == [derive_seed(0, "q", 1, "branches", i) for i in range(len(requests))]
    assert len(set(seeds)) == len(seeds)  # the two identical requests are two different samples
    answers = engine.generate(prompts, params)
    assert len(out) == len(requests)
    for request, generated, answer in zip(requests, out, answers):  # request order, forced token first
        completion = answer.outputs[0]
        assert generated.tokens == (request.token, *completion.token_ids)
        assert len(generated.tokens) <= request.max_new_tokens
        assert generated.finish_reason == {"stop": "eos", "length": "length"}[completion.finish_reason]
    assert out[1].tokens != out[2].tokens
    assert progress == [len(requests)]


def test_finish_reasons_are_mapped_to_the_harness_names(fake_vllm, student):
    backend = VLLMBackend(student)
    requests = [Continuation(p % len(RESPONSE), 65 + p % 20, 2 + p % 5) for p in range(40)]
    out = backend.continuations(SOURCES, requests, temperature=1.0, seed_parts=(3,), is_final=None)
    raw = [a.outputs[0].finish_reason for a in fake_vllm.engines[0].generate(*fake_vllm.engines[0].calls[0])]
    assert set(raw) == {"stop", "length"}  # both kinds occur
    assert [g.finish_reason for g in out] == ["eos" if r == "stop" else "length" for r in raw]
    assert all(g.tokens[-1] in student.eos_token_ids for g in out if g.finish_reason == "eos")
    assert all(len(g.tokens) == r.max_new_tokens for g, r in zip(out, requests) if g.finish_reason == "length")


def test_requests_vllm_cannot_take_are_answered_without_it(fake_vllm, student):
    eos = min(student.eos_token_ids)
    backend = VLLMBackend(student)
    requests = [Continuation(2, eos, 5), Continuation(2, 65, 1), Continuation(2, 65, 0)]
    out = backend.continuations(SOURCES, requests, temperature=1.0, seed_parts=(0,), is_final=None)
    assert [(g.tokens, g.finish_reason) for g in out] == [((eos,), "eos"), ((65,), "length"), ((), "length")]
    assert not fake_vllm.engines  # nothing to generate: vLLM is not even started
    mixed = [Continuation(2, 65, 1), Continuation(2, 66, 5), Continuation(2, eos, 5)]
    out = backend.continuations(SOURCES, mixed, temperature=1.0, seed_parts=(0,), is_final=None)
    (prompts, params), = fake_vllm.engines[0].calls
    assert [p["prompt_token_ids"] for p in prompts] == [PROMPT + RESPONSE[:2] + [66]]
    assert [p.seed for p in params] == [derive_seed(0, 1)]  # the seed of the request's own index
    assert out[0].tokens == (65,) and out[1].tokens[0] == 66 and out[2].tokens == (eos,)


def test_rollouts_are_seeded_per_sample_and_reproducible(fake_vllm, student):
    first = VLLMBackend(student).rollouts(PROMPT, 5, 9, temperature=0.9, seed_parts=(0, "q", "rollouts"),
                                          is_final=None)
    (prompts, params), = fake_vllm.engines[0].calls
    assert [p["prompt_token_ids"] for p in prompts] == [PROMPT] * 5
    assert [p.max_tokens for p in params] == [9] * 5 and all(p.temperature == 0.9 for p in params)
    assert [p.seed for p in params] == [derive_seed(0, "q", "rollouts", i) for i in range(5)]
    assert len({p.seed for p in params}) == 5
    again = VLLMBackend(student).rollouts(PROMPT, 5, 9, temperature=0.9, seed_parts=(0, "q", "rollouts"),
                                          is_final=None)
    assert again == first  # same seeds, same samples
    other = VLLMBackend(student).rollouts(PROMPT, 5, 9, temperature=0.9, seed_parts=(1, "q", "rollouts"),
                                          is_final=None)
    assert {p.seed for p in fake_vllm.engines[2].calls[0][1]}.isdisjoint({p.seed for p in params})
    assert other != first
    assert all(1 <= len(g.tokens) <= 9 and g.finish_reason in ("eos", "length") for g in first)


def test_student_is_exported_once_and_reused(fake_vllm, student, monkeypatch):
    saves = []
    real_save = vllm_backend.save_model_dir
    monkeypatch.setattr(vllm_backend, "save_model_dir", lambda model, tokenizer, target: (
        saves.append(target), real_save(model, tokenizer, target)))
    backend = VLLMBackend(student)
    backend.rollouts(PROMPT, 2, 4, temperature=1.0, seed_parts=(0,), is_final=None)
    backend.continuations(SOURCES, [Continuation(1, 65, 4)], temperature=1.0, seed_parts=(0,),
                          is_final=None)
    assert len(fake_vllm.engines) == 1 and len(fake_vllm.engines[0].calls) == 2  # one engine per backend
    kwargs = fake_vllm.engines[0].kwargs
    assert kwargs["enable_prefix_caching"] is True and kwargs["dtype"] == "float32"
    assert 0 < kwargs["gpu_memory_utilization"] <= 0.6
    model_dir = Path(kwargs["model"])
    assert model_dir.parent == vllm_backend.cache_dir() / "vllm" and kwargs["tokenizer"] == kwargs["model"]
    VLLMBackend(student).rollouts(PROMPT, 1, 4, temperature=1.0, seed_parts=(0,), is_final=None)
    assert fake_vllm.engines[1].kwargs["model"] == str(model_dir)
    assert len(saves) == 1  # the second backend reused the directory
    assert not [p for p in model_dir.parent.iterdir() if p != model_dir]  # no staging directory left behind
    _assert_same_model(model_dir, student)


def test_a_model_save_pretrained_refuses_is_exported_through_a_plain_copy(fake_vllm, student, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("this model cannot be saved (e.g. loaded from GGUF)")

    monkeypatch.setattr(student.model, "save_pretrained", refuse)
    model_dir = vllm_backend.export_dir(student)
    _assert_same_model(model_dir, student)


def _assert_same_model(model_dir: Path, student: LoadedModel) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
    expected = student.model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, expected[name].cpu()), name
    assert AutoTokenizer.from_pretrained(model_dir).get_vocab() == student.tokenizer.get_vocab()


def test_no_visible_gpu_is_a_clear_error(fake_vllm, student, monkeypatch):
    monkeypatch.setattr(vllm_backend, "cuda_available", lambda: False)
    with pytest.raises(ModelError, match="No CUDA device is visible"):
        VLLMBackend(student)


def _run_argv(tmp_path, backend):
    return ["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
            "--rollouts", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path / "out"), "--backend", backend]


def test_cli_without_vllm_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    assert main(_run_argv(tmp_path, "vllm")) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "pip install 'opd-harness[vllm]'" in printed and "--backend transformers" in printed
    assert "Traceback" not in printed
    assert not (tmp_path / "out").exists()  # failed before any work


def test_cli_unknown_backend_suggests_the_right_one(tmp_path, capsys):
    assert main(_run_argv(tmp_path, "vlm")) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "Unknown backend 'vlm'. Did you mean 'vllm'?" in printed and "Traceback" not in printed
    assert not (tmp_path / "out").exists()


def test_a_run_with_the_vllm_backend_writes_the_same_records(fake_vllm, tmp_path):
    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=1,
                       settings=Settings(rollouts=2, continuations=1, max_new_tokens=6), device="cpu",
                       backend="vllm")
    meta = run(config, tmp_path / "a")
    nodes = pq.read_table(tmp_path / "a" / "nodes.parquet")
    questions = pq.read_table(tmp_path / "a" / "questions.parquet")
    assert nodes.schema.equals(NODE_SCHEMA) and questions.schema.equals(QUESTION_SCHEMA)
    assert meta["counts"]["nodes"] == nodes.num_rows > 0 and meta["config"]["backend"] == "vllm"
    q = questions.to_pandas()
    assert set(q.finish_reason) <= {"eos", "length"} and (q.response_tokens <= 6).all()
    calls = [call for engine in fake_vllm.engines for call in engine.calls]
    assert len(calls) == 1 + 1  # the rollouts, then one call with the continuations of every rollout
    assert all(p.max_tokens <= 5 for _, params in calls[1:] for p in params)
    df = nodes.to_pandas()
    assert (df.succ_trials.map(min) >= 1).all()
    run(config, tmp_path / "b")  # same configuration, new directory: the same records
    # NaN-aware comparison: alignments of zero directions and undefined halves are NaN, and NaN != NaN in arrow
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "b" / "nodes.parquet").to_pandas(), df)
    assert pq.read_table(tmp_path / "b" / "questions.parquet").equals(questions)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
                    reason="needs a CUDA device and the real vLLM (pip install 'opd-harness[vllm]')")
def test_real_vllm_samples_valid_reproducible_continuations(tmp_path, monkeypatch):
    from harness.sampling.models import tiny_model, tiny_tokenizer

    monkeypatch.setenv("OPD_CACHE_DIR", str(tmp_path))
    tokenizer = tiny_tokenizer()
    # head size 64 (hidden 256, 4 heads): one every vLLM attention kernel supports
    model = tiny_model(len(tokenizer), seed=0, hidden_size=256)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    student = LoadedModel("tiny-random-h256", model, tokenizer, torch.device("cuda"), torch.bfloat16)
    backend = VLLMBackend(student)
    rollouts = backend.rollouts(PROMPT, 4, 8, temperature=1.0, seed_parts=(0, "gpu"), is_final=None)
    assert len(rollouts) == 4
    for g in rollouts:
        assert 1 <= len(g.tokens) <= 8 and all(0 <= t < student.vocab_size for t in g.tokens)
        assert g.finish_reason == ("eos" if g.tokens[-1] in student.eos_token_ids else "length")
    requests = [Continuation(2, 65, 6), Continuation(2, 65, 6), Continuation(4, 66, 3)]
    out = backend.continuations(SOURCES, requests, temperature=1.0, seed_parts=(0, "gpu", 0),
                                is_final=None)
    assert [g.tokens[0] for g in out] == [65, 65, 66]
    assert all(len(g.tokens) <= r.max_new_tokens for g, r in zip(out, requests))
    again = backend.continuations(SOURCES, requests, temperature=1.0, seed_parts=(0, "gpu", 0),
                                  is_final=None)
    assert again == out  # per-request seeds: the same samples
