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
        fmt = ""
        if _channels_last_pays(graph, args):
            mod = mod.to(memory_format=torch.channels_last)
            args = [a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 else a for a in args]
            fmt = "channels_last, "
        with torch.no_grad():
            times = time_calls(lambda: mod(*args), repeat, warmup)
        return times, {"where": f"eager, {fmt}{torch.get_num_threads()} threads"}

    def train_step(self, plan):
        if plan.grad == "autograd":
            from .training import AutogradStep
            return AutogradStep(plan)
        return super().train_step(plan) if plan.world == 1 else _no_ddp_symbolic()

    def launch(self, nproc: int, fn, *args):
        from .training import launch
        return launch(nproc, fn, *args)


# Measured (bench/bench_channels_last.py, docs/passes/layout.md): on this CPU,
# torch's channels_last convolutions beat NCHW for resnet18 and mobilenet_v2 at
# batch 32, while at batch 1 they were slower for resnet18; so only batches of
# at least this size run channels_last
CHANNELS_LAST_MIN_BATCH = 16


def _channels_last_pays(graph, args) -> bool:
    """A conv2d model fed a batch of 4-D images large enough for channels_last to measure faster."""
    if not any(n.op.name == "conv2d" for n in graph.walk()):
        return False
    return any(a.dim() == 4 and a.is_floating_point() and a.shape[0] >= CHANNELS_LAST_MIN_BATCH for a in args)


def _no_ddp_symbolic():
    raise DlcError("data-parallel training (--nproc, torchrun) uses autograd gradients",
                   hint="drop --grad symbolic")


BACKEND = TorchCodegenBackend()
