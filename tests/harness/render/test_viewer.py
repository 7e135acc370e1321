"""harness.render.viewer and `opd view`: the HTML is parsed back and checked node by node; a headless Chromium (where one
is installed) loads the page, clicks a token and sees its detail."""
from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli.main import main
from harness.diagnostic.losses import RecordedDirections
from harness.render.viewer import SCRIPT, colour, node_outcome, render
from harness.storage.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table
from tests.browser import click_node, find_chromium
from tests.helpers import node_row


DIRECTIONS = RecordedDirections()  # METHOD's JSD beta, as node_row's records
EVIL = "<script>alert('x')</script> & \"q\""
PROMPT = "Is the sky blue? Answer yes or no. " + EVIL
CONTEXT = "Here is a correct response: yes. " + EVIL

# node (q0, rollout 0, position 0): two support tokens that leave a tail of 0.2 under p and q
P, Q, LBAR = [0.5, 0.3], [0.2, 0.6], 0.25


class Page(HTMLParser):
    """Collects the token links (``a.node``), the side-panel details (text per id), the prompt boxes and scripts."""

    def __init__(self):
        super().__init__()
        self.nodes, self.details, self.scripts, self.prompts = [], {}, [], []
        self._open: list[tuple[str, list]] = []  # (tag, text sink) of the elements being collected

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        sink = None
        if tag == "a" and "node" in classes:
            self.nodes.append({**attrs, "text": []})
            sink = self.nodes[-1]["text"]
        elif tag == "div" and "detail" in classes:
            self.details[attrs["id"]] = []
            sink = self.details[attrs["id"]]
        elif tag == "div" and "prompt" in classes:
            self.prompts.append([])
            sink = self.prompts[-1]
        elif tag == "script":
            self.scripts.append([])
            sink = self.scripts[-1]
        elif tag in ("td", "th") and self._open:
            sink = self._open[-1][1]
            sink.append("|")  # cell separator in a detail's text
        if sink is not None or self._open:
            self._open.append((tag, sink if sink is not None else self._open[-1][1]))

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            if tag == "table":
                self._open[-1][1].append("|")  # the table's last cell ends here
            self._open.pop()

    def handle_data(self, data):
        if self._open:
            self._open[-1][1].append(data)

    def text(self, parts):
        return "".join(parts)


class FakeTokenizer:
    def decode(self, ids):
        return {10: "Yes", 11: EVIL, 12: "!", 1: "A", 2: "B"}.get(ids[0], f"<{ids[0]}>")


def records(extracted=("yes", None)):
    nodes = [
        node_row("boolq", "s", "t", "q0", 0, 0, align_rkl=0.8, support_token_ids=[10, 11], sampled_token_id=10,
                 student_logprobs=list(np.log(P)), teacher_logprobs=list(np.log(Q)), kl_student_teacher=LBAR,
                 succ_correct=[3, 1], succ_trials=[5, 4], ideal_grad=[0.125, -0.25, 0.0], context_text=CONTEXT),
        node_row("boolq", "s", "t", "q0", 0, 2, align_rkl=math.nan, informative=False, context_text=CONTEXT),
        node_row("boolq", "s", "t", "q0", 1, 1, align_rkl=-0.5, context_text=CONTEXT),
        node_row("boolq", "s", "other", "q0", 0, 0, align_rkl=0.1, context_text=None),
        node_row("boolq", "s", "nocontext", "q0", 0, 0, align_rkl=math.nan, context_ok=False,
                 teacher_logprobs=None, context_text=None),
    ]
    questions = [
        {"task": "boolq", "student": "s", "question_id": "q0", "rollout_id": r, "prompt": PROMPT, "prompt_tokens": 5,
         "response": text, "response_tokens": 3, "response_token_ids": [10, 11, 12], "finish_reason": "eos",
         "extracted": answer, "gold": "yes", "correct": r == 0, "grpo_advantage": 0.0}
        for r, text, answer in ((0, "Yes" + EVIL + "!", extracted[0]), (1, EVIL, extracted[1]))
    ]
    return pd.DataFrame(nodes), pd.DataFrame(questions)


