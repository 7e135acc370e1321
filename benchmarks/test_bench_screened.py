"""Screened selection vs METHOD's depth windows: informative nodes per 1,000 generated tokens, equal token budget.

Issue (cost per informative node): ">= 2x informative nodes per 1,000 generated tokens over today's default at an
equal token budget on the same real rollouts, with a rollout-bootstrap interval that excludes 1".

Set-up: the real SmolLM2-135M-Instruct student on the first ``QUESTIONS`` BoolQ questions of the local data, G = 4
rollouts per question (sampled once, as the diagnostic samples them, and shared by both designs), K = 4, M = 2,
B = 1 node per window: the embedded demo's knobs. Both designs run through the diagnostic's own
``harness.diagnostic.question.plan_question`` (selection, supports, continuations, grading), so what is compared is exactly
what ``opd run --selection windows|screened`` does.

* **windows** (the default): B nodes per depth window, M continuations per support token.
* **screened**: the two-stage design (``harness.diagnostic.selection``) with the same knobs.

Equal budget (``ratio``): the screened design spends fewer tokens, so the windows design is cut down to the screened
budget: its nodes in a seeded random order until that budget is spent, as the targeted-vs-uniform benchmark cuts
the uniform nodes (``windows_cut_*``; its rate at the full budget is ``windows_per_1k``). The other way round is
reported too: the screened design raised towards the windows' budget with B_s = 2, 4, ... nodes per window, until
it reaches that budget or more screening finds no further informative node (``screened_B<b>_*``): on BoolQ with
SmolLM2-135M the extra budget finds nothing more, it only screens (``screened_reaches_windows_budget``).

Tokens counted: every continuation token each design generates (screening and estimation), not the shared
rollouts. A node is informative when its S_hat (the stored counts) are not all equal. Continuations are seeded per
request, so a continuation both designs ask for (the same node, token and index) is generated once and charged to
both (a memo keyed by everything that determines it). The intervals resample the shared rollouts (as asked) and,
more conservatively, the questions (the screened design's decisions use sibling rollouts of a question), with the
harness's own ``cluster_bootstrap_stat``.

About 8-12 minutes on 2 CPU cores.
"""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict

import numpy as np
import pytest
from local import local_data, local_student

from harness.api.progress import NoProgress
from harness.api.task import resolve_task
from harness.diagnostic.alignment import is_informative, success_rates
from harness.diagnostic.question import (
    Participants,
    QuestionWork,
    Settings,
    plan_question,
    rollouts_of,
    sample_rollouts,
)
from harness.reports.stats import cluster_bootstrap_stat
from harness.sampling.backends import OneCallAtATime
from harness.sampling.generation import derive_seed
from harness.sampling.prompting import chat_prompt_ids
from harness.sampling.teacher import RolloutView

STUDENT, TASK, QUESTIONS, SEED = "smollm2-135m", "boolq", 6, 0
KNOBS = dict(rollouts=4, temperature=1.0, nodes_per_window=1, top_k=4, continuations=2)
MAX_SCREENED_B = 8


