"""CPU threading (harness.sampling.threads): the thread count from --threads, $OMP_NUM_THREADS or the CPUs this process may
use (affinity, hyper-threads counted once, cgroup quota), and the OpenMP waiting policy set before torch loads."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from harness.sampling.threads import (
    ThreadsError,
    _physical_cores,
    available_cpus,
    cgroup_cpu_quota,
    check_threads,
    plan_threads,
    set_wait_policy,
)
from tests.helpers import ROOT



def test_requested_threads_win_then_the_environment_then_the_cpus_available():
    assert plan_threads(3, {"OMP_NUM_THREADS": "5"}).threads == 3
    plan = plan_threads(None, {"OMP_NUM_THREADS": "5", "OMP_WAIT_POLICY": "PASSIVE"})
    assert (plan.threads, plan.source, plan.wait_policy) == (5, "OMP_NUM_THREADS", "PASSIVE")
    assert plan_threads(None, {"OMP_NUM_THREADS": "4,2"}).threads == 4  # OpenMP's nested list: the outer level
    for unusable in ("", "0", "many"):
        plan = plan_threads(None, {"OMP_NUM_THREADS": unusable})
        assert (plan.threads, plan.source) == (available_cpus(), "available CPUs")


def test_a_thread_count_below_one_is_refused_with_what_to_do():
    for bad in (0, -2):
        with pytest.raises(ThreadsError, match=r"--threads must be a positive number.*leave it out"):
            check_threads(bad)
    check_threads(None)
    check_threads(1)


def test_available_cpus_counts_the_affinity_mask():
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_hyper_thread_siblings_count_as_one_core(tmp_path):
    for cpu, siblings in {0: "0,4", 4: "0,4", 1: "1,5", 5: "1,5", 2: "2"}.items():
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    assert _physical_cores({0, 4, 1, 5, 2}, tmp_path) == 3
    assert _physical_cores({0, 1}, tmp_path) == 2
    assert _physical_cores({0, 7}, tmp_path) == 2  # cpu7 has no topology: fall back to counting CPUs


def test_cgroup_quota_rounds_up_to_whole_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 3  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_wait_policy_is_set_unless_the_user_chose_one():
    environ: dict[str, str] = {}
    assert set_wait_policy(environ) == "PASSIVE" and environ["OMP_WAIT_POLICY"] == "PASSIVE"
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert set_wait_policy(environ) == "ACTIVE" and environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_entry_point_sets_the_wait_policy_before_torch_is_imported():
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: record the variable at the moment of the first
    ``import torch`` inside ``opd``'s own process."""
    script = textwrap.dedent("""
        import importlib.abc, os, sys
        seen = []
        class Watch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" and not seen:
                    seen.append(os.environ.get("OMP_WAIT_POLICY"))
                return None
        sys.meta_path.insert(0, Watch())
        from harness.cli.main import main
        assert "torch" not in sys.modules
        main(["list", "losses"])
        print("policy at torch import:", seen)
    """)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "policy at torch import: ['PASSIVE']" in out.stdout


def test_opd_run_with_zero_threads_stops_before_any_work(tmp_path, capsys):
    from harness.cli.main import main

    out = tmp_path / "run"
    code = main(["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
                 "--threads", "0", "--out", str(out)])
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 2 and "--threads must be a positive number of CPU threads (got 0)" in printed
    assert "Traceback" not in printed and not out.exists()


@pytest.fixture
def restore_torch_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_thread_count_used_on_cpu_is_part_of_the_run_fingerprint(tmp_path, restore_torch_threads):
    """On CPU the thread count changes the floating-point results of decoding, so the sampled tokens: a run made
    with one count is never resumed or extended with another (and the reuse cache keys differ)."""
    import json

    from harness.diagnostic.question import Settings
    from harness.workflows.runner import ConfigError, RunConfig, run

    def config(threads):
        return RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=1, device="cpu",
                         settings=Settings(rollouts=2, continuations=1, max_new_tokens=4), threads=threads)

    meta = run(config(1), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["threads"] == 1 and saved["threads_source"] == "--threads" and meta["threads"] == 1
    with pytest.raises(ConfigError, match="different configuration"):
        run(config(2), tmp_path / "out")
    run(config(1), tmp_path / "out")  # the same count: resumes (nothing left to do)
