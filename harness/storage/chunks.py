"""Growth by chunks: ``opd run --questions A:B`` and the checks that merge chunk runs of one cell.

A chunk diagnoses questions ``A..B-1`` (0-based, end exclusive) of the task's order, with their own question ids,
part keys and seeds (every random stream is seeded from (seed, question id, rollout, ...), never from the order of
work). What else a row depends on is the *wave* it decodes in: questions in flight run side by side in blocks of
``k`` consecutive indices ``[0, k), [k, 2k), ...`` of the whole task, and a row's logits shift with the batch it
decodes in. So a chunk runs the waves of the whole task that meet ``[A, B)`` (:func:`wave_span`), computing the
questions of those waves outside the range and dropping them: its records are byte-identical to those questions'
rows of one run over the whole task (no ``--limit``), whatever ``A`` and ``B`` are. Chunk ends at multiples of
``k`` (run.json ``questions_in_flight``: at most 8, fewer for long rollouts or large G) cost nothing extra;
run.json ``chunk`` states the waves run and how many questions outside the range they cost.

Combining (:func:`combine`): chunk runs of one (task, student) merge when their ranges are disjoint and everything
else the records depend on is the same (settings, seed, teachers, backend, device, dtype, threads, questions in
flight, the harness code); otherwise one paragraph names the runs and the difference.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api.errors import ConfigError
from harness.storage.run_meta import RunMeta

_RANGE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
# config fields a chunk may differ in: which questions, where the data and the output live, how threads were asked
_FREE_CONFIG = ("questions", "limit", "data_dir", "device", "threads")


def parse_range(text: str, flag: str = "--questions") -> tuple[int, int]:
    """``"A:B"`` -> ``(A, B)`` with ``0 <= A < B``; anything else is one paragraph (ConfigError)."""
    match = _RANGE.match(str(text))
    if not match:
        raise ConfigError(f"{flag} takes a range of question indices A:B (0-based, end exclusive, e.g. 0:8 for the "
                          f"first eight questions), got {text!r}.")
    start, end = int(match.group(1)), int(match.group(2))
    if end <= start:
        example = f"{end}:{start}" if end < start else f"{start}:{start + 1}"
        raise ConfigError(f"{flag} {text}: the end must be larger than the start (A:B holds questions A to B-1), "
                          f"e.g. {example}.")
    return start, end


def range_text(questions: Sequence[int]) -> str:
    return f"{questions[0]}:{questions[1]}"


def check_within(questions: Sequence[int], available: int, task: str) -> None:
    """Refuse a range that reaches past the task's last question (before any model is loaded)."""
    start, end = questions
    if end > available:
        raise ConfigError(f"--questions {start}:{end} reaches past the end of task {task!r}, which has {available} "
                          f"question(s) (indices 0 to {available - 1}): end the range at {available} or less.")


def wave_span(questions: Sequence[int], in_flight: int, total: int) -> tuple[int, int]:
    """``[first, end)``: the whole-task waves of ``in_flight`` questions that meet ``questions``, clipped at the
    task's ``total`` questions; running exactly these makes every wave the one a whole-task run decodes."""
    start, end = questions
    first = start - start % in_flight
    last_start = (end - 1) - (end - 1) % in_flight
    return first, min(last_start + in_flight, total)


def chunk_meta(questions: Sequence[int], in_flight: int, total: int) -> dict[str, Any]:
    """What run.json records about a chunk's waves."""
    first, end = wave_span(questions, in_flight, total)
    return {"questions": list(questions), "task_questions": total, "waves": [first, end],
            "questions_in_flight": in_flight, "outside_range": (questions[0] - first) + (end - questions[1])}


def is_chunk(run_json: Mapping[str, Any]) -> bool:
    return RunMeta.of(run_json).questions is not None


