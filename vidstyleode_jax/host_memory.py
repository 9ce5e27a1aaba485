"""Host memory: freed blocks stay in the process instead of going back to the kernel.

XLA:CPU allocates a program's temporary and output buffers with malloc on every run and frees them after it: the
fashion trainable path's step (`python -m vidstyleode_jax.bench --part=trainable`) allocates about 0.9 GiB of
temporaries per run. glibc's malloc serves blocks that large with mmap and unmaps them at free, and it hands the top
of its heap back to the kernel past a threshold; either way the next run writes to fresh pages, which the kernel must
map and zero on first touch. On the 2-core CI host that step took about 241,550 page faults and 0.5-0.7 s of system
time per run. With the settings below it takes none, and 0.01-0.02 s of system time; its wall-clock time per step
was 9-19% lower in 5 of 6 A/B pairs of processes and 3% higher in one (the host's own speed drifts by as much), the
demo's full train step 9% and 17% lower in two pairs (docs/performance.md §1).

Every command that runs XLA programs (train, bench, evaluate, prepare, the applications and their UI, ablations)
calls `keep_freed_memory` first. The price is that the process keeps the largest heap it has had until it exits;
`VIDSTYLEODE_KEEP_FREED_MEMORY=0` in the environment leaves glibc's defaults. A process that also runs PyTorch's
programs between ours shares that one heap with them: there our step still page-faulted and ran slower, so bench
runs its PyTorch comparisons in a process of their own (torch_references.py) and leaves the defaults only with
--references_in_process.
On GPU and TPU the device buffers live in XLA's own allocator; there the setting only keeps the host's heap.
"""

import ctypes
import os
import sys

# mallopt parameters, as glibc's <malloc.h> numbers them, and the values set.
M_TRIM_THRESHOLD = -1  # free space at the heap's top kept before trimming: -1 is SIZE_MAX, never trim
M_MMAP_MAX = -4  # blocks served by their own mmap: none, every block comes from the heap
M_ARENA_MAX = -8  # arenas: one, so that every thread's blocks come from that one untrimmed heap
SETTINGS = ((M_TRIM_THRESHOLD, -1), (M_MMAP_MAX, 0), (M_ARENA_MAX, 1))
OPT_OUT = "VIDSTYLEODE_KEEP_FREED_MEMORY"  # "0" leaves glibc's defaults


def keep_freed_memory() -> bool:
  """Tells glibc's malloc to reuse freed memory rather than return it; False where the C library is not glibc or
  the environment opts out."""
  if os.environ.get(OPT_OUT) == "0" or not sys.platform.startswith("linux"):
    return False
  libc = ctypes.CDLL(None)
  if not hasattr(libc, "gnu_get_libc_version"):
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)
