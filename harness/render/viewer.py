"""``opd view``: one question's rollouts as one self-contained HTML page (inline CSS and JS, nothing fetched).

The page shows what a user needs to judge a node:

- the question's prompt as the student saw it (before the chat template) and what the teacher was shown (its
  context text, or that it saw the student's own prompt, or that its context could not be built);
- per rollout its outcome (correct, wrong, or unparsed: no parseable answer, a third outcome apart from a wrong
  answer, METHOD Categorical answers), the extracted answer ("no answer found" when the grader found none) and the
  response
  token by token, each diagnosed token coloured by its alignment for the chosen loss (``response_token_ids`` decoded
  one token at a time, so a diagnosed position is exactly one span; without the student's tokenizer the response
  text is shown as is and the diagnosed positions are listed by index);
- a click on a diagnosed token (or Enter on it) opens its detail in the side panel: per support token p, q,
  S_hat = correct / trials, g* and the loss's direction d (recomputed from the row with
  :meth:`harness.diagnostic.losses.Loss.support_direction`), the tail entry, the alignment of every loss and the divergences.
  Hovering shows a one-line summary. Without JavaScript the token is a link whose ``:target`` shows the same detail.

Runs written before the ``prompt`` and ``context_text`` columns existed say "not recorded in this run". All text
from the records is escaped with ``html.escape`` (a response may contain markup).
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from harness.storage.records import KL_STUDENT_TEACHER, KL_TEACHER_STUDENT, LOSS_NAMES, TV, outcome


class LossDirections(Protocol):
    """What the page needs of the losses, computed by the caller (:class:`harness.diagnostic.losses.RecordedDirections`
    with the run's JSD beta), so that rendering never imports torch."""

    def uses_teacher(self, loss: str) -> bool:
        """False for a loss whose direction needs no teacher (grpo): its context cannot fail."""

    def direction(self, node: Mapping[str, Any], loss: str) -> np.ndarray | None:
        """``d`` of ``loss`` on support + tail from the row's own columns; None when it cannot be recomputed."""


NOT_RECORDED = "not recorded in this run (runs record it from this version of the harness on)"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 0.3em 0; }
h2 { font-size: 1.05em; margin: 0.2em 0; }
.layout { display: grid; grid-template-columns: minmax(0, 1fr) 34em; gap: 1.5em; align-items: start; }
aside { position: sticky; top: 0.5em; max-height: 96vh; overflow: auto; border: 1px solid #bbb; border-radius: 6px;
  padding: 0.6em 0.9em; background: #fafafa; }
/* narrow windows: the detail panel is pinned to the bottom of the window, so a click always shows it */
@media (max-width: 75em) {
  .layout { grid-template-columns: minmax(0, 1fr); }
  aside { position: fixed; left: 0; right: 0; bottom: 0; top: auto; max-height: 45vh; border-radius: 0;
    box-shadow: 0 -2px 6px rgba(0, 0, 0, 0.2); }
  body { margin-bottom: 48vh; }
}
.rollout { border: 1px solid #ccc; border-radius: 6px; padding: 0.4em 0.9em; margin: 0.8em 0; }
.text, .prompt { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.8; }
.prompt { background: #f4f4f4; padding: 0.4em 0.6em; border-radius: 4px; line-height: 1.4; max-height: 9em;
  overflow: auto; }
.node { border-radius: 3px; padding: 0 1px; cursor: pointer; outline: 1px solid #888; color: inherit;
  text-decoration: none; }
.node.selected { outline: 2px solid #1a4fd6; }
.detail { display: none; }
.detail.shown, .detail:target { display: block; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0; }
td, th { padding: 0.15em 0.5em; text-align: right; border-bottom: 1px solid #ddd; }
td:first-child, th:first-child { text-align: left; font-family: ui-monospace, monospace; }
tr.sampled td { font-weight: bold; }
tr.tail td { color: #666; font-style: italic; }
.legend span { padding: 0 0.5em; border: 1px solid #ccc; }
.muted { color: #666; }
.ok { color: #0a7a2a; } .bad { color: #b3261e; } .unparsed { color: #8a5a00; }
"""

# click (or Enter) on a diagnosed token: show its detail in the side panel without scrolling the page
SCRIPT = """
(function () {
  function show(node) {
    document.querySelectorAll('.detail.shown').forEach(function (d) { d.classList.remove('shown'); });
    document.querySelectorAll('.node.selected').forEach(function (n) { n.classList.remove('selected'); });
    var detail = document.getElementById(node.getAttribute('data-detail'));
    if (!detail) { return; }
    detail.classList.add('shown');
    node.classList.add('selected');
    document.getElementById('hint').style.display = 'none';
  }
  document.addEventListener('click', function (event) {
    var node = event.target.closest('.node');
    if (node) { event.preventDefault(); show(node); }
  });
  document.addEventListener('keydown', function (event) {
    var node = event.target.closest && event.target.closest('.node');
    if (node && (event.key === 'Enter' || event.key === ' ')) { event.preventDefault(); show(node); }
  });
})();
"""


def colour(align: float) -> str:
    """Background for an alignment in [-1, 1]: red (against the ideal gradient), white (0), green (along it)."""
    if align is None or not math.isfinite(align):
        return "#dddddd"  # no alignment (uninformative node, no context, zero gradient)
    a = max(-1.0, min(1.0, float(align)))
    fade = int(round(255 * (1 - abs(a))))
    return f"#{fade:02x}ff{fade:02x}" if a >= 0 else f"#ff{fade:02x}{fade:02x}"


def _list(value) -> list:
    return [] if value is None else list(value)


def _missing(value) -> bool:
    """None, NaN (pandas' null in an object column) or an empty string."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value)


def _is_false(value) -> bool:
    """``value`` is a recorded False (numpy or Python bool); a null is not False."""
    return not _missing(value) and not bool(value)


def answer_label(extracted) -> str:
    """What the grader extracted, or "no answer found" when it found none (never "nan")."""
    return "no answer found" if _missing(extracted) else f"answer “{extracted}”"


# a rollout's outcome (harness.storage.records.outcome) as the page shows it; None: not graded
OUTCOME_HTML = {"correct": '<span class="ok">correct</span>', "incorrect": '<span class="bad">wrong</span>',
                "unparsed": '<span class="unparsed">unparsed</span>', None: '<span class="muted">not graded</span>'}
UNKNOWN_OUTCOME = '<span class="bad">wrong or unparsed (not recorded)</span>'


def node_outcome(node: pd.Series) -> str | None:
    """The outcome of the rollout a node lies on from its own columns (``rollout_correct``, ``rollout_unparsed``);
    ``"unknown"`` when it is incorrect and the records do not say whether an answer was found."""
    correct = node.get("rollout_correct")
    if _missing(correct):
        return None
    if bool(correct):
        return "correct"
    unparsed = node.get("rollout_unparsed")
    return "unknown" if _missing(unparsed) else "unparsed" if bool(unparsed) else "incorrect"


def _outcome_html(name: str | None) -> str:
    return OUTCOME_HTML.get(name, UNKNOWN_OUTCOME)


def _prob(x: float) -> str:
    return f"{x:.1e}" if 0 < x < 1e-3 else f"{x:.3f}"


def _signed(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.3g}"


def _float(node: pd.Series, column: str) -> float:
    value = node.get(column)
    return math.nan if _missing(value) else float(value)


def alignment_status(node: pd.Series, loss: str, directions: LossDirections) -> str:
    """The node's alignment for ``loss`` as text, or why it has none."""
    uses_teacher = directions.uses_teacher(loss)  # grpo's direction needs no teacher: its context cannot fail
    if uses_teacher and _is_false(node.get("context_ok")):
        return "n/a: the teacher's context could not be built here"
    if uses_teacher and _is_false(node.get("logits_finite")):
        return "n/a: the teacher's logits are not finite here (row excluded)"
    if _is_false(node.get("informative")):
        return "n/a: uninformative (every S_hat equal, so g* = 0)"
    if _float(node, f"dnorm_{loss}") == 0.0:
        return "n/a: zero distillation gradient (no cosine)"
    align = _float(node, f"align_{loss}")
    return f"{align:+.3f}" if math.isfinite(align) else "n/a"


def _token_label(token: int, decode: Callable[[int], str] | None) -> str:
    return repr(decode(token)) if decode else str(token)


def tooltip(node: pd.Series, loss: str, directions: LossDirections, decode: Callable[[int], str] | None = None) -> str:
    """One-line hover summary of a node."""
    name = _token_label(int(node["sampled_token_id"]), decode)
    return f"position {int(node['position'])} · token {name} · {loss} alignment {alignment_status(node, loss, directions)}"


def node_detail(node: pd.Series, loss: str, decode: Callable[[int], str] | None, element_id: str,
                directions: LossDirections, rollout_outcome: str | None = None) -> str:
    """The side-panel detail of one node: support table (p, q, S_hat, g*, d), alignments, divergences."""
    support = _list(node["support_token_ids"])
    logp = _list(node["student_logprobs"])
    logq = [] if _missing(node.get("teacher_logprobs")) else _list(node["teacher_logprobs"])
    correct, trials, ideal = _list(node["succ_correct"]), _list(node["succ_trials"]), _list(node["ideal_grad"])
    direction = directions.direction(node, loss)
    rows = []
    for i, token in enumerate(support):
        p = math.exp(logp[i])
        q = _prob(math.exp(logq[i])) if i < len(logq) else "n/a"
        s_hat = f"{correct[i] / trials[i]:.2f}" if trials[i] else "n/a"
        sampled = token == int(node["sampled_token_id"])
        mark, row_class = (" ◂ sampled", ' class="sampled"') if sampled else ("", "")
        rows.append(
            f"<tr{row_class}><td>{html.escape(_token_label(token, decode) + mark)}</td>"
            f"<td>{_prob(p)}</td><td>{q}</td><td>{s_hat}</td><td>{correct[i]}/{trials[i]}</td>"
            f"<td>{_signed(ideal[i]) if i < len(ideal) else 'n/a'}</td>"
            f"<td>{_signed(direction[i]) if direction is not None else 'n/a'}</td></tr>")
    p_tail = max(0.0, 1.0 - sum(math.exp(v) for v in logp))
    q_tail = _prob(max(0.0, 1.0 - sum(math.exp(v) for v in logq))) if logq else "n/a"
    rows.append(f'<tr class="tail"><td>tail (other tokens)</td><td>{_prob(p_tail)}</td><td>{q_tail}</td>'
                f"<td>neutral</td><td></td><td>{_signed(ideal[-1]) if len(ideal) > len(support) else 'n/a'}</td>"
                f"<td>{_signed(direction[-1]) if direction is not None else 'n/a'}</td></tr>")
    others = " · ".join(f"{name} {alignment_status(node, name, directions)}" for name in LOSS_NAMES if name != loss)
    divergences = " · ".join(f"{label} {_float(node, column):.3g}" for label, column in (
        ("KL(p‖q)", KL_STUDENT_TEACHER), ("KL(q‖p)", KL_TEACHER_STUDENT), ("TV", TV),
        ("student entropy", "entropy")))
    # the rollout's graded outcome where the caller has it (questions.parquet), else the node's own columns
    path = _outcome_html(rollout_outcome if rollout_outcome is not None else node_outcome(node))
    return (
        f'<div class="detail" id="{element_id}"><h2>rollout {int(node["rollout_id"])} · position '
        f'{int(node["position"])} (depth {_float(node, "depth_norm"):.2f}) · {path} path</h2>'
        f"<p><b>{html.escape(loss)} alignment: {html.escape(alignment_status(node, loss, directions))}</b></p>"
        f"<table><tr><th>token</th><th>p</th><th>q</th><th>S_hat</th><th>k/n</th><th>g*</th>"
        f"<th>d</th></tr>{''.join(rows)}</table>"
        f'<p class="muted">p: student, q: teacher; S_hat = k/n, the successes k of the n continuations forced '
        f"through the token (the rollout itself counts for its sampled token); g* = p(S_hat − V), the direction "
        f"that raises the chance of success; d: {html.escape(loss)}'s descent direction; the alignment is "
        f"cos(g*, d) over these rows.</p>"
        f"<p>other losses: {html.escape(others)}</p><p class=\"muted\">{html.escape(divergences)}</p></div>")


def _context_status(rows: pd.DataFrame, has_column: bool) -> str:
    """What the teacher was shown for one rollout, as plain text."""
    if rows["context_ok"].eq(False).any():
        return "its context could not be built for this rollout (e.g. no correct rollout to show yet)"
    if not has_column:
        return NOT_RECORDED
    texts = [text for text in rows["context_text"] if not _missing(text)]
    return texts[0] if texts else "the student's own prompt (no extra context)"


def _rollout_html(question: pd.Series, nodes: pd.DataFrame, loss: str, decode, directions: LossDirections,
                  context: str | None) -> tuple[str, list[str]]:
    """One rollout's section, and the details of its nodes for the side panel."""
    by_position = {int(row["position"]): row for _, row in nodes.iterrows()}
    rid = int(question["rollout_id"])
    graded = outcome(question.get("correct"), question.get("extracted"))
    details, spans = [], {}
    for position, node in sorted(by_position.items()):
        element_id = f"node-{rid}-{position}"
        details.append(node_detail(node, loss, decode, element_id, directions, graded))
        spans[position] = (f'<a class="node" href="#{element_id}" data-detail="{element_id}" '
                           f'style="background:{colour(_float(node, f"align_{loss}"))}" '
                           f'title="{html.escape(tooltip(node, loss, directions, decode))}">')
    ids = _list(question.get("response_token_ids"))
    if decode is not None and ids:
        pieces = [f"{spans[i]}{html.escape(decode(token))}</a>" if i in spans else html.escape(decode(token))
                  for i, token in enumerate(ids)]
        body = f'<div class="text">{"".join(pieces)}</div>'
    else:
        marks = " ".join(f"{spans[position]}#{position}</a>" for position in sorted(spans))
        body = (f'<div class="text">{html.escape(str(question.get("response", "")))}</div>'
                f"<p>diagnosed positions (token index): {marks or 'none'}</p>")
    grade = _outcome_html(graded)
    context_html = "" if context is None else (
        f"<details><summary>what the teacher was shown for this rollout</summary>"
        f'<div class="prompt">{html.escape(context)}</div></details>')
    head = (f"<h2>rollout {rid} · {grade} · {html.escape(answer_label(question.get('extracted')))} · gold "
            f"“{html.escape(str(question.get('gold')))}” · {len(by_position)} diagnosed tokens</h2>")
    return f'<div class="rollout">{head}{context_html}{body}</div>', details


def render(nodes: pd.DataFrame, questions: pd.DataFrame, question_id: str, *, directions: LossDirections,
           teacher: str | None = None, loss: str = "rkl", tokenizer: Any = None) -> str:
    """The HTML page of one question for one teacher (default: the first teacher of the run) and loss.

    ``directions``: the losses' directions recomputed from the rows, with the beta the run was written with
    (``run.json``) for jsd.
    """
    selected = nodes[nodes["question_id"].astype(str) == str(question_id)]
    if selected.empty:
        known = ", ".join(map(str, pd.unique(nodes["question_id"])[:10]))
        raise KeyError(f"question {question_id!r} has no nodes in this run (questions: {known})")
    teachers = list(pd.unique(nodes["teacher"]))
    teacher = teacher if teacher is not None else str(selected["teacher"].iloc[0])
    selected = selected[selected["teacher"] == teacher]
    if selected.empty:
        raise KeyError(f"teacher {teacher!r} not in this run (teachers: {', '.join(teachers)})")
    rollouts = questions[questions["question_id"].astype(str) == str(question_id)].sort_values("rollout_id")
    decode = (lambda token: tokenizer.decode([int(token)])) if tokenizer is not None else None

    has_context = "context_text" in selected.columns
    contexts = {int(rid): _context_status(rows, has_context) for rid, rows in selected.groupby("rollout_id")}
    shared_context = next(iter(set(contexts.values()))) if len(set(contexts.values())) == 1 else None
    sections, details = [], []
    for _, row in rollouts.iterrows():
        rid = int(row["rollout_id"])
        section, node_details = _rollout_html(row, selected[selected["rollout_id"] == rid], loss, decode, directions,
                                              None if shared_context is not None else contexts.get(rid))
        sections.append(section)
        details.extend(node_details)

    prompts = [p for p in rollouts.get("prompt", pd.Series(dtype=object)) if not _missing(p)]
    prompt = prompts[0] if prompts else NOT_RECORDED
    teacher_shown = shared_context if shared_context is not None else "differs by rollout: see each rollout below"
    informative = np.isfinite(selected[f"align_{loss}"].to_numpy(dtype=float, na_value=np.nan))
    title = f"{question_id} · teacher {teacher} · loss {loss}"
    graded = [outcome(c, e) for c, e in zip(rollouts.get("correct", []), rollouts.get("extracted", []))]
    outcome_counts = ", ".join(f"{graded.count(name)} {label}" for name, label in (
        ("correct", "correct"), ("incorrect", "wrong"), ("unparsed", "unparsed: no answer found")))
    legend = "".join(f'<span style="background:{colour(a)}">{a:+.1f}</span>' for a in (-1, -0.5, 0, 0.5, 1))
    mode = "tokens decoded with the student's tokenizer" if tokenizer is not None else \
        "tokenizer not loaded: response text as is, diagnosed positions by index"
    others = [t for t in teachers if t != teacher]
    other_line = (f"<p class=\"muted\">other teachers in this run: {html.escape(', '.join(others))} "
                  f"(<code>opd view RUN --question {html.escape(str(question_id))} --teacher NAME</code>)</p>"
                  if others else "")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(rollouts)} rollouts ({html.escape(outcome_counts)}) · {len(selected)} diagnosed tokens "
        f"({int(informative.sum())} with an "
        f"alignment) · {html.escape(mode)}</p>"
        f'<p class="legend">{html.escape(loss)} alignment: {legend} '
        f'<span style="background:{colour(math.nan)}">none</span></p>{other_line}'
        f'<div class="layout"><main>'
        f"<details open><summary>prompt (as the student saw it, before the chat template)</summary>"
        f'<div class="prompt">{html.escape(prompt)}</div></details>'
        f"<details><summary>what the teacher ({html.escape(teacher)}) was shown</summary>"
        f'<div class="prompt">{html.escape(teacher_shown)}</div></details>'
        f"{''.join(sections)}</main>"
        f'<aside><p id="hint" class="muted">Click a coloured token to see its support tokens with p, q, S_hat, '
        f"g* and the {html.escape(loss)} direction.</p>{''.join(details)}</aside></div>"
        f"<script>{SCRIPT}</script></body></html>")