def parse(page) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def table_rows(detail_text: str) -> dict[str, list[str]]:
    """A detail's support table as {first cell: other cells} (cells were joined with '|')."""
    cells = detail_text.split("|")
    rows = {}
    for i, cell in enumerate(cells):
        if cell.startswith(("'", "tail (")) or cell[:2].isdigit():
            rows[cell] = cells[i + 1: i + 7]
    return rows


def test_tokens_decoded_coloured_and_escaped():
    nodes, questions = records()
    parsed = parse(render(nodes, questions, "q0", directions=DIRECTIONS, teacher="t", tokenizer=FakeTokenizer()))
    # the response's, prompt's and context's <script> are text: the page's only script is the viewer's own
    assert [parsed.text(s) for s in parsed.scripts] == [SCRIPT]
    assert [parsed.text(n["text"]) for n in parsed.nodes] == ["Yes", "!", EVIL]  # r0 positions 0, 2; r1 position 1
    assert colour(0.8) in parsed.nodes[0]["style"] and colour(-0.5) in parsed.nodes[2]["style"]
    assert colour(math.nan) in parsed.nodes[1]["style"] and "uninformative" in parsed.nodes[1]["title"]
    # every token points at a detail of its own, and each detail exists
    assert [n["data-detail"] for n in parsed.nodes] == ["node-0-0", "node-0-2", "node-1-1"]
    assert set(parsed.details) == {"node-0-0", "node-0-2", "node-1-1"}


def test_detail_has_p_q_s_hat_g_star_and_the_loss_direction():
    nodes, questions = records()
    parsed = parse(render(nodes, questions, "q0", directions=DIRECTIONS, teacher="t", tokenizer=FakeTokenizer()))
    detail = parsed.text(parsed.details["node-0-0"])
    rows = table_rows(detail)
    # reverse KL's descent direction by hand: d_k = -p_k (log p_k - log q_k - lbar), the tail = minus their sum
    d = [-p * (math.log(p / q) - LBAR) for p, q in zip(P, Q)]
    assert rows["'Yes' ◂ sampled"] == ["0.500", "0.200", "0.60", "3/5", "+0.125", f"{d[0]:+.3g}"]
    assert rows[repr(EVIL)] == ["0.300", "0.600", "0.25", "1/4", "-0.25", f"{d[1]:+.3g}"]
    assert rows["tail (other tokens)"][:2] == ["0.200", "0.200"]
    assert rows["tail (other tokens)"][4:6] == ["+0", f"{-(d[0] + d[1]):+.3g}"]
    assert "rkl alignment: +0.800" in detail and "correct path" in detail
    assert "fkl +0.000" in detail  # node_row's other alignments are 0.0


def test_prompt_teacher_context_and_answers():
    nodes, questions = records(extracted=("yes", None))
    page = render(nodes, questions, "q0", directions=DIRECTIONS, teacher="t", tokenizer=FakeTokenizer())
    parsed = parse(page)
    assert [parsed.text(p) for p in parsed.prompts] == [PROMPT, CONTEXT]  # shared by both rollouts: shown once
    assert "answer “yes”" in page and "no answer found" in page and "nan" not in page.lower().replace("nano", "")
    # the student as its own teacher saw the student's prompt; a teacher without a context says so
    other = parse(render(nodes, questions, "q0", directions=DIRECTIONS, teacher="other"))
    assert parsed.text(other.prompts[1]) == "the student's own prompt (no extra context)"
    missing = parse(render(nodes, questions, "q0", directions=DIRECTIONS, teacher="nocontext"))
    assert "could not be built" in missing.text(missing.prompts[1])
    assert "context could not be built" in missing.text(missing.details["node-0-0"])


