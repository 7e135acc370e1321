"""Turning a user-turn text into model input ids, through the tokenizer's chat template where it has one."""
from __future__ import annotations

from typing import Any


def chat_prompt_ids(tokenizer: Any, user_text: str) -> list[int]:
    """Ids of ``user_text`` as one user turn followed by the assistant's generation prompt.

    Tokenizers without a chat template (base models) get the plain text and a blank line, so the response starts
    on its own line.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )
        # the template already wrote any BOS/role markers: adding special tokens again would duplicate them
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(user_text.rstrip() + "\n\n")["input_ids"])
