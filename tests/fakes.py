"""Test fakes, registered exactly like real plugins: conftest loads this file as `--include tests/fakes.py` would.

* ``test-parity``: a task whose reward is the parity of the number of lowercase ASCII letters in the response. A
  random-weight model gets it right about half the time and every token matters, so nodes are informative.
* ``test-nan`` model: ``tiny-random`` whose logits are NaN wherever the input token id is even (about half of all
  positions), for the non-finite-logits path; same tokenizer as ``tiny-random``, so it can be a teacher of it.
* ``test-oracle`` model + ``test-count-a`` task (reward: an "a" in the response): a 4-token vocabulary (a, b, c,
  EOS) and a 4-token horizon, small enough to enumerate every future and compute success probabilities exactly.
  ``test-first-a-even`` (reward: the first "a" at an even position) makes success depend on *where* a token is
  forced, so a branch at the wrong position fails the exact checks. ``test-count-a-final`` is ``test-count-a`` with
  an answer that is final once an "a" is written (for the screened selection's answer-fixed rule).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.api.errors import SpecError
from harness.api.task import Grade, NoTrainSplit, Question, register_task
from harness.sampling.models import ModelSource, register_model


@dataclass(frozen=True)
class ParityTask(NoTrainSplit):
    name: str = "test-parity"
    description: str = "test fake: reward = parity of the number of lowercase letters"
    max_new_tokens: int = 12
    size: int = 5  # questions
    id_prefix: str = "parity"

    def load(self, data_dir, limit=None):
        questions = [Question(id=f"{self.id_prefix}-{i}", prompt=f"Question {i}: write something.", gold="even",
                              demonstration="ab", meta={}) for i in range(self.size)]
        return questions[:limit]

    def grade(self, question, response):
        letters = sum(ch.islower() and ch.isascii() for ch in response)
        return Grade(extracted=str(letters), correct=letters % 2 == 0)

    def answer_is_final(self, response):
        return False


@register_task("test-parity")
def parity_task() -> ParityTask:
    return ParityTask()


ORACLE_VOCAB = {"a": 0, "b": 1, "c": 2, "<eos>": 3}
ORACLE_HORIZON = 4


@dataclass(frozen=True)
class CountATask(NoTrainSplit):
    name: str = "test-count-a"
    description: str = "test fake: reward 1 iff the response holds an 'a' token"
    max_new_tokens: int = ORACLE_HORIZON

    def load(self, data_dir, limit=None):
        return [Question(id="oracle-0", prompt="b", gold="", demonstration="a a", meta={})][:limit]

    def grade(self, question, response):
        count = response.split().count("a")
        return Grade(extracted=str(count), correct=count >= 1)

    def answer_is_final(self, response):
        return False


@register_task("test-count-a")
def count_a_task() -> CountATask:
    return CountATask()


@dataclass(frozen=True)
class CountAFinalTask(CountATask):
    """``test-count-a`` whose task knows the answer is fixed once an "a" is written (the reward can no longer
    change), so the screened selection never branches after it."""

    name: str = "test-count-a-final"
    description: str = "test fake: test-count-a, answer final once an 'a' is written"

    def answer_is_final(self, response):
        return "a" in response.split()


@register_task("test-count-a-final")
def count_a_final_task() -> CountAFinalTask:
    return CountAFinalTask()


@dataclass(frozen=True)
class FirstAEvenTask(CountATask):
    """Position-sensitive oracle task: the same token forced one position later flips the reward, so a branch
    made at the wrong position cannot pass the exact-oracle checks."""

    name: str = "test-first-a-even"
    description: str = "test fake: reward 1 iff the response's first 'a' is at an even (0-based) position"

    def grade(self, question, response):
        words = response.split()
        first = words.index("a") if "a" in words else -1
        return Grade(extracted=str(first), correct=first >= 0 and first % 2 == 0)


@register_task("test-first-a-even")
def first_a_even_task() -> FirstAEvenTask:
    return FirstAEvenTask()


def oracle_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab=ORACLE_VOCAB, unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", unk_token="<eos>")


def _load_oracle(seed: int, init: float = 0.15):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(ORACLE_VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         initializer_range=init, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = ORACLE_VOCAB["<eos>"]
    return model, oracle_tokenizer()


def oracle_seed(name: str, seed: str) -> int:
    """The seed argument of the oracle fakes, refused as a real plugin refuses a bad argument (SpecError)."""
    if not (seed or "0").isdigit():
        raise SpecError(f"{name}:<seed> takes an integer seed, got {seed!r}.")
    return int(seed or 0)


@register_model("test-oracle", "test fake: 4-token vocabulary Llama; test-oracle:<seed>")
def oracle_model(seed: str = "0") -> ModelSource:
    number = oracle_seed("test-oracle", seed)
    return ModelSource(f"test-oracle:{seed}", "4-token test model", lambda **_: _load_oracle(number))


@register_model("test-oracle-sharp", "test fake: test-oracle with large weights, so its next token depends strongly "
                                     "on the context (an off-by-one prefix changes the futures)")
def sharp_oracle_model(seed: str = "0") -> ModelSource:
    number = oracle_seed("test-oracle-sharp", seed)
    return ModelSource(f"test-oracle-sharp:{seed}", "4-token context-sensitive test model",
                       lambda **_: _load_oracle(number, init=0.5))




def _load_nan():
    from harness.sampling.models import _load_tiny

    model, tokenizer = _load_tiny(0)

    def poison(module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        kept = output.logits.shape[1]
        even = (ids[:, -kept:] % 2 == 0).unsqueeze(-1)
        output.logits = output.logits.masked_fill(even, float("nan"))
        return output

    model.register_forward_hook(poison, with_kwargs=True)
    return model, tokenizer


@register_model("test-nan", "test fake: tiny-random with NaN logits after every even token id")
def nan_model() -> ModelSource:
    return ModelSource("test-nan", "tiny random Llama with NaN logits", lambda **_: _load_nan())


@dataclass(frozen=True)
class ManyParity(ParityTask):
    """test-parity with 40 questions, so diagnostic, evaluation and training ranges can be disjoint; an answer with
    no lowercase letter is unparsed."""

    name: str = "test-validate-parity"
    description: str = "test fake: test-parity with 40 questions"
    max_new_tokens: int = 6
    size: int = 40
    id_prefix: str = "vp"

    def grade(self, question, response):
        grade = super().grade(question, response)
        return grade if grade.extracted != "0" else Grade(extracted=None, correct=grade.correct)


@register_task("test-validate-parity")
def many_parity_task() -> ManyParity:
    return ManyParity()


@dataclass(frozen=True)
class SplitParity(ManyParity):
    """test-validate-parity with a 12-question train split (ids ``vp-train-<i>``), as GSM8K has; ``repeat`` makes
    its third train question a copy of evaluation question ``vp-<repeat>`` (bad data that must be refused)."""

    name: str = "test-validate-split"
    description: str = "test fake: test-validate-parity with a train split"
    repeat: int | None = None

    def load_train(self, data_dir, limit=None):
        questions = [Question(id=f"vp-train-{i}", prompt=f"Training question {i}: write something.", gold="even",
                              demonstration="ab", meta={}) for i in range(12)]
        if self.repeat is not None:
            questions[2] = self.load(data_dir)[self.repeat]
        return questions[:limit]


@register_task("test-validate-split")
def split_parity_task(argument: str | None = None) -> SplitParity:
    if argument and not argument.isdigit():
        raise SpecError(f"test-validate-split takes an evaluation question index to repeat, got {argument!r}")
    return SplitParity(repeat=int(argument) if argument else None)
