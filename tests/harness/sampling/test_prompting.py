"""One user turn to input ids (harness.sampling.prompting): through the chat template without special tokens added
twice, or, for a tokenizer without a template, the plain text and a blank line."""
from __future__ import annotations

from harness.sampling.models import load_model
from harness.sampling.prompting import chat_prompt_ids


class TemplateTokenizer:
    """A stand-in that records what it was asked: a template that wraps the turn in markers."""

    chat_template = "<fake>"

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert messages == [{"role": "user", "content": "hi there"}] and not tokenize and add_generation_prompt
        return "<user>hi there</user><assistant>"

    def __call__(self, text, add_special_tokens=True):
        self.calls.append((text, add_special_tokens))
        return {"input_ids": [ord(c) for c in text]}


class PlainTokenizer(TemplateTokenizer):
    chat_template = None


def test_a_template_renders_the_turn_and_adds_no_special_tokens_again():
    tokenizer = TemplateTokenizer()
    assert chat_prompt_ids(tokenizer, "hi there") == [ord(c) for c in "<user>hi there</user><assistant>"]
    assert tokenizer.calls == [("<user>hi there</user><assistant>", False)]


def test_without_a_template_the_text_ends_in_one_blank_line():
    tokenizer = PlainTokenizer()
    assert chat_prompt_ids(tokenizer, "hi there  \n") == [ord(c) for c in "hi there\n\n"]
    assert tokenizer.calls == [("hi there\n\n", True)]


def test_the_tiny_model_s_ids_decode_back_to_the_turn():
    tokenizer = load_model("tiny-random", "cpu").tokenizer
    ids = chat_prompt_ids(tokenizer, "Is it 4?")
    assert "Is it 4?" in tokenizer.decode(ids)
