"""The process figures of benchmarks/scale.py: memory and CPU of a process tree from /proc,
and the CPU a step used, read off the samples taken while the run went."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tree_usage_counts_a_child_process_cpu_and_memory(scale):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.6\n"
            "while time.process_time() < end: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.time() + 20
        rss, cpu = scale.tree_usage(child.pid)
        while cpu < 0.5 and time.time() < deadline:
            time.sleep(0.1)
            rss, cpu = scale.tree_usage(child.pid)
        assert 0.5 <= cpu < 5
        assert rss > 1_000_000  # a Python interpreter is megabytes
        _, parent_cpu = scale.tree_usage(os.getpid())
        assert parent_cpu >= cpu  # the child is part of this process's tree
    finally:
        child.kill()
        child.wait()


def test_cpu_between_interpolates_the_samples(scale):
    run = scale.Timed(10.0, 12.0, 0, 0, ((100.0, 0.0), (102.0, 4.0), (104.0, 5.0)))
    assert run.cpu_between(100.0, 102.0) == pytest.approx(4.0)
    assert run.cpu_between(101.0, 103.0) == pytest.approx(2.0 + 0.5)
    # before the first and after the last sample the tree's CPU is taken as it was there
    assert run.cpu_between(90.0, 110.0) == pytest.approx(5.0)
    assert scale.Timed(1.0, 1.0, 0, 0).cpu_between(0.0, 1.0) == 0.0
