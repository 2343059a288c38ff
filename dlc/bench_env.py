"""What `dlc bench` records about the run and how it measures: the machine,
the versions, the load, the pinned thread count, the timing statistics and
the peak-memory sampler.

Peak memory is the resident set size (RSS, /proc/self/statm) sampled every
millisecond by a thread while a runtime's timed block runs, minus the RSS at
the start of the block: the memory that block added (activations, workspaces,
allocator growth), not the weights already loaded.  Where /proc is missing it
is reported as None."""
from __future__ import annotations

import datetime
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

IQR_WARN = 0.10          # warn when IQR > 10% of the median
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "sve")


# --------------------------------------------------------------------------- machine and versions
def cpu_info() -> dict:
    """CPU model, logical cores and the ISA flags that matter for kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                model = val.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(val.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "machine": platform.machine(),
            "isa": [f for f in _ISA_FLAGS if f in flags]}


def gpu_info() -> list[str]:
    try:
        import torch
        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:   # a broken CUDA install is "no GPU" here, not a failed benchmark
        pass
    return []


def versions() -> dict:
    from ._version import __version__
    out = {"dlc": __version__, "numpy": np.__version__, "python": platform.python_version()}
    for name, mod in (("torch", "torch"), ("tvm", "tvm"), ("onnxruntime", "onnxruntime")):
        try:
            out[name] = __import__(mod).__version__
        except Exception:   # not installed: recorded as None
            out[name] = None
    return out


def machine_record() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_info(), "gpu": gpu_info(), "versions": versions(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_start": list(load) if load else None}


# --------------------------------------------------------------------------- threads
def pin_threads(threads: int | None) -> dict:
    """Pin every runtime's thread pool to `threads` (None: cores) and say how
    each was pinned.  TVM reads TVM_NUM_THREADS when its pool starts, so the
    variable is set before TVM runs anything; NumPy's BLAS is pinned through
    threadpoolctl when it is installed, else through the OpenBLAS/MKL/OMP
    variables, which only take effect if set before NumPy was imported."""
    t = int(threads or os.cpu_count() or 1)
    how = {"threads": t}
    for var in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(t)
    how["tvm"] = "TVM_NUM_THREADS"
    try:
        import tvm
        tvm.get_global_func("runtime.config_threadpool")(0, t)   # a pool already started follows too
        how["tvm"] += " + runtime.config_threadpool"
    except Exception:   # TVM absent, or a build without the hook: the variable alone
        pass
    try:
        import torch
        torch.set_num_threads(t)
        how["torch"] = "torch.set_num_threads"
    except ImportError:
        pass
    how["onnxruntime"] = "SessionOptions.intra_op_num_threads"
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(t)
        how["numpy_blas"] = "threadpoolctl"
    except ImportError:
        how["numpy_blas"] = _pin_openblas(t)
    return how


_OPENBLAS_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_",
                     "scipy_openblas_set_num_threads")


def _pin_openblas(t: int) -> str:
    """Without threadpoolctl: call the set_num_threads of every OpenBLAS the
    process has loaded (NumPy's wheel bundles one), found in /proc/self/maps."""
    import ctypes
    try:
        libs = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                if "openblas" in line.lower() and line.split()[-1].startswith("/")}
    except OSError:
        libs = set()
    done = []
    for path in sorted(libs):
        lib = ctypes.CDLL(path)
        for sym in _OPENBLAS_SETTERS:
            if hasattr(lib, sym):
                getattr(lib, sym)(ctypes.c_int(t))
                done.append(f"{Path(path).name}:{sym}")
                break
    if done:
        return "ctypes " + ", ".join(done)
    return "environment variables only (threadpoolctl not installed, no OpenBLAS found: effective only before NumPy loads)"


# --------------------------------------------------------------------------- timing
def summarize(times_s: list[float]) -> dict:
    """Median, quartiles and IQR in milliseconds; `noisy` when IQR > 10% of the median."""
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    q1, med, q3 = (float(x) for x in np.percentile(ms, [25, 50, 75]))
    iqr = q3 - q1
    return {"median_ms": med, "q1_ms": q1, "q3_ms": q3, "iqr_ms": iqr, "min_ms": float(ms.min()),
            "repeat": int(ms.size), "noisy": bool(med > 0 and iqr > IQR_WARN * med)}


def time_calls(call, repeat: int, warmup: int) -> list[float]:
    """Seconds of each of `repeat` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


class PeakRSS:
    """Context manager: `.peak_bytes` = max RSS seen while inside minus RSS on entry."""

    def __init__(self, interval_s: float = 0.001):
        self.interval_s, self.peak_bytes = interval_s, None
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            r = _rss_bytes()
            if r is not None and r > self._max:
                self._max = r
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._start = _rss_bytes()
        self._max = self._start or 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        end = _rss_bytes()
        if self._start is not None:
            self.peak_bytes = max(self._max, end or 0) - self._start
        return False
