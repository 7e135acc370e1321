"""Targeted depth-window node selection vs uniform random node selection, at an equal generated-token budget.

Issue (speed and scale): "targeted depth-window selection vs uniform random node selection at equal generated-token
budget, as informative nodes per 1,000 generated tokens (aim for >= 1.5x)".

Set-up, chosen so the whole benchmark takes about 4-6 minutes on 2 CPU cores: the real SmolLM2-135M-Instruct
student on the first 4 BoolQ questions of the local data, G = 4 rollouts per question at T = 1 (sampled once, seeded
as the diagnostic seeds them, and shared by both strategies), K = 4, M = 2 continuations per support token,
B = 1 node per depth window (the embedded demo's knobs).

* **targeted**: METHOD's node selection, ``select_nodes(entropy_rows(logits), B)`` on every rollout (B nodes per
  exponential depth window, highest student entropy first).
* **uniform**: positions drawn uniformly at random, without replacement and seeded, from each rollout in turn
  (round robin over the 16 rollouts, one new position per rollout per round), counted node by node in that order
  until the uniform strategy has generated at least as many continuation tokens as the targeted one. The last node
  may overshoot, so both budgets are reported. (Generation is batched a stretch of that order at a time, one call
  per rollout; nodes generated past the budget point are discarded uncounted.)

Every node is then treated the same way, by the harness's own code: support ``C(u)`` by
``support_tokens(logp, sampled, K, [], 1e-4)``, M forced continuations per support token generated and graded by
``harness.diagnostic.question.branch_nodes`` (the rollout itself one more trial of its sampled token), ``S_hat`` by
``success_rates`` and "informative" by ``is_informative``. Budgets count branch-continuation tokens only (the shared
rollouts cost both strategies the same). The ratio is whatever comes out: no seed is tuned.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from local import local_data, local_student

from harness.api.task import resolve_task
from harness.diagnostic.alignment import is_informative, success_rates, support_tokens
from harness.diagnostic.question import (
    MIN_SUPPORT_PROB,
    Participants,
    QuestionWork,
    Rollout,
    Settings,
    SuccessCounts,
    branch_nodes,
    rollouts_of,
    sample_rollouts,
)
from harness.diagnostic.selection import entropy_rows, select_nodes
from harness.reports.stats import cluster_bootstrap_stat
from harness.sampling.backends import OneCallAtATime
from harness.sampling.generation import derive_seed, prefill
from harness.sampling.prompting import chat_prompt_ids

STUDENT, TASK, QUESTIONS, SEED = "smollm2-135m", "boolq", 4, 0
SETTINGS = Settings(rollouts=4, temperature=1.0, nodes_per_window=1, top_k=4, continuations=2)


@dataclasses.dataclass
class Tally:
    nodes: int = 0
    informative: int = 0
    tokens: int = 0  # branch-continuation tokens generated
    seconds: float = 0.0
    positions: list[int] = dataclasses.field(default_factory=list)
    rows: list[tuple[int, bool, int]] = dataclasses.field(default_factory=list)  # (rollout, informative, tokens)

    def per_1k(self) -> float:
        return 1000.0 * self.informative / self.tokens if self.tokens else float("nan")


@dataclasses.dataclass
class SampledRollout:
    """One shared rollout: its question, prompt, tokens, p at every position and the KV cache of prompt + response."""

    question: object
    prompt_ids: list[int]
    rollout: Rollout
    logits: torch.Tensor  # [n, V], row i is the distribution y_i was sampled from
    priority: list[float]  # student entropy, NaN where the logits are not finite (never a node)
    cache: object


@pytest.fixture(scope="module")
def setup():
    data_dir = local_data(TASK)
    student = local_student(STUDENT)
    task = resolve_task(TASK)
    questions = list(task.load(data_dir, QUESTIONS))
    who = Participants(task=task, student=student, student_name=STUDENT, teachers=(), losses=(), seed=SEED)
    return who, questions


def _sample(who: Participants, questions, max_new: int) -> tuple[list[SampledRollout], int]:
    """G rollouts per question, seeded as the diagnostic seeds them, graded; then one pass over each."""
    student = who.student
    shared, rollout_tokens = [], 0
    for question in questions:
        prompt_ids = chat_prompt_ids(student.tokenizer, question.prompt)
        rows = sample_rollouts(question, who, SETTINGS, max_new, prompt_ids)  # the diagnostic's own
        rollout_tokens += sum(row["response_tokens"] for row in rows)
        for rollout in rollouts_of(rows):
            if not rollout.tokens:
                continue
            y = list(rollout.tokens)
            cache, logits = prefill(student, prompt_ids + y, logits_to_keep=len(y) + 1)
            logits = logits[: len(y)]
            finite = torch.isfinite(logits).all(dim=-1).cpu()
            priority = torch.where(finite, entropy_rows(logits).cpu(), torch.nan).tolist()
            shared.append(SampledRollout(question, prompt_ids, rollout, logits, priority, cache))
    return shared, rollout_tokens


class CountingBackend(OneCallAtATime):
    """The harness's own backend, unchanged, remembering the length of each continuation of its last call (so a
    call's generated tokens can be split by node: ``branch_nodes`` asks for them node by node, support token by
    support token, M each)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.lengths = inner, inner.name, []

    def rollouts(self, *args, **kwargs):
        return self.inner.rollouts(*args, **kwargs)

    def continuations(self, *args, **kwargs):
        generated = self.inner.continuations(*args, **kwargs)
        self.lengths = [len(g.tokens) for g in generated]
        return generated


