"""The PyTorch backend behind the backend protocol.

A graph compiles to a generated torch function (`funcgen`); the forward pass
of a model and `dlc bench` run the `nn.Module` generated from the model's
module graph (`modgen`, `dlc.Model.module_graph()`), and a
training step runs either dlc's symbolic step graph or torch autograd on the
module, optionally data-parallel (`training.py`)."""
from __future__ import annotations

from ...errors import DlcError
from ..protocol import Backend, time_calls


class TorchCodegenBackend(Backend):
    name = "torch"
    summary = "generated PyTorch code"
    requires = "torch"
    hint = "pip install 'dlc[torch]'"
    grads = ("autograd", "symbolic")
    uses_module_graph = True

    def compile(self, graph, *, target: str = "cpu", bind: dict | None = None):
        if target not in ("cpu", None):
            raise DlcError(f"the torch backend runs on this CPU, not on '{target}'", hint="drop --target")
        from .training import TorchStepRunner
        return TorchStepRunner(graph)

    def run(self, graph, inputs, weights, *, seed=0, mode="eval", dtype=None, bind=None, module_graph=None):
        # the generated nn.Module, built from the model's module graph; without one,
        # `graph` itself as a generated function
        if module_graph is None:
            return super().run(graph, inputs, weights, seed=seed, mode=mode, dtype=dtype, bind=bind)
        from . import TorchBackend
        return TorchBackend.run(module_graph, inputs, weights, mode=mode, dtype=dtype), {}

    def bench(self, graph, inputs, weights, *, repeat, warmup, seed=0, module_graph=None, target="cpu", arch=None,
              target_opts=(), rpc_addr=None, bind=None):
        if rpc_addr:
            raise DlcError("--rpc runs TVM libraries only", hint="use --backend tvm")
        import numpy as np
        import torch
        from . import TorchBackend
        mod = TorchBackend.module(module_graph if module_graph is not None else graph, weights).eval()
        args = [torch.from_numpy(np.array(inputs[v.name], copy=True)) for v in graph.inputs]
        with torch.no_grad():
            times = time_calls(lambda: mod(*args), repeat, warmup)
        return times, {"where": f"eager, {torch.get_num_threads()} threads"}

    def train_step(self, plan):
        if plan.grad == "autograd":
            from .training import AutogradStep
            return AutogradStep(plan)
        return super().train_step(plan) if plan.world == 1 else _no_ddp_symbolic()

    def launch(self, nproc: int, fn, *args):
        from .training import launch
        return launch(nproc, fn, *args)


def _no_ddp_symbolic():
    raise DlcError("data-parallel training (--nproc, torchrun) uses autograd gradients",
                   hint="drop --grad symbolic")


BACKEND = TorchCodegenBackend()
