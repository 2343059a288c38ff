"""`tvm-cuda`: the TVM backend compiled for, and run on, the machine's NVIDIA GPU.

The same lowering as `tvm` (the graph through `compile_cached` with the `cuda`
target: docs/backends/tvm.md), with the weights and inputs copied to the GPU
and the outputs back.  It is a backend name of its own so that `dlc verify
--backends numpy,tvm-cuda` and `dlc bench --backends tvm-cuda` check and time
the GPU kernels against the same float64 reference as every other backend.
On a machine without a CUDA device (or a TVM without its CUDA runtime) it is
a one-line error, never a crash.
"""
from __future__ import annotations

from ...errors import DlcError
from .backend import TvmBackend


def cuda_device():
    """TVM's first CUDA device, or a DlcError saying why there is none."""
    import tvm
    try:
        dev = tvm.cuda(0)
        ok = bool(dev.exist)
    except Exception as e:  # noqa: BLE001 - a TVM built without CUDA raises here
        raise DlcError(f"the tvm-cuda backend cannot reach a GPU: {type(e).__name__}: {e}".splitlines()[0],
                       hint="run it on a machine with an NVIDIA GPU (bench/gpu_check.sh); --backends tvm here")
    if not ok:
        raise DlcError("the tvm-cuda backend needs an NVIDIA GPU, and this machine has none visible to TVM",
                       hint="run it on a machine with an NVIDIA GPU (bench/gpu_check.sh); --backends tvm here")
    return dev


def device_arch(dev) -> str | None:
    """The GPU's `sm_XY` (TVM reports its compute capability as "X.Y")."""
    try:
        return "sm_" + str(dev.compute_version).replace(".", "")
    except Exception:  # noqa: BLE001 - unknown: the target's default architecture
        return None


class TvmCudaBackend(TvmBackend):
    name = "tvm-cuda"
    summary = "TVM-compiled kernels on the NVIDIA GPU"

    def check_available(self) -> None:
        super().check_available()
        cuda_device()

    def compile(self, graph, *, target: str = "cuda", bind: dict | None = None):
        return super().compile(graph, target="cuda", bind=bind)

    def run(self, graph, inputs, weights, *, seed=0, mode="eval", dtype=None, bind=None, module_graph=None):
        if dtype not in (None, "float32"):
            raise DlcError(f"the tvm-cuda backend runs float32 models as declared, not {dtype}", graph.span,
                           "drop --dtype")
        from .cache import compile_cached
        dev = cuda_device()
        compiled, _ = compile_cached(graph, "cuda", bind=bind, arch=device_arch(dev))
        outs = compiled.runner(dev).set_weights(weights).run(inputs, seed=seed)
        updates = {k[len("update:"):]: v for k, v in outs.items() if k.startswith("update:")}
        return {k: v for k, v in outs.items() if not k.startswith("update:")}, updates

    def bench(self, graph, inputs, weights, *, repeat, warmup, seed=0, module_graph=None, target="cuda", arch=None,
              target_opts=(), rpc_addr=None, bind=None):
        from .cache import compile_cached
        from .target import parse_options
        if rpc_addr:
            return super().bench(graph, inputs, weights, repeat=repeat, warmup=warmup, seed=seed, target="cuda",
                                 arch=arch, target_opts=target_opts, rpc_addr=rpc_addr, bind=bind)
        dev = cuda_device()
        cm, hit = compile_cached(graph, "cuda", arch=arch or device_arch(dev), options=parse_options(target_opts))
        runner = cm.runner(dev).set_weights(weights)
        # TVM's time_evaluator times on the device and synchronises, so these are GPU times
        return runner.time(inputs, repeat=repeat, warmup=warmup, seed=seed), {"where": "cuda", "cache_hit": hit}


BACKEND = TvmCudaBackend()
