"""``lm_eval:<task>``: any ``generate_until`` task of EleutherAI's lm-evaluation-harness, as a harness task.

The task comes from lm-eval's own registry (``lm_eval.tasks.TaskManager``), extended by user YAML directories
given as ``include_paths`` (``--include-path``) and then those in ``$OPD_LM_EVAL_INCLUDE_PATH`` (``os.pathsep``-separated). Its
pieces map onto the :class:`~harness.api.task.Task` protocol as follows:

* prompt: the task's ``fewshot_context`` (description, ``num_fewshot`` examples and ``doc_to_text``) as plain text,
  which the harness then wraps in the student's chat template like any other prompt;
* gold: ``doc_to_target`` (through ``doc_to_choice`` where the task has choices);
* grade: the response is cut at the task's ``until`` strings, passed through the task's first filter pipeline, and
  scored by the task's own ``process_results``; correct iff its primary (first) metric is a perfect score (1.0);
* ``max_new_tokens``: ``generation_kwargs.max_gen_toks`` (lm-eval's default 256 otherwise). Other generation
  kwargs (temperature, do_sample) are ignored: the harness chooses how to sample.

Datasets come from the task's own ``dataset_path`` (the hub, or local files for ``dataset_path: json``), so
``--data-dir`` does not apply. lm-eval is imported only when such a task is resolved: it is slow to import, and
indexing its ~200 built-in task folders takes ~20 s, so task managers and built tasks are cached per process.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.api.data import DataError
from harness.api.registry import RegistryError
from harness.api.task import Grade, NoTrainSplit, Question, register_task

INCLUDE_PATH_ENV = "OPD_LM_EVAL_INCLUDE_PATH"
# lm-eval's HF backend generates this many tokens when a task sets no max_gen_toks
DEFAULT_MAX_GEN_TOKS = 256


class LmEvalTaskError(RegistryError):
    """An ``lm_eval:<name>`` spec that names no usable task; the message says what to pick instead."""


def env_include_paths() -> tuple[str, ...]:
    """The user YAML directories from ``$OPD_LM_EVAL_INCLUDE_PATH`` (empty entries dropped)."""
    return tuple(p for p in os.environ.get(INCLUDE_PATH_ENV, "").split(os.pathsep) if p.strip())


@lru_cache(maxsize=None)
def _task_manager(paths: tuple[str, ...], include_defaults: bool):
    from lm_eval.tasks import TaskManager

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise LmEvalTaskError(
            f"{INCLUDE_PATH_ENV} (or --include-path) names {', '.join(missing)}, which does not exist. Point it at "
            f"directories holding lm-eval task YAML files, separated by {os.pathsep!r}."
        )
    return TaskManager(include_path=list(paths) or None, include_defaults=include_defaults)


def _find_manager(name: str, paths: tuple[str, ...]):
    """A task manager that knows ``name``. User directories are indexed alone first: indexing them takes well
    under a second, while adding lm-eval's built-in tasks costs ~20 s, needed only for built-in names."""
    if paths:
        local = _task_manager(paths, include_defaults=False)
        if name in local.all_tasks:
            return local
    manager = _task_manager(paths, include_defaults=True)
    if name not in manager.all_tasks:
        close = difflib.get_close_matches(name, manager.all_subtasks, n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise LmEvalTaskError(
            f"lm-eval has no task {name!r}.{hint} Built-in names are listed by `lm-eval ls tasks`; for your own YAML "
            f"tasks set {INCLUDE_PATH_ENV} (or pass --include-path) to their directory."
        )
    return manager


@lru_cache(maxsize=None)
def _build_lm_eval_task(name: str, paths: tuple[str, ...]) -> Any:
    """The lm-eval ``Task`` object for ``name`` (built once: building it loads its dataset)."""
    manager = _find_manager(name, paths)
    try:
        built = manager.load([name])["tasks"]
    except (FileNotFoundError, ConnectionError, OSError) as error:
        raise DataError(
            f"lm-eval task {name!r} could not load its dataset ({type(error).__name__}: {error}). Hub datasets need "
            f"network access or a warm Hugging Face cache; a local YAML task can use `dataset_path: json` with "
            f"`dataset_kwargs: {{data_files: ...}}`."
        ) from error
    if len(built) != 1:
        subtasks = sorted(built)
        shown = ", ".join(subtasks[:8]) + (", ..." if len(subtasks) > 8 else "")
        raise LmEvalTaskError(
            f"lm_eval:{name} is a group of {len(subtasks)} tasks ({shown}); name one task, e.g. "
            f"lm_eval:{subtasks[0]}."
        )
    task = next(iter(built.values()))
    if task.OUTPUT_TYPE != "generate_until":
        raise LmEvalTaskError(
            f"lm_eval:{name} has output_type {task.OUTPUT_TYPE!r}; only generate_until tasks can be used, since the "
            f"harness grades free-form responses (loglikelihood and multiple_choice tasks score the model's "
            f"probabilities of fixed continuations instead). Pick a generative variant (often named *_generative "
            f"or *_cot), or write a YAML task with output_type: generate_until."
        )
    return task


def _gold_text(task: Any, doc: Mapping[str, Any]) -> str:
    target = task.doc_to_target(doc)
    if task.config.doc_to_choice is not None:  # lm-eval's convention: the target then indexes the choices
        target = task.doc_to_choice(doc)[target]
    if isinstance(target, list):  # multiple acceptable targets: the first is the canonical one
        target = target[0]
    return str(target)


@dataclass(frozen=True)
class LmEvalTask(NoTrainSplit):
    """One lm-eval ``generate_until`` task behind the harness's Task protocol."""

    task_name: str
    lm_task: Any = field(repr=False, compare=False)
    name: str = ""
    description: str = ""
    max_new_tokens: int = DEFAULT_MAX_GEN_TOKS

    @property
    def stop_strings(self) -> tuple[str, ...]:
        until = (self.lm_task.config.generation_kwargs or {}).get("until") or ()
        return (until,) if isinstance(until, str) else tuple(until)

    def load(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question]:
        """The task's evaluation docs (its test split, else validation); ``data_dir`` is not used (see module doc)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        num_fewshot = int(self.lm_task.config.num_fewshot or 0)
        questions = []
        for index, doc in enumerate(self.lm_task.eval_docs):
            if limit is not None and index >= limit:
                break
            prompt = self.lm_task.fewshot_context(doc, num_fewshot=num_fewshot)
            if not isinstance(prompt, str):
                raise LmEvalTaskError(
                    f"lm_eval:{self.task_name} builds several prompts per document (a multiple-input task); "
                    f"only tasks with one prompt per document are supported."
                )
            gold = _gold_text(self.lm_task, doc)
            questions.append(Question(
                id=f"{self.task_name}-{index}", prompt=prompt, gold=gold, demonstration=gold,
                meta={"lm_eval_task": self.task_name, "index": index, "doc": dict(doc)},
            ))
        return questions

    def final_answer_text(self, response: str) -> str:
        """What lm-eval would score: the response up to the first stop string.

        Leading whitespace is dropped first: lm-eval's completion prompts end mid-line ("A:") so the model's " 4"
        carries the target delimiter, while a chat response starts a fresh turn where leading blanks mean nothing.
        """
        text = response.lstrip()
        for stop in self.stop_strings:
            if stop:
                text = text.split(stop, 1)[0]
        return text.strip()

    def grade(self, question: Question, response: str) -> Grade:
        doc = question.meta["doc"]
        filtered = self.final_answer_text(response)
        # the first filter pipeline is lm-eval's primary one (e.g. gsm8k's "strict-match" before "flexible-extract")
        pipeline = self.lm_task._filters[0]
        resps: Any = [[filtered]]
        for make_filter in pipeline.filters:
            resps = make_filter().apply(resps, [doc])
        filtered = list(resps)[0]
        scores = self.lm_task.process_results(doc, [filtered])
        metrics = [m for m in self.lm_task._metric_fn_list if m in scores] or list(scores)
        primary = scores[metrics[0]]
        correct = bool(primary is True or (not isinstance(primary, bool) and float(primary) == 1.0))
        shown = filtered[0] if isinstance(filtered, list) and filtered else filtered  # filters without take_first
        extracted = shown if isinstance(shown, str) and shown else None
        return Grade(extracted=extracted, correct=correct)

    def answer_is_final(self, response: str) -> bool:
        """lm-eval stops generating at the task's ``until`` strings; so can we."""
        text = response.lstrip()
        return any(stop and stop in text for stop in self.stop_strings)


@register_task("lm_eval", "Any generate_until task of lm-evaluation-harness: lm_eval:<task name>")
def lm_eval_task(argument: str | None = None, include_paths: Sequence[str] = ()) -> LmEvalTask:
    """Any generate_until task of lm-evaluation-harness: lm_eval:<task name> (user YAMLs: --include-path)."""
    name = (argument or "").strip()
    if not name:
        raise LmEvalTaskError(
            "`lm_eval:` needs an lm-eval task name, e.g. lm_eval:gsm8k, or the `task:` name of your own YAML file "
            f"(with {INCLUDE_PATH_ENV} or --include-path pointing at its directory)."
        )
    task = _build_lm_eval_task(name, (*include_paths, *env_include_paths()))  # --include-path first
    max_gen = (task.config.generation_kwargs or {}).get("max_gen_toks")
    return LmEvalTask(
        task_name=name,
        lm_task=task,
        name=f"lm_eval:{name}",
        description=f"lm-eval task {name} (generate_until)",
        max_new_tokens=int(max_gen) if max_gen else DEFAULT_MAX_GEN_TOKS,
    )