def _identity(run_json: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a chunk's records depend on besides its range."""
    return RunMeta.of(run_json).configuration_apart_from(_FREE_CONFIG)


def check(parts: Sequence[tuple[Path, Mapping[str, Any]]]) -> None:
    """Refuse a set of runs of one (task, student) that are not chunks of one configuration with disjoint ranges:
    one paragraph naming the runs and the difference."""
    names = ", ".join(str(path) for path, _ in parts)
    whole = [str(path) for path, run_json in parts if not is_chunk(run_json)]
    if whole:
        raise ConfigError(f"Cannot combine {names} as chunks: {', '.join(whole)} is not a chunk run (no --questions "
                          f"range in its run.json), so which questions it holds cannot be checked against the others. "
                          f"Combine chunk runs only, or compare the runs as separate columns (leave out --combine).")
    first_path, first = parts[0]
    reference = _identity(first)
    for path, run_json in parts[1:]:
        identity = _identity(run_json)
        differing = [name for name in sorted(set(reference) | set(identity))
                     if reference.get(name) != identity.get(name)]
        if differing:
            detail = "; ".join(f"{name}: {reference.get(name)!r} in {first_path} but {identity.get(name)!r} in {path}"
                               for name in differing)
            raise ConfigError(f"Cannot combine the chunks {names}: {path} differs from {first_path} in "
                              f"{', '.join(differing)} ({detail}), so their nodes are not rows of one run. Rerun "
                              f"the chunk with the others' configuration and code, or compare the runs as separate "
                              f"columns (leave out --combine).")
    ranges = sorted((RunMeta.of(run_json).questions, str(path)) for path, run_json in parts)
    for (earlier, earlier_path), (later, later_path) in zip(ranges, ranges[1:]):
        if later[0] < earlier[1]:
            raise ConfigError(f"Cannot combine the chunks {names}: {earlier_path} holds questions "
                              f"{range_text(earlier)} and {later_path} holds {range_text(later)}, which overlap "
                              f"(questions {later[0]}:{min(earlier[1], later[1])} are in both), so those nodes would "
                              f"count twice. Combine chunks with disjoint ranges (A:B holds questions A to B-1).")


def combine(student: str, parts: Sequence[tuple[Path, Any, Mapping[str, Any]]]):
    """``(nodes, note)``: the nodes of checked chunk runs ``(run_dir, nodes, run_json)`` of one (task, student)."""
    import pandas as pd

    check([(path, run_json) for path, _, run_json in parts])
    ordered = sorted(parts, key=lambda part: RunMeta.of(part[2]).questions)
    nodes = pd.concat([frame for _, frame, _ in ordered], ignore_index=True)
    spans = ", ".join(f"{range_text(RunMeta.of(run_json).questions)} ({path})" for path, _, run_json in ordered)
    return nodes, f"{student}: combined the chunks {spans} into one column; their ranges are disjoint, so every node counts once."


def merge_meta(metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One cell's run.json from its chunks' (for the study's cost table): the first chunk's configuration with every
    range, summed counts, every session, complete when every chunk is."""
    ordered = sorted(metas, key=lambda meta: RunMeta.of(meta).questions[0])
    typed = [RunMeta.of(meta) for meta in ordered]
    merged = dict(ordered[0])
    merged["config"] = {**typed[0].provenance.config, "questions": [list(m.questions) for m in typed]}
    merged["status"] = "complete" if all(m.complete for m in typed) else "stopped"
    merged["counts"] = {name: sum(m.counts.get(name) or 0 for m in typed)
                        for name in ("questions", "rollouts", "nodes", "informative_nodes")}
    merged["resumed_questions"] = sum(m.reused_questions[0] for m in typed)
    merged["sessions"] = [dict(session) for m in typed for session in m.sessions]
    # the cell's cost is every chunk's: wall seconds and generated tokens summed over the chunks' sessions (what
    # harness.reports.plan's Rate reads), unknown when a session did not record them
    seconds = [session.get("total_s") for session in merged["sessions"]]
    tokens = [session.get("generated_tokens") for session in merged["sessions"]]
    merged["timings"] = {} if None in seconds or not seconds else {"total_s": sum(seconds)}
    merged["counts"]["generated_tokens_this_session"] = None if None in tokens or not tokens else sum(tokens)
    return merged
