"""cnnlab.allocator: freed buffers are reused without faulting their pages in again."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from cnnlab.allocator import keep_freed_memory

applied = keep_freed_memory() if sys.argv[1] == "keep" else False
np.ones(2**23).sum()  # 64 MiB: above glibc's largest mmap threshold (32 MiB)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):  # what a training step does: the same large buffer, again and again
    np.ones(2**23).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, env: dict | None = None) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_reused_without_page_faults():
    applied, default_faults = _faults("default")
    # each unmapped buffer faults in again: 16,384 pages of 4 KiB, or 32 huge pages of 2 MiB
    assert applied == "False" and default_faults >= 5 * 32
    applied, kept_faults = _faults("keep")
    assert applied == "True" and kept_faults * 20 < default_faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_environment_turns_it_off():
    applied, faults = _faults("keep", env={**os.environ, "CNNLAB_MALLOC": "default"})
    assert applied == "False" and faults >= 5 * 32