def test_each_rollout_is_marked_correct_wrong_or_unparsed():
    """Rollout 1 is graded incorrect: with no answer found it is unparsed (never shown as wrong), with an answer
    it is wrong; its nodes' details say the same, and the page counts the outcomes."""
    for extracted, shown in ((None, "unparsed"), ("no", "wrong")):
        nodes, questions = records(extracted=("yes", extracted))
        page = render(nodes, questions, "q0", directions=DIRECTIONS, teacher="t", tokenizer=FakeTokenizer())
        other = "wrong" if shown == "unparsed" else "unparsed"
        assert f'<h2>rollout 0 · <span class="ok">correct</span>' in page
        assert f'<h2>rollout 1 · <span class="{"unparsed" if shown == "unparsed" else "bad"}">{shown}</span>' in page
        assert f">{other}</span>" not in page
        detail = parse(page).text(parse(page).details["node-1-1"])
        assert f"{shown} path" in detail and "correct path" not in detail
        counts = "1 correct, 0 wrong, 1 unparsed" if shown == "unparsed" else "1 correct, 1 wrong, 0 unparsed"
        assert f"2 rollouts ({counts}" in page


def test_node_outcome_from_the_node_columns_when_records_do_not_say():
    nodes, _ = records()
    node = nodes.iloc[2].copy()  # rollout 1
    node["rollout_correct"], node["rollout_unparsed"] = False, True
    assert node_outcome(node) == "unparsed"
    node["rollout_unparsed"] = False
    assert node_outcome(node) == "incorrect"
    node["rollout_unparsed"] = None  # written before the column existed: not claimed to be a wrong answer
    assert node_outcome(node) == "unknown"
    node["rollout_correct"] = True
    assert node_outcome(node) == "correct"


def test_context_that_differs_by_rollout_is_shown_with_each_rollout():
    nodes, questions = records()
    nodes.loc[(nodes.teacher == "t") & (nodes.rollout_id == 1), "context_text"] = "another context"
    parsed = parse(render(nodes, questions, "q0", directions=DIRECTIONS, teacher="t"))
    assert [parsed.text(p) for p in parsed.prompts] == [PROMPT, "differs by rollout: see each rollout below",
                                                        CONTEXT, "another context"]


def test_a_run_without_the_prompt_and_context_columns_says_not_recorded():
    nodes, questions = records()
    parsed = parse(render(nodes.drop(columns="context_text"), questions.drop(columns="prompt"), "q0", directions=DIRECTIONS, teacher="t"))
    assert all(parsed.text(p).startswith("not recorded in this run") for p in parsed.prompts)


def test_fallback_marks_positions_by_index():
    nodes, questions = records()
    page = render(nodes, questions, "q0", directions=DIRECTIONS, teacher="t")
    parsed = parse(page)
    assert [parsed.text(n["text"]) for n in parsed.nodes] == ["#0", "#2", "#1"]
    assert "10 ◂ sampled" in parsed.text(parsed.details["node-0-0"]) and "&lt;script&gt;" in page


def test_unknown_question_or_teacher():
    nodes, questions = records()
    with pytest.raises(KeyError, match="question"):
        render(nodes, questions, "nope", directions=DIRECTIONS)
    with pytest.raises(KeyError, match="teacher"):
        render(nodes, questions, "q0", directions=DIRECTIONS, teacher="nobody")


def test_colour_scale():
    assert colour(1.0) == "#00ff00" and colour(-1.0) == "#ff0000" and colour(0.0) == "#ffffff"


def _write_run(folder: Path) -> None:
    def plain(frame):  # pandas' missing string is NaN; parquet's string columns want None
        return frame.astype(object).where(frame.notna(), None).to_dict("records")

    nodes, questions = records()
    write_table(rows_to_table(plain(nodes), NODE_SCHEMA), folder / "nodes.parquet")
    write_table(rows_to_table(plain(questions), QUESTION_SCHEMA), folder / "questions.parquet")


