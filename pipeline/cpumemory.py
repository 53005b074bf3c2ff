"""Keep freed memory inside the process, for the U-Net on a CPU.

Every forward pass frees its activations and allocates them again.  glibc's
malloc hands big freed blocks back to the kernel (munmap, heap trimming), and
the next forward page-faults every one of those pages in again, zeroed.  On the
2-core x86-64 machine we benchmark on, that was 30% of the model's time spent in
the kernel: `python -m benchmarks.model` gave 0.55 output Mpx/s, and 0.86 with
these settings (about 130 MB more resident memory).  The PyTorch CPU tuning
guide points at tcmalloc or jemalloc for the same reason; glibc's own knobs need
no preloaded library.

glibc caps the mmap threshold at 32 MB, and a 736 px tile of unet-small has
35 and 69 MB activations (736² x 16 or 32 channels x 4 bytes): with the threshold alone,
those were still mmapped and faulted in again every forward (17,000 page faults
and 40 ms of kernel time a forward here).  So mmap is turned off altogether:
every block comes from the heap, where a freed one waits for the next forward.
glibc still falls back on mmap where the heap cannot grow.

Linux with glibc only; elsewhere (macOS, musl) this changes nothing.
"""

from __future__ import annotations

import ctypes
import platform

# Blocks up to this size come from the heap, not from mmap (glibc's largest
# allowed value on 64-bit: bigger would be refused).
MMAP_THRESHOLD = 32 << 20
# How many blocks glibc may mmap: none, so that blocks above the threshold come from the heap too.
MMAP_MAX = 0
# Grow the heap in steps this much larger than asked, so that a forward rarely
# has to move the heap's top.
TOP_PAD = 256 << 20
# Give freed memory back to the kernel only when this much is free at the heap's top.
TRIM_THRESHOLD = 1 << 30

# (mallopt(3) parameter from glibc's malloc.h, the environment variable glibc reads at start, value)
_SETTINGS = (
    (-3, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),
    (-4, "MALLOC_MMAP_MAX_", MMAP_MAX),
    (-2, "MALLOC_TOP_PAD_", TOP_PAD),
    (-1, "MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD),
    # One arena: a thread's own arena grows and shrinks by itself, untuned (Ray runs the
    # model in a thread of the actor, so this is where the pipeline's forwards allocate).
    (-8, "MALLOC_ARENA_MAX", 1),
)


def malloc_env() -> dict[str, str]:
    """The same settings as environment variables, for a process about to start (a Ray actor).

    glibc reads them before the first allocation, so they reach every thread's
    allocations, which `keep_freed_memory` (called once threads exist) cannot.
    """
    return {name: str(value) for _, name, value in _SETTINGS}


def keep_freed_memory() -> bool:
    """Tell this process's glibc malloc to keep freed memory for reuse; True where it took every setting."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, _, value in _SETTINGS)