def _branch(who: Participants, item: SampledRollout, positions: Sequence[int], max_new: int,
            seed: int) -> list[tuple[int, bool, int]]:
    """Support, forced continuations, S_hat and informativeness of ``positions`` of one rollout, in one call.

    Returns per node (position, informative, continuation tokens generated for it).
    """
    y = item.rollout.tokens
    nodes = []
    for position in positions:
        logp = torch.log_softmax(item.logits[position].double(), dim=-1).cpu()
        nodes.append((position, support_tokens(logp, y[position], SETTINGS.top_k, [], MIN_SUPPORT_PROB)))
    counter = CountingBackend(who.sampler)
    work = QuestionWork(item.question, item.prompt_ids, (), dataclasses.replace(who, seed=seed, backend=counter),
                        SETTINGS, max_new)
    (counts,), generated = branch_nodes(work, [(item.rollout, item.cache, nodes)])
    assert sum(counter.lengths) == generated
    per_node, start = [], 0
    for (position, support), node in zip(nodes, counts):
        outcome = SuccessCounts.of(node, item.rollout.correct)  # METHOD: the rollout is one more trial
        rows = len(support) * SETTINGS.continuations
        per_node.append((position, is_informative(success_rates(outcome.correct, outcome.trials)),
                         sum(counter.lengths[start:start + rows])))
        start += rows
    return per_node


def _count(tally: Tally, per_node: Sequence[tuple[int, bool, int]], rollout_index: int) -> None:
    for position, informative, tokens in per_node:
        tally.nodes += 1
        tally.informative += int(informative)
        tally.tokens += tokens
        tally.positions.append(position)
        tally.rows.append((rollout_index, bool(informative), tokens))


def _ratio_interval(targeted: Tally, uniform: Tally):
    """95% percentile interval of the ratio by a bootstrap over the 16 shared rollouts (the unit both strategies
    draw nodes from; a resampled rollout brings its targeted and its uniform nodes), via the harness's own
    ``cluster_bootstrap_stat``. With so few rollouts it is a rough guide to the ratio's uncertainty."""
    rows = [("t", *row) for row in targeted.rows] + [("u", *row) for row in uniform.rows]
    strategy = np.array([r[0] for r in rows])
    clusters = np.array([r[1] for r in rows])
    informative = np.array([r[2] for r in rows], dtype=float)
    tokens = np.array([r[3] for r in rows], dtype=float)

    def ratio(index: np.ndarray) -> float:
        t, u = index[strategy[index] == "t"], index[strategy[index] == "u"]
        rate_t = informative[t].sum() / max(tokens[t].sum(), 1.0)
        rate_u = informative[u].sum() / max(tokens[u].sum(), 1.0)
        return rate_t / rate_u if rate_u > 0 else float("nan")

    return cluster_bootstrap_stat(ratio, clusters, seed=SEED)


def _targeted(who: Participants, shared: list[SampledRollout], max_new: int) -> Tally:
    tally, start = Tally(), time.perf_counter()
    for index, item in enumerate(shared):  # all nodes of a rollout in one call, seeded as the diagnostic seeds them
        positions = [p for p, _ in select_nodes(item.priority, SETTINGS.nodes_per_window)]
        _count(tally, _branch(who, item, positions, max_new, who.seed), index)
    tally.seconds = time.perf_counter() - start
    return tally


