"""What every benchmark here shares about timing: the machine's load and a steady memory allocator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def load_average() -> float:
    """The 1-minute load average (the machine may be shared); NaN where /proc is missing."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def steady_allocator() -> None:
    """Re-run the calling script once under fixed glibc malloc thresholds (Linux). Under glibc's dynamic mmap
    threshold a large tensor gets fresh pages from the kernel (page faults) or reuses freed memory depending on what
    ran before: the same plain forward of 4 batches of 64 at 64 px took 122 ms run back to back and 92 ms between
    P2P explain calls (at 224 px 497 and 258 ms), which moved every ratio by a quarter. With fixed thresholds every
    arm reuses memory."""
    if sys.platform.startswith("linux") and any(os.environ.get(k) != v for k, v in STEADY_MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_MALLOC})


def allocator_setting() -> str:
    """How malloc is set up for this run, for the report."""
    return f"malloc thresholds {os.environ.get('MALLOC_MMAP_THRESHOLD_', 'glibc default')}"
