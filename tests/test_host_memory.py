"""host_memory.keep_freed_memory: a freed block's pages serve the next allocation instead of fresh ones."""

import os
import resource
import subprocess
import sys

import pytest

# Allocates, fills and frees a block of the size of XLA:CPU's larger buffers twice, as consecutive runs of a program
# do; prints the page faults of the second fill.
SCRIPT = """
import ctypes, resource, sys
from vidstyleode_jax import host_memory
if sys.argv[1] == "keep":
  assert host_memory.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = int(sys.argv[2])
for run in range(2):
  block = libc.malloc(size)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  ctypes.memset(block, 1, size)
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
  libc.free(block)
print(faults)
"""
BLOCK_BYTES = 64 << 20
BLOCK_PAGES = BLOCK_BYTES // resource.getpagesize()


def page_faults_of_second_fill(mode):
  result = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(BLOCK_BYTES)], capture_output=True, text=True,
                          check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_a_kept_block_takes_no_page_faults_where_the_default_takes_one_per_page():
  default, kept = page_faults_of_second_fill("default"), page_faults_of_second_fill("keep")
  assert default > BLOCK_PAGES // 2, default  # the check below can fail: glibc's default maps fresh pages
  assert kept < BLOCK_PAGES // 20, kept
