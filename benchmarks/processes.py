"""Helpers for benchmarks that run ``opd`` as separate processes: this checkout's code or the code of an earlier
commit (extracted with ``git archive``), alone or beside a competing process, with wall and CPU seconds.

A separate process is the only way to measure what a user gets: OpenMP reads its waiting policy once, when torch
is first imported, and the earlier commit's code must not share a Python process with this one.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the code path before the cost work (issue 12): the commit this branch started from
BASELINE_COMMIT = os.environ.get("OPD_BENCH_BASELINE", "d0591f6")


@dataclass(frozen=True)
class ProcessRun:
    """One finished ``opd run`` process: its wall and CPU seconds (every thread, user + system) and run.json."""

    wall_s: float
    cpu_s: float
    meta: dict

    @property
    def informative(self) -> int:
        return self.meta["counts"]["informative_nodes"]

    @property
    def tokens(self) -> int:
        return self.meta["counts"]["generated_tokens_this_session"]


def extract_commit(commit: str, target: Path) -> Path | None:
    """The source tree of ``commit`` under ``target`` (None when git or the commit is unavailable)."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit], check=True,
                                 capture_output=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def environment(**changes: str | None) -> dict[str, str]:
    """This process's environment with ``changes`` (None removes a variable). The benchmarks' own settings of the
    thread variables are dropped first, so a child starts as a user's fresh shell would."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def start(code_dir: Path, args: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen:
    """``python -m harness.cli.main run ARGS --out OUT --no-cache --quiet`` with ``code_dir`` as the working directory, so
    that its ``harness`` package (and plugins) are the ones imported."""
    command = [sys.executable, "-m", "harness.cli.main", "run", *args, "--out", str(out), "--no-cache", "--quiet"]
    return subprocess.Popen(command, cwd=code_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(process: subprocess.Popen, started: float, out: Path) -> ProcessRun:
    """Wait for ``process`` and return its seconds (wait4 gives this child's own CPU time) and run.json."""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"opd run failed ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
    return ProcessRun(wall, usage.ru_utime + usage.ru_stime, json.loads((out / "run.json").read_text()))


def run_alone(code_dir: Path, args: list[str], out: Path, env: dict[str, str]) -> ProcessRun:
    started = time.perf_counter()
    return finish(start(code_dir, args, out, env), started, out)


def run_beside(code_dir: Path, args: list[str], competitor_args: list[str], out: Path,
               env: dict[str, str]) -> ProcessRun:
    """``args`` timed while a competitor of the same kind (same code, ``competitor_args``, started first and still
    running when the timed run ends) keeps the CPUs busy; the competitor is then stopped."""
    competitor = start(code_dir, competitor_args, out.with_name(out.name + "-competitor"), env)
    try:
        time.sleep(5)  # the competitor is past its imports and loading the model: busy from the first second
        started = time.perf_counter()
        result = finish(start(code_dir, args, out, env), started, out)
        if competitor.poll() is not None:
            raise RuntimeError("the competitor finished before the timed run: give it a longer workload")
        return result
    finally:
        if competitor.poll() is None:
            os.killpg(competitor.pid, signal.SIGTERM)
            competitor.wait()
