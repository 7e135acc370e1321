"""CPU threading: how many threads torch uses, and how its idle threads wait.

Two processes whose OpenMP threads spin while they wait starve each other: measured on 2 cores, a sampling call
that takes 14 s beside a busy process with ``OMP_WAIT_POLICY=PASSIVE`` took 36-145 s with the default (spinning)
policy. So the ``opd`` entry point sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set a policy) *before* the
first ``import torch``: the OpenMP runtime reads it once, when torch loads it. The thread count is taken from the
CPUs this process may actually run on (its affinity mask and, in a container, its cgroup CPU quota, counting
hyper-threads of one core once), or from ``--threads N`` / ``$OMP_NUM_THREADS``.

The thread count changes floating-point results on CPU (decoding with 1 and 2 threads samples different tokens
from the same seed), so the resolved count is part of every run fingerprint and reuse-cache key on CPU.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from harness.api.errors import OpdError

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"  # idle threads sleep instead of spinning: graceful beside other busy processes
THREADS_VARIABLE = "OMP_NUM_THREADS"
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CPU_TOPOLOGY = Path("/sys/devices/system/cpu")


class ThreadsError(OpdError, ValueError):
    """A thread count that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class ThreadPlan:
    """The thread count this process will use and where it came from (``--threads``, the environment, or the
    CPUs available), with the OpenMP waiting policy in force."""

    threads: int
    source: str  # "--threads" | "OMP_NUM_THREADS" | "available CPUs"
    wait_policy: str  # the OMP_WAIT_POLICY the OpenMP runtime was started with ("" when unset: spinning)


def set_wait_policy(environ: dict | None = None) -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless a policy is already set; returns the policy in force.

    Must run before the first ``import torch`` of the process to have any effect (the ``opd`` entry point calls it
    first thing). A user who wants spinning threads on a dedicated machine sets ``OMP_WAIT_POLICY=ACTIVE``.
    """
    environ = os.environ if environ is None else environ
    return environ.setdefault(WAIT_POLICY_VARIABLE, DEFAULT_WAIT_POLICY)


def threads_problem(threads: int | None) -> str | None:
    """What is wrong with a requested thread count (None: nothing), as a sentence saying what to pass instead."""
    if threads is not None and threads < 1:
        return (f"--threads must be a positive number of CPU threads (got {threads}); leave it out to use the "
                f"{available_cpus()} CPU(s) this process may run on")
    return None


def check_threads(threads: int | None) -> None:
    """Refuse a thread count below 1 (:class:`ThreadsError`)."""
    problem = threads_problem(threads)
    if problem:
        raise ThreadsError(problem + ".")


def plan_threads(requested: int | None, environ: dict | None = None) -> ThreadPlan:
    """The thread count to use: ``requested`` (``--threads``), else a valid ``$OMP_NUM_THREADS``, else
    :func:`available_cpus`."""
    environ = os.environ if environ is None else environ
    check_threads(requested)
    policy = environ.get(WAIT_POLICY_VARIABLE, "")
    if requested is not None:
        return ThreadPlan(requested, "--threads", policy)
    from_env = environ.get(THREADS_VARIABLE, "").split(",")[0].strip()  # OpenMP allows a nested list "4,2"
    if from_env.isdigit() and int(from_env) >= 1:
        return ThreadPlan(int(from_env), THREADS_VARIABLE, policy)
    return ThreadPlan(available_cpus(), "available CPUs", policy)


def apply_threads(requested: int | None = None) -> ThreadPlan:
    """Resolve the thread count and give it to torch (intra-op pool, and MKL through it); returns the plan."""
    import torch

    plan = plan_threads(requested)
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    return plan


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, hyper-thread siblings counted once, capped by a cgroup
    CPU quota (containers); at least 1."""
    cpus = _affinity()
    cores = _physical_cores(cpus)
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota is not None else cores)


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _physical_cores(cpus: set[int], topology: Path = _CPU_TOPOLOGY) -> int:
    """Distinct cores among ``cpus``: two hyper-threads of one core share its matmul units, and a second thread
    on the same core slows torch's matrix products down. Falls back to the CPU count when the topology is
    unreadable."""
    cores = set()
    for cpu in cpus:
        try:
            cores.add((topology / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


def cgroup_cpu_quota(root: Path = _CGROUP_ROOT) -> int | None:
    """The CPU quota of this process's cgroup, rounded up to whole CPUs (``docker --cpus 2`` gives 2), or None
    when there is none or it cannot be read. cgroup v2 (``cpu.max``) first, then v1 (``cpu.cfs_quota_us``)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        return None
