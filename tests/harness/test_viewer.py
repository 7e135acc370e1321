"""harness.viewer and `opd view`: the HTML is parsed back with html.parser and checked node by node."""
from __future__ import annotations

import math
from html.parser import HTMLParser

import pandas as pd
import pytest
from test_leaderboard import node_row

from harness.cli import main
from harness.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table
from harness.viewer import colour, render

EVIL = "<script>alert('x')</script> & \"q\""


class Spans(HTMLParser):
    """Collects every ``span.node`` (its title and text) and whether any <script> element exists."""

    def __init__(self):
        super().__init__()
        self.nodes, self.scripts, self._depth, self._text = [], 0, 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "span" and attrs.get("class") == "node":
            self.nodes.append({"title": attrs["title"], "style": attrs["style"], "text": ""})
            self._depth = 1
        elif tag == "span" and self._depth:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "span" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth == 1:
            self.nodes[-1]["text"] += data


class FakeTokenizer:
    def decode(self, ids):
        return {10: "Yes", 11: EVIL, 12: "!", 1: "A", 2: "B"}.get(ids[0], f"<{ids[0]}>")


def records():
    nodes = [
        node_row("boolq", "s", "t", "q0", 0, 0, align_rkl=0.8, support_token_ids=[10, 11], sampled_token_id=10,
                 student_logprobs=[math.log(0.6), math.log(0.4)], teacher_logprobs=[math.log(0.3), math.log(0.7)],
                 succ_correct=[3, 1], succ_trials=[5, 4]),
        node_row("boolq", "s", "t", "q0", 0, 2, align_rkl=math.nan, informative=False),
        node_row("boolq", "s", "t", "q0", 1, 1, align_rkl=-0.5),
        node_row("boolq", "s", "other", "q0", 0, 0, align_rkl=0.1),
    ]
    questions = [
        {"task": "boolq", "student": "s", "question_id": "q0", "rollout_id": r, "prompt_tokens": 5, "response": text,
         "response_tokens": 3, "response_token_ids": [10, 11, 12], "finish_reason": "eos", "extracted": "yes",
         "gold": "yes", "correct": r == 0, "grpo_advantage": 0.0}
        for r, text in ((0, "Yes" + EVIL + "!"), (1, EVIL))
    ]
    return pd.DataFrame(nodes), pd.DataFrame(questions)


def parse(page):
    parser = Spans()
    parser.feed(page)
    return parser


def test_tokens_decoded_coloured_and_escaped():
    nodes, questions = records()
    parsed = parse(render(nodes, questions, "q0", teacher="t", tokenizer=FakeTokenizer()))
    assert parsed.scripts == 0  # the response's <script> is text, not markup
    assert [n["text"] for n in parsed.nodes] == ["Yes", "!", EVIL]  # rollout 0 positions 0, 2; rollout 1 position 1
    first = parsed.nodes[0]
    assert colour(0.8) in first["style"] and colour(-0.5) in parsed.nodes[2]["style"]
    assert "p=0.600 q=0.300 S_hat=0.60 (3/5)" in first["title"] and "'Yes' (sampled)" in first["title"]
    assert "p=0.400 q=0.700 S_hat=0.25 (1/4)" in first["title"] and "<script>alert" in first["title"]
    assert "uninformative" in parsed.nodes[1]["title"] and colour(math.nan) in parsed.nodes[1]["style"]


def test_fallback_marks_positions_by_index():
    nodes, questions = records()
    page = render(nodes, questions, "q0", teacher="t")
    parsed = parse(page)
    assert parsed.scripts == 0 and [n["text"] for n in parsed.nodes] == ["#0", "#2", "#1"]
    assert "10 (sampled): p=0.600" in parsed.nodes[0]["title"]
    assert "&lt;script&gt;" in page


def test_unknown_question_or_teacher():
    nodes, questions = records()
    with pytest.raises(KeyError, match="question"):
        render(nodes, questions, "nope")
    with pytest.raises(KeyError, match="teacher"):
        render(nodes, questions, "q0", teacher="nobody")


def test_colour_scale():
    assert colour(1.0) == "#00ff00" and colour(-1.0) == "#ff0000" and colour(0.0) == "#ffffff"


def test_opd_view_command(tmp_path):
    nodes, questions = records()
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table(questions.to_dict("records"), QUESTION_SCHEMA), tmp_path / "questions.parquet")
    out = tmp_path / "page.html"
    assert main(["view", str(tmp_path), "--question", "q0", "--no-tokenizer", "--out", str(out)]) == 0
    parsed = parse(out.read_text())
    assert len(parsed.nodes) == 3 and parsed.scripts == 0
    assert main(["view", str(tmp_path), "--question", "zzz", "--no-tokenizer"]) == 2
