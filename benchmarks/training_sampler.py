"""One process's training-sampler figures, printed as JSON: what ``benchmarks/test_bench_training.py`` runs in child
processes (OpenMP reads its waiting policy once, when torch loads, so spinning and sleeping threads need one process
each). Workload: ``opd validate``'s rollouts, 2 BoolQ training questions x 4 rollouts of ``smollm2-135m`` at T=1, a
cap of ``MAX_NEW`` tokens, sampled by ``harness.workflows.validate.sample_rollouts`` (the harness's transformers backend) and,
beside it in the same process, by the training loop's previous sampler (``generate_branches`` called directly), in
the order A-B-A on the same prompts and seeds.

    python benchmarks/training_sampler.py   # with the data at ../shared/data or $OPD_DATA_DIR
"""
from __future__ import annotations

import json
import os
import time

MAX_NEW = 16
QUESTIONS = slice(300, 302)  # BoolQ indices past any diagnostic/evaluation range the README suggests


def previous_sampler(lm, prompts, rollouts, max_new, seed_parts, is_final):
    """The training loop's sampler before it used the backend: per-prompt prefill, then generate_branches."""
    import torch

    from harness.sampling.generation import Branch, Decoding, derive_seed, generate_branches, prefill

    prefilled = [prefill(lm, ids) for ids in prompts]
    branches = [Branch(len(ids), None, max_new, source=j, seed=derive_seed(*seed_parts[j], g))
                for j, ids in enumerate(prompts) for g in range(rollouts)]
    generated = generate_branches(lm, [c for c, _ in prefilled], branches, Decoding(1.0, is_final=is_final),
                                  first_logits=torch.stack([logits[-1] for _, logits in prefilled]))
    return [generated[j * rollouts:(j + 1) * rollouts] for j in range(len(prompts))]


def main() -> dict:
    import torch

    from harness.api.data import resolve_data_dir
    from harness.api.task import resolve_task
    from harness.sampling.models import load_model
    from harness.sampling.prompting import chat_prompt_ids
    from harness.workflows.plugins import load_all
    from harness.workflows.validate import sample_rollouts, training_copy

    load_all([])
    lm = training_copy(load_model("smollm2-135m", "cpu"))
    task = resolve_task("boolq")
    questions = list(task.load(resolve_data_dir(None), QUESTIONS.stop))[QUESTIONS]
    prompts = [chat_prompt_ids(lm.tokenizer, q.prompt) for q in questions]
    parts = [(0, "validate rollouts", 0, q.id) for q in questions]
    figures, tokens = [], []
    for label, sampler in (("A previous", previous_sampler), ("B backend", sample_rollouts),
                           ("A previous", previous_sampler)):
        started = time.perf_counter()
        groups = sampler(lm, prompts, 4, MAX_NEW, parts, task.answer_is_final)
        seconds = time.perf_counter() - started
        tokens.append([list(g.tokens) for group in groups for g in group])
        count = sum(map(len, tokens[-1]))
        figures.append({"sampler": label, "seconds": round(seconds, 2), "tokens": count,
                        "tokens_per_s": round(count / seconds, 2)})
    return {"wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0], "runs": figures,
            "same_tokens": tokens[0] == tokens[1] == tokens[2]}


if __name__ == "__main__":
    print(json.dumps(main()))
