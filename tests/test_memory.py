"""The allocator setting of CPU training (sigmarec/memory.py): after it, a large tensor freed and allocated again
reuses pages already mapped instead of page-faulting them in afresh. Measured in a child process, since the setting
is process-wide."""

import subprocess
import sys

import pytest

CHILD = """
import resource, sys, torch
from sigmarec.memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "on" else None
x = torch.ones(16 * 2**20)  # 64 MB, above glibc's largest mmap threshold
del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(12 * 2**20)  # 48 MB: fits in the freed block (the same size would not, after posix_memalign's padding)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    applied, on = faults("on")
    if applied != "True":
        pytest.skip("the C library is not glibc: the setting is a no-op here")
    _, off = faults("off")
    assert off > 8_000  # 48 MB of fresh 4 KB pages (~12k faults; fewer with huge pages)
    assert on < off / 10