def test_opd_view_command(tmp_path):
    _write_run(tmp_path)
    out = tmp_path / "page.html"
    assert main(["view", str(tmp_path), "--question", "q0", "--no-tokenizer", "--out", str(out)]) == 0
    parsed = parse(out.read_text())
    assert len(parsed.nodes) == 3 and [parsed.text(s) for s in parsed.scripts] == [SCRIPT]
    assert parsed.text(parsed.prompts[0]) == PROMPT  # read back through parquet
    assert main(["view", str(tmp_path), "--question", "zzz", "--no-tokenizer"]) == 2


CHROMIUM = find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium, or set $OPD_CHROMIUM)")
def test_in_a_real_browser_a_click_shows_the_node_detail_without_console_errors(tmp_path):
    pytest.importorskip("aiohttp")
    nodes, questions = records()
    # six more rollouts without nodes make the page longer than the window: in a narrow window the detail must
    # still come into view (pinned panel), not below all rollouts
    more = pd.concat([questions.iloc[[1]].assign(rollout_id=r) for r in range(2, 8)])
    page = tmp_path / "page.html"
    page.write_text(render(nodes, pd.concat([questions, more]), "q0", directions=DIRECTIONS, teacher="t", tokenizer=FakeTokenizer()),
                    encoding="utf-8")
    for node, heading, size in (("node-0-0", "rollout 0 · position 0", (1280, 900)),
                                ("node-1-1", "rollout 1 · position 1", (1280, 900)),
                                ("node-0-0", "rollout 0 · position 0", (700, 450))):  # side panel; narrow window
        result = click_node(CHROMIUM, page, node, size=size)
        assert result.errors == ()
        assert not result.visible_before  # the click, not the page's initial state, shows the detail
        assert result.detail_visible and result.details_visible == 1 and heading in result.detail_text
    assert "'Yes' ◂ sampled" in click_node(CHROMIUM, page, "node-0-0").detail_text


def test_a_run_records_the_prompt_and_the_teachers_context_and_the_viewer_shows_them(tmp_path):
    from harness.api.task import resolve_task
    from harness.diagnostic.question import Settings
    from harness.storage.cache import WorkCache
    from harness.storage.records import load_run
    from harness.workflows.runner import RunConfig, run

    question = resolve_task("test-parity").load(None, 1)[0]
    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self", "self:correct-demo"), limit=1,
                       settings=Settings(rollouts=2, continuations=1, max_new_tokens=6), device="cpu")
    cache = WorkCache(tmp_path / "cache")
    run(config, tmp_path / "a", cache=cache)
    meta = run(config, tmp_path / "b", cache=cache)  # the same work read back from the reuse cache
    assert meta["cache_hits"]["sampled_hits"] == 1 and meta["counts"]["teacher_passes_this_session"] == 0
    nodes, questions, _ = load_run(tmp_path / "a")
    again_nodes, again_questions, _ = load_run(tmp_path / "b")
    assert list(questions["prompt"]) == [question.prompt] * 2
    own, demo = nodes[nodes.teacher == "self"], nodes[nodes.teacher == "self:correct-demo"]
    assert len(demo) and own["context_text"].isna().all()  # the student as teacher sees the student's own prompt
    for text in demo["context_text"]:  # the demonstration, then the unchanged question
        assert question.demonstration in text and text.endswith(question.prompt) and text != question.prompt
    pd.testing.assert_frame_equal(again_nodes[["context_text"]], nodes[["context_text"]])
    pd.testing.assert_frame_equal(again_questions[["prompt"]], questions[["prompt"]])

    out = tmp_path / "page.html"
    assert main(["view", str(tmp_path / "a"), "--question", question.id, "--teacher", "self:correct-demo",
                 "--no-tokenizer", "--out", str(out)]) == 0
    parsed = parse(out.read_text())
    assert [parsed.text(p) for p in parsed.prompts] == [question.prompt, demo["context_text"].iloc[0]]
