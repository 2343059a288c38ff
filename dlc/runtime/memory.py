"""Memory: how much this process may still allocate, and random inputs drawn
without a float64 detour.

`available_bytes` is what a run may use before the kernel's OOM killer or a
`MemoryError` stops it: MemAvailable from /proc/meminfo, lowered by a cgroup
(v2) memory limit and by RLIMIT_AS; psutil where /proc is missing.
"""
from __future__ import annotations

import os
import resource

import numpy as np


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup v2 memory.max, if it has one."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            rel = next((ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")), None)
        if rel is None:
            return None
        base = os.path.join("/sys/fs/cgroup", rel.lstrip("/"))
        with open(os.path.join(base, "memory.max"), encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(base, "memory.current"), encoding="ascii") as f:
            used = int(f.read().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError, StopIteration):
        return None


def _rlimit_headroom() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return max(0, soft - used)


def available_bytes() -> int | None:
    """Memory this process can still allocate, or None when it cannot be told."""
    found = [b for b in (_meminfo_available(), _cgroup_headroom(), _rlimit_headroom()) if b is not None]
    return min(found) if found else None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def standard_normal(rng: np.random.Generator, shape, dtype, chunk: int = 1 << 16) -> np.ndarray:
    """Standard-normal draws into an array of `dtype`, with a bounded peak.

    The values are float64 draws rounded to `dtype`, exactly what
    `rng.standard_normal(shape).astype(dtype)` gives (NumPy's generator fills
    a request sample by sample, so drawing in chunks yields the same stream),
    but only `chunk` float64 values exist at a time: a float32 input no
    longer costs three times its size at its peak."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        return rng.standard_normal(shape)
    out = np.empty(shape, dtype=dt)
    flat = out.reshape(-1)
    for lo in range(0, flat.size, chunk):
        hi = min(lo + chunk, flat.size)
        flat[lo:hi] = rng.standard_normal(hi - lo)
    return out
