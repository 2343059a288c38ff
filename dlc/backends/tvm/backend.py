"""The TVM backend behind the backend protocol.

`compile` keeps every weight a runtime argument and the batch symbolic
(`training.TvmStepRunner`), which is what a training step needs; the forward
pass of a model (`run`) and `dlc bench` use the cached, weight-lifted compile
(`cache.compile_cached`), and `bench` can time a library on an RPC server."""
from __future__ import annotations

from ...errors import DlcError
from ..protocol import Backend


class TvmBackend(Backend):
    name = "tvm"
    summary = "TVM-compiled kernels"
    requires = "tvm"
    hint = "pip install 'dlc[tvm]'"

    def compile(self, graph, *, target: str = "cpu", bind: dict | None = None):
        from .training import TvmStepRunner
        return TvmStepRunner(graph, target, bind=bind)

    def run(self, graph, inputs, weights, *, seed=0, mode="eval", dtype=None, bind=None, module_graph=None):
        if dtype not in (None, "float32"):
            raise DlcError(f"the tvm backend runs float32 models as declared, not {dtype}", graph.span,
                           "drop --dtype")
        from .cache import compile_cached
        compiled, _ = compile_cached(graph, "cpu", bind=bind)
        outs = compiled.runner().set_weights(weights).run(inputs, seed=seed)
        updates = {k[len("update:"):]: v for k, v in outs.items() if k.startswith("update:")}
        return {k: v for k, v in outs.items() if not k.startswith("update:")}, updates

    def bench(self, graph, inputs, weights, *, repeat, warmup, seed=0, module_graph=None, target="cpu", arch=None,
              target_opts=(), rpc_addr=None, bind=None):
        from .rpc import bench_compiled
        return bench_compiled(graph, inputs, weights, target=target, arch=arch, target_opts=target_opts,
                              rpc_addr=rpc_addr, repeat=repeat, warmup=warmup, seed=seed)

    def bench_package_remote(self, path, inputs: dict, *, rpc_addr: str, repeat: int, seed: int = 0):
        """Seconds per call of a `.dlcpkg` run on a TVM RPC server."""
        from .rpc import run_package_remote
        _, times = run_package_remote(rpc_addr, path, inputs, repeat=repeat, seed=seed)
        return times


BACKEND = TvmBackend()
