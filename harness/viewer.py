"""``opd view``: one question's rollouts as a self-contained HTML page, each diagnosed token coloured by alignment.

The response is shown token by token when the student's tokenizer can be loaded (``response_token_ids`` decoded one
token at a time, so a diagnosed position is exactly one span); otherwise the ``response`` text is shown as is and the
diagnosed positions are listed below it by index. Hovering a diagnosed token shows, per support token, p, q, S_hat and
the success counts (a CSS tooltip plus the ``title`` attribute). All text is escaped with ``html.escape``.
"""
from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
.rollout { border: 1px solid #ccc; border-radius: 6px; padding: 0.5em 1em; margin: 1em 0; }
.text { font-family: monospace; white-space: pre-wrap; line-height: 1.8; }
.node { position: relative; border-radius: 3px; padding: 0 1px; cursor: help; outline: 1px solid #888; }
.node .tip { display: none; position: absolute; left: 0; top: 1.6em; z-index: 10; background: #222; color: #eee;
  padding: 0.4em 0.6em; border-radius: 4px; white-space: pre; font-size: 0.8em; }
.node:hover .tip { display: block; }
.legend span { padding: 0 0.5em; }
"""


def colour(align: float) -> str:
    """Background for an alignment in [-1, 1]: red (against the ideal gradient), white (0), green (along it)."""
    if align is None or not math.isfinite(align):
        return "#dddddd"  # uninformative node: no alignment
    a = max(-1.0, min(1.0, float(align)))
    fade = int(round(255 * (1 - abs(a))))
    return f"#{fade:02x}ff{fade:02x}" if a >= 0 else f"#ff{fade:02x}{fade:02x}"


def _list(value) -> list:
    return [] if value is None else list(value)


def tooltip(node: pd.Series, loss: str, decode=None) -> str:
    """Plain-text tooltip of one node: alignment and, per support token, p, q, S_hat = correct / trials."""
    align = node.get(f"align_{loss}")
    lines = [f"position {int(node['position'])} · {loss} alignment "
             + ("n/a (uninformative)" if align is None or not math.isfinite(align) else f"{align:+.3f}")]
    student, teacher = _list(node["student_logprobs"]), _list(node["teacher_logprobs"])
    for i, token in enumerate(_list(node["support_token_ids"])):
        correct, trials = _list(node["succ_correct"])[i], _list(node["succ_trials"])[i]
        name = repr(decode(token)) if decode else str(token)
        q = f"{math.exp(teacher[i]):.3f}" if i < len(teacher) else "n/a"
        s_hat = f"{correct / trials:.2f}" if trials else "n/a"
        mark = " (sampled)" if token == node["sampled_token_id"] else ""
        lines.append(f"{name}{mark}: p={math.exp(student[i]):.3f} q={q} S_hat={s_hat} ({correct}/{trials})")
    return "\n".join(lines)


def _node_span(text: str, node: pd.Series, loss: str, decode=None) -> str:
    tip = tooltip(node, loss, decode)
    return (f'<span class="node" style="background:{colour(node.get(f"align_{loss}"))}" '
            f'title="{html.escape(tip)}">{html.escape(text)}<span class="tip">{html.escape(tip)}</span></span>')


def _rollout_html(question: pd.Series, nodes: pd.DataFrame, loss: str, tokenizer: Any) -> str:
    by_position = {int(row["position"]): row for _, row in nodes.iterrows()}
    decode = (lambda token: tokenizer.decode([int(token)])) if tokenizer is not None else None
    ids = _list(question.get("response_token_ids"))
    if decode is not None and ids:
        pieces = [_node_span(decode(token), by_position[i], loss, decode) if i in by_position
                  else html.escape(decode(token)) for i, token in enumerate(ids)]
        body = f'<div class="text">{"".join(pieces)}</div>'
    else:
        marks = " ".join(_node_span(f"#{position}", by_position[position], loss) for position in sorted(by_position))
        body = (f'<div class="text">{html.escape(str(question.get("response", "")))}</div>'
                f'<p>diagnosed positions (token index): {marks or "none"}</p>')
    grade = "correct" if question.get("correct") else "incorrect"
    return (f'<div class="rollout"><h3>rollout {int(question["rollout_id"])} · {grade} · extracted '
            f'{html.escape(str(question.get("extracted")))} (gold {html.escape(str(question.get("gold")))})</h3>'
            f"{body}</div>")


def render(nodes: pd.DataFrame, questions: pd.DataFrame, question_id: str, *, teacher: str | None = None,
           loss: str = "rkl", tokenizer: Any = None) -> str:
    """The HTML page of one question for one teacher (default: the first teacher of the run) and loss."""
    selected = nodes[nodes["question_id"].astype(str) == str(question_id)]
    if selected.empty:
        known = ", ".join(map(str, pd.unique(nodes["question_id"])[:10]))
        raise KeyError(f"question {question_id!r} has no nodes in this run (questions: {known})")
    teacher = teacher if teacher is not None else str(selected["teacher"].iloc[0])
    selected = selected[selected["teacher"] == teacher]
    if selected.empty:
        raise KeyError(f"teacher {teacher!r} not in this run (teachers: {', '.join(pd.unique(nodes['teacher']))})")
    rollouts = questions[questions["question_id"].astype(str) == str(question_id)].sort_values("rollout_id")
    parts = [_rollout_html(row, selected[selected["rollout_id"] == row["rollout_id"]], loss, tokenizer)
             for _, row in rollouts.iterrows()]
    informative = np.isfinite(selected[f"align_{loss}"].to_numpy(dtype=float, na_value=np.nan))
    title = f"{question_id} · teacher {teacher} · loss {loss}"
    legend = "".join(f'<span style="background:{colour(a)}">{a:+.1f}</span>' for a in (-1, -0.5, 0, 0.5, 1))
    mode = "tokens decoded with the student tokenizer" if tokenizer is not None else \
        "tokenizer not loaded: response text, diagnosed positions by index"
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{len(rollouts)} rollouts · {len(selected)} diagnosed nodes ({int(informative.sum())} informative) · "
            f"{html.escape(mode)}</p><p class=\"legend\">alignment: {legend} "
            f'<span style="background:{colour(math.nan)}">uninformative</span></p>'
            f"{''.join(parts)}</body></html>")


def student_tokenizer(run_json: dict) -> Any:
    """The student's tokenizer via :func:`harness.models.load_model`, or None when it cannot be loaded."""
    spec = (run_json.get("config") or {}).get("student")
    if not spec:
        return None
    try:
        from harness.models import load_model

        return load_model(spec).tokenizer
    except Exception:  # noqa: BLE001 -- any failure (no weights offline, no torch...) means: fall back to text
        return None