def _uniform(who: Participants, shared: list[SampledRollout], max_new: int, budget: int,
             per_node_estimate: float) -> Tally:
    """Uniform nodes in a seeded round-robin order, counted until the budget is reached.

    Counting is node by node in that order (a node is added while the tokens so far are below the budget), but
    generation is batched: the next stretch of the order, sized from the targeted strategy's tokens per node, is
    generated one call per rollout, and nodes past the point where the budget is reached are discarded uncounted.
    """
    rng = np.random.default_rng(derive_seed(SEED, "uniform node order"))
    # a seeded random order of each rollout's (finite) positions: taking them in turn draws uniformly without
    # replacement; round robin over the rollouts, one new position per rollout per round
    orders = [[int(p) for p in rng.permutation(len(item.priority)) if item.priority[p] == item.priority[p]]
              for item in shared]
    sequence = [(index, order[depth]) for depth in range(max(map(len, orders), default=0))
                for index, order in enumerate(orders) if depth < len(order)]
    tally, start, taken, stretch = Tally(), time.perf_counter(), 0, 0
    while tally.tokens < budget and taken < len(sequence):
        remaining = budget - tally.tokens
        size = max(4, int(1.1 * remaining / per_node_estimate) + 1)
        chunk = sequence[taken:taken + size]
        results: dict[tuple[int, int], tuple[int, bool, int]] = {}
        for index in sorted({index for index, _ in chunk}):
            positions = [position for i, position in chunk if i == index]
            seed = derive_seed(SEED, "uniform", stretch, index)  # its own continuation stream per call
            for node in _branch(who, shared[index], positions, max_new, seed):
                results[(index, node[0])] = node
        stretch += 1
        for key in chunk:  # count in the order, stop at the budget
            if tally.tokens >= budget:
                break
            _count(tally, [results[key]], key[0])
            taken += 1
        per_node_estimate = max(tally.tokens, 1) / max(tally.nodes, 1)
    tally.seconds = time.perf_counter() - start
    return tally


def test_targeted_vs_uniform_nodes_at_equal_token_budget(benchmark, setup):
    who, questions = setup
    max_new = SETTINGS.max_new_tokens or who.task.max_new_tokens

    def compare():
        start = time.perf_counter()
        shared, rollout_tokens = _sample(who, questions, max_new)
        sampling_s = time.perf_counter() - start
        print(f"\nsampled {len(shared)} rollouts ({rollout_tokens} tokens) in {sampling_s:.0f} s", flush=True)
        targeted = _targeted(who, shared, max_new)
        print(f"targeted: {targeted.nodes} nodes, {targeted.tokens} tokens in {targeted.seconds:.0f} s", flush=True)
        uniform = _uniform(who, shared, max_new, targeted.tokens, targeted.tokens / max(targeted.nodes, 1))
        return shared, rollout_tokens, sampling_s, targeted, uniform

    shared, rollout_tokens, sampling_s, targeted, uniform = benchmark.pedantic(compare, rounds=1, iterations=1)
    lengths = [len(item.rollout.tokens) for item in shared]
    info = {
        "questions": len(questions), "rollouts": len(shared), "rollout_tokens": rollout_tokens,
        "rollout_len_median": float(np.median(lengths)), "rollout_len_max": max(lengths),
        "K": SETTINGS.top_k, "M": SETTINGS.continuations, "B": SETTINGS.nodes_per_window,
        "sampling_s": round(sampling_s, 1),
    }
    for name, tally in (("targeted", targeted), ("uniform", uniform)):
        info.update({f"{name}_informative": tally.informative, f"{name}_nodes": tally.nodes,
                     f"{name}_tokens": tally.tokens, f"{name}_per_1k": round(tally.per_1k(), 3),
                     f"{name}_mean_position": round(float(np.mean(tally.positions)), 1) if tally.positions else None,
                     f"{name}_s": round(tally.seconds, 1)})
    info["ratio"] = round(targeted.per_1k() / uniform.per_1k(), 2) if uniform.informative else float("inf")
    interval = _ratio_interval(targeted, uniform)
    info["ratio_ci95_rollout_bootstrap"] = [round(interval.lo, 2), round(interval.hi, 2)]
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))
