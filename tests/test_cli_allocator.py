"""The CLI keeps large freed buffers for reuse (glibc's malloc thresholds), so that writing frames does
not fault in fresh zeroed pages for every photo; the library itself leaves the allocator alone."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_FAULTS = """
import ctypes, resource, sys
import alignimate.cli as cli
import alignimate.pipeline.render  # the library: importing it must not change the allocator
if sys.argv[1] == "tuned":
    cli._keep_large_buffers()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 40 << 20  # a 12 MP frame and then some, allocated as OpenCV allocates one: plain malloc
def frame():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    frame()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True, timeout=120
    )
    return int(result.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists only in glibc's malloc")
def test_freed_frames_are_reused_without_new_page_faults() -> None:
    pages = (40 << 20) // 4096
    untouched = _page_faults("default")  # the CLI module and the library imported, main() not run
    tuned = _page_faults("tuned")
    # Each fresh 40 MB mapping faults in every page; a reused heap block faults in almost none.
    assert untouched > 4 * pages, untouched
    assert tuned < pages // 10, tuned