class LedgerBackend(OneCallAtATime):
    """The harness's backend, with a memo of continuations (a continuation is fully determined by its source text,
    position, token, budget and seed) and a ledger of the tokens each call's requests generated, by source."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.memo: dict[tuple, object] = {}
        self.ledger: list[tuple[int, int, int]] = []  # (source index, position, tokens) of the requests so far

    def rollouts(self, *args, **kwargs):
        return self.inner.rollouts(*args, **kwargs)

    def continuations(self, sources, requests, **kwargs):
        keys = [(tuple(sources[r.source].prompt_ids), tuple(sources[r.source].response), r.position, r.token,
                 r.max_new_tokens, r.seed) for r in requests]
        todo = [i for i, key in enumerate(keys) if key not in self.memo]
        if todo:
            fresh = self.inner.continuations(sources, [requests[i] for i in todo], **kwargs)
            self.memo.update((keys[i], generated) for i, generated in zip(todo, fresh))
        generated = [self.memo[key] for key in keys]
        self.ledger.extend((r.source, r.position, len(g.tokens)) for r, g in zip(requests, generated))
        return generated


@dataclasses.dataclass
class Tally:
    nodes: int = 0
    informative: int = 0
    tokens: int = 0
    # per rollout (question index, rollout id): [informative nodes, tokens]
    per_rollout: dict = dataclasses.field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    # per node (question index, rollout id, position): (informative, tokens spent at that position)
    per_node: dict = dataclasses.field(default_factory=dict)

    def per_1k(self) -> float:
        return 1000.0 * self.informative / self.tokens if self.tokens else float("nan")


@pytest.fixture(scope="module")
def shared():
    data_dir = local_data(TASK)
    student = local_student(STUDENT)
    task = resolve_task(TASK)
    ledger = LedgerBackend(Participants(task, student, STUDENT, (), (), SEED).sampler)
    who = Participants(task=task, student=student, student_name=STUDENT, teachers=(), losses=(), seed=SEED,
                       backend=ledger)
    sampled = []
    for question in task.load(data_dir, QUESTIONS):
        prompt_ids = chat_prompt_ids(student.tokenizer, question.prompt)
        rows = sample_rollouts(question, who, Settings(**KNOBS), task.max_new_tokens, prompt_ids)
        sampled.append((question, prompt_ids, rows))
    return who, ledger, sampled


def _design(who: Participants, ledger: LedgerBackend, sampled, settings: Settings) -> Tally:
    tally = Tally()
    for index, (question, prompt_ids, rows) in enumerate(sampled):
        rollouts = rollouts_of(rows)
        views = [RolloutView(row["rollout_id"], row["response"], row["correct"]) for row in rows]
        ledger.ledger = []
        work = QuestionWork(question, prompt_ids, views, who, settings, who.task.max_new_tokens, NoProgress())
        plans = plan_question(work, rollouts, [dict(row) for row in rows]).plans
        # branch_jobs' sources are, job after job, the question's rollouts with tokens, in order
        with_tokens = [rollout.rollout_id for rollout in rollouts if rollout.tokens]
        at_position: dict[tuple[int, int], int] = defaultdict(int)
        for source, position, tokens in ledger.ledger:
            rollout_id = with_tokens[source % len(with_tokens)]
            tally.per_rollout[(index, rollout_id)][1] += tokens
            tally.tokens += tokens
            at_position[(rollout_id, position)] += tokens
        for plan in plans:
            informative = is_informative(success_rates(plan.succ_correct, plan.succ_trials))
            tally.nodes += 1
            tally.informative += int(informative)
            tally.per_rollout[(index, plan.rollout_id)][0] += int(informative)
            tally.per_node[(index, plan.rollout_id, plan.position)] = (
                informative, at_position[(plan.rollout_id, plan.position)])
    return tally


def _subsample(tally: Tally, budget: int) -> Tally:
    """The design's nodes in a seeded random order, counted until ``budget`` tokens are spent (the last node may
    overshoot): its rate at a smaller budget, as a random subset of its nodes would have spent it. Only for a
    design whose every token is spent at its nodes (windows: no screening)."""
    assert sum(tokens for _, tokens in tally.per_node.values()) == tally.tokens
    order = np.random.default_rng(derive_seed(SEED, "windows subsample")).permutation(sorted(tally.per_node))
    subset = Tally()
    for question, rollout, position in order:
        if subset.tokens >= budget:
            break
        informative, tokens = tally.per_node[(int(question), int(rollout), int(position))]
        subset.nodes += 1
        subset.informative += int(informative)
        subset.tokens += tokens
        subset.per_rollout[(int(question), int(rollout))][0] += int(informative)
        subset.per_rollout[(int(question), int(rollout))][1] += tokens
    return subset


def _ratio_interval(a: Tally, b: Tally, by_question: bool):
    """95% interval of rate(a) / rate(b) resampling shared rollouts (or whole questions)."""
    keys = sorted(set(a.per_rollout) | set(b.per_rollout))
    clusters = np.array([key[0] if by_question else keys.index(key) for key in keys])
    values = np.array([[*a.per_rollout.get(key, (0, 0)), *b.per_rollout.get(key, (0, 0))] for key in keys],
                      dtype=float)

    def ratio(index: np.ndarray) -> float:
        chosen = values[index]
        rate_a = chosen[:, 0].sum() / max(chosen[:, 1].sum(), 1.0)
        rate_b = chosen[:, 2].sum() / max(chosen[:, 3].sum(), 1.0)
        return rate_a / rate_b if rate_b > 0 else float("nan")

    return cluster_bootstrap_stat(ratio, clusters, seed=SEED)


def test_screened_vs_windows_at_equal_token_budget(benchmark, shared):
    who, ledger, sampled = shared

    def compare():
        start = time.perf_counter()
        windows = _design(who, ledger, sampled, Settings(**KNOBS))
        print(f"\nwindows: {windows.informative}/{windows.nodes} informative, {windows.tokens} tokens "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        screened_runs = {}
        b = 1
        while b <= MAX_SCREENED_B:
            screened_runs[b] = _design(who, ledger, sampled,
                                       Settings(**{**KNOBS, "nodes_per_window": b}, selection="screened"))
            run = screened_runs[b]
            print(f"screened B={b}: {run.informative}/{run.nodes} informative, {run.tokens} tokens "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            if run.tokens >= windows.tokens or (b > 1 and run.informative == screened_runs[b // 2].informative):
                break  # the windows' budget is reached, or more screening finds no further informative node
            b *= 2
        return windows, screened_runs

    windows, screened_runs = benchmark.pedantic(compare, rounds=1, iterations=1)
    screened = screened_runs[1]
    # equal budget: METHOD's windows cut down to what the screened design spent (a seeded random subset of its
    # nodes), as the targeted-vs-uniform benchmark matches budgets
    cut = _subsample(windows, screened.tokens)
    info = {"questions": len(sampled), **{k: v for k, v in KNOBS.items() if k != "temperature"},
            "ratio": round(screened.per_1k() / cut.per_1k(), 2)}
    for name, by_question in (("rollout", False), ("question", True)):
        interval = _ratio_interval(screened, cut, by_question)
        info[f"ratio_ci95_{name}_bootstrap"] = [round(interval.lo, 2), round(interval.hi, 2)]
    info.update(screened_informative=screened.informative, screened_nodes=screened.nodes,
                screened_tokens=screened.tokens, screened_per_1k=round(screened.per_1k(), 3),
                windows_cut_informative=cut.informative, windows_cut_nodes=cut.nodes, windows_cut_tokens=cut.tokens,
                windows_cut_per_1k=round(cut.per_1k(), 3), windows_informative=windows.informative,
                windows_nodes=windows.nodes, windows_tokens=windows.tokens, windows_per_1k=round(windows.per_1k(), 3),
                ratio_to_full_windows=round(screened.per_1k() / windows.per_1k(), 2))
    # the other way round: the screened design given more budget (more nodes per window) until it reaches the
    # windows' budget, or more screening stops finding informative nodes
    for b, run in screened_runs.items():
        if b > 1:
            info.update({f"screened_B{b}_informative": run.informative, f"screened_B{b}_nodes": run.nodes,
                         f"screened_B{b}_tokens": run.tokens, f"screened_B{b}_per_1k": round(run.per_1k(), 3)})
    info["screened_reaches_windows_budget"] = max(run.tokens for run in screened_runs.values()) >= windows.tokens
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))
