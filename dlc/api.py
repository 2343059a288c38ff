"""The Python API: `dlc.load("model.dln")` and the `Model` it returns."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compiler.dims import Dim
from .compiler.types import TensorType
from .errors import DlcError, DlcLimitError, DlcNameError, DlcRuntimeError, DlcValueError
from .runtime.memory import standard_normal


@dataclass
class TensorSpec:
    name: str
    type: TensorType

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype.numpy_name


class Model:
    """A `.dln` model: checked, introspectable and runnable.

    >>> import dlc
    >>> m = dlc.load("specs/lenet5.dln")
    >>> m.info()["params"]
    61706
    """

    def __init__(self, path: str, name: str | None = None, bind: dict | None = None, text: str | None = None,
                 opt=None, include=()):
        from .compiler.passes import PipelineOptions
        from .frontend.blocks import elaborate_model
        # the optimisation pipeline every run, compile and bench of this model goes through
        self.opt = opt if opt is not None else PipelineOptions()
        self.pass_records: list = []
        self.pass_stats: dict = {}
        from .frontend.modules import load_module
        self.path = str(path)
        self.module = load_module(path, text, include=tuple(include or ()))   # include: import folders
        if name is None:
            if not self.module.models:
                raise DlcNameError(f"{path} defines no model", None, "add a `model Name(...) { ... }`")
            name = self.module.models[-1]
        self.name = name
        self.bind = dict(bind or {})
        from .frontend.blocks import check_bind_names
        check_bind_names(self.module, name, self.bind)
        self.graph = elaborate_model(self.module, name, "eval", self.bind)

    def _elaborate(self, mode: str = "eval", bind: dict | None = None):
        from .frontend.blocks import elaborate_model
        return elaborate_model(self.module, self.name, mode, {**self.bind, **(bind or {})}, use_examples=True)

    def module_graph(self):
        """The graph module code generation starts from (the torch backend's
        `generate_module`): the training graph, so that the module behaves as
        PyTorch modules do in both modes, symbolic in every dimension the
        parameters allow.  A model dlc cannot train (batch norm inside a scan
        cell) gives its eval graph, whose layers still follow train()/eval()."""
        from .frontend.blocks import elaborate_model
        mode = "train"
        try:
            g = elaborate_model(self.module, self.name, mode, dict(self.bind))
        except DlcError:
            mode = "eval"
            g = elaborate_model(self.module, self.name, mode, dict(self.bind))
        if any(p.type.symbols() for p in g.params):
            g = elaborate_model(self.module, self.name, mode, dict(self.bind), use_examples=True)
        return g

    # optimisation ----------------------------------------------------------
    def optimize(self, level: int = 2, passes=None, disable=(), precision: str = "fp32") -> "Model":
        """This model with another optimisation pipeline (`-O<level>`,
        `--passes`, `--disable-pass`); every run, gradient, compile and bench
        of the returned model goes through it.  An unknown pass name is a
        `DlcError` that lists the passes.

        >>> import dlc
        >>> m = dlc.load("specs/lenet5.dln").optimize(level=0)
        >>> m.opt.level
        0
        """
        import copy
        from .compiler.passes import PipelineOptions
        m = copy.copy(self)
        m.opt = PipelineOptions(level=level, passes=None if passes is None else tuple(passes),
                                disable=tuple(disable), precision=precision)
        m.pass_records = []
        return m

    def optimized(self, g, backend: str = "numpy", target: str = "cpu", bind: dict | None = None, after=None,
                  stop_after: str | None = None):
        """`g` (a graph of this model, changed in place) through the pipeline
        for `backend`; the passes' records go to `self.pass_records`."""
        from .compiler.passes import run_pipeline
        dims = {**{k: v for k, v in g.dims.items() if v is not None}, **(bind or {})}
        g, self.pass_records, ctx = run_pipeline(g, self.opt, backend=backend, target=target, dims=dims,
                                                 after=after, stop_after=stop_after)
        self.pass_stats = dict(ctx.stats)     # "pass.what" -> count, as each pass reported it
        return g

    def compiled_graph(self, mode: str = "eval", bind: dict | None = None, backend: str = "numpy",
                       target: str = "cpu", symbolic: bool = False):
        """The graph a backend receives: elaborated in `mode` (at the example
        sizes, or with its symbolic dimensions kept) and optimised."""
        g = self.symbolic_graph(mode) if symbolic else self._elaborate(mode, bind)
        return self.optimized(g, backend, target, bind)

    # introspection ---------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(v.name, v.type) for v in self.graph.inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(n, v.type) for n, v in zip(self.graph.output_names, self.graph.outputs)]

    @property
    def parameters(self) -> list[TensorSpec]:
        return [TensorSpec(p.name, p.type) for p in self.graph.params if p.kind == "param"]

    @property
    def buffers(self) -> list[TensorSpec]:
        return [TensorSpec(p.name, p.type) for p in self.graph.params if p.kind == "buffer"]

    def info(self, bind: dict | None = None, memory: bool = False) -> dict:
        """Parameter and MAC counts (at the example sizes) and per-layer rows;
        `memory`: also the memory plan and kernel count before and after the
        pipeline (`self.opt`), under "memory"."""
        from .compiler.analysis import layer_rows, total_macs
        g = self._elaborate("eval", bind)
        params = g.param_count()
        extra = {"memory": self.memory_report(bind)} if memory else {}
        return {**extra,
            "model": self.name,
            "file": self.path,
            "params": int(params),
            "buffers": int(sum(int(np.prod(p.type.shape)) for p in g.params if p.kind == "buffer")),
            "macs": int(total_macs(g)),
            "dims": {k: v for k, v in {**{k: v for k, v in self.graph.dims.items()}, **(bind or {})}.items()},
            "inputs": [{"name": v.name, "type": str(v.type)} for v in g.inputs],
            "outputs": [{"name": n, "type": str(v.type)} for n, v in zip(g.output_names, g.outputs)],
            "layers": [r.__dict__ for r in layer_rows(g)],
        }

    def memory_report(self, bind: dict | None = None, mode: str = "eval", backend: str = "numpy") -> dict:
        """The memory plan of the graph as elaborated (-O0) and after the
        pipeline: {"before": ..., "after": ..., "level": ...}, each a
        `compiler.memory_plan.summary` (bytes at the example sizes)."""
        from .backends.numpy.workspace import workspace_bytes
        from .compiler.memory_plan import summary
        before = self._elaborate(mode, bind)
        dims = {**{k: v for k, v in before.dims.items() if v is not None}, **(bind or {})}
        after = self.optimized(self._elaborate(mode, bind), backend, bind=bind)
        return {"level": self.opt.level, "passes": None if self.opt.passes is None else list(self.opt.passes),
                "before": summary(before, dims, workspace_bytes),
                "after": summary(after, dims, workspace_bytes)}

    # Jupyter: the summary table and the graph (dlc/notebook.py) -----------------
    def _repr_html_(self) -> str:
        from .notebook import repr_html
        return repr_html(self)

    def _repr_svg_(self) -> str | None:
        from .notebook import repr_svg
        return repr_svg(self)

    def _repr_markdown_(self) -> str:
        from .notebook import repr_markdown
        return repr_markdown(self)

    def __repr__(self) -> str:
        return f"<dlc.Model {self.name} from {self.path}>"

    def symbolic_graph(self, mode: str = "eval"):
        """The graph in `mode` with its symbolic dimensions kept (no example sizes)."""
        from .frontend.blocks import elaborate_model
        return elaborate_model(self.module, self.name, mode, self.bind)

    def ir(self, mode: str = "eval") -> str:
        from .frontend.blocks import elaborate_model
        return str(elaborate_model(self.module, self.name, mode, self.bind))

    # differentiation -----------------------------------------------------------
    def loss_spec(self, bind: dict | None = None):
        """The loss of this model's train section as IR (a
        `compiler.trainspec.LossSpec`), or None when no section declares one."""
        from .frontend.train import section_loss
        from .frontend.trainloss import loss_spec
        for t in self.module.trains:
            if t.model == self.name:
                expr, bindings = section_loss(t)
                if expr is not None:
                    return loss_spec(self.module, self.name, expr, {**self.bind, **(bind or {})}, bindings)
        return None

    def grad_graph(self, mode: str = "train", bind: dict | None = None, concrete: bool = False):
        """(graph with forward and backward, index of the first backward node).

        The loss is the train section's; without one, the sum of the first output.
        Outputs: the loss, then "grad:<param>" for every trainable parameter.
        """
        from .compiler.autodiff import grad
        from .compiler.builder import Builder
        from .compiler.training import build_loss
        from .frontend.blocks import elaborate_model
        b_all = {**self.bind, **(bind or {})}
        spec = self.loss_spec(bind)
        if spec is not None:
            g, loss, _ = build_loss(elaborate_model(self.module, self.name, mode, b_all), spec.graph(mode))
        else:
            g = elaborate_model(self.module, self.name, mode, b_all, use_examples=concrete)
            loss = Builder(g, g.span).op("sum", g.outputs[0], axis=None, keepdims=False)
        n_forward = len(g.nodes)
        params = g.trainable_params()
        grads = grad(g, loss, params, g.span)
        g.outputs = [loss] + [gr for gr in grads if gr is not None]
        g.output_names = ["loss"] + [f"grad:{p.name}" for p, gr in zip(params, grads) if gr is not None]
        from .compiler.clone import prune
        prune(g)
        return g, min(n_forward, len(g.nodes))

    def grad(self, inputs: dict | None = None, weights: dict | None = None, label=None, mode: str = "train",
             seed: int = 0, bind: dict | None = None, backend: str = "numpy") -> dict:
        """Loss and gradients: {"loss": float, "<param>": ndarray}, the gradient
        graph run on `backend` (default: the NumPy reference)."""
        from .backends import get_backend
        from .compiler.init import init_params
        runner = get_backend(backend)
        bind = dict(bind or {})
        if inputs:
            bind = {**_dims_from_inputs(self.graph, inputs), **bind}
        g, _ = self.grad_graph(mode, bind)
        env = {**{k: v for k, v in g.dims.items() if v is not None}, **bind}
        g = self.optimized(g, backend, bind=env)
        feed = dict(inputs or {})
        rand = self.random_inputs(seed, bind)
        for v in g.inputs:
            if v.name == "label":
                if label is None:
                    raise DlcValueError("this loss needs a label", g.span, "pass label=...")
                feed["label"] = np.asarray(label)
            elif v.name not in feed:
                feed[v.name] = rand[v.name]
        if weights is None:
            weights = init_params(g, seed, env)
        outs, _ = runner.compile(g, bind=env).run(feed, weights, seed)
        res = {"loss": float(outs["loss"])}
        for k, v in outs.items():
            if k.startswith("grad:"):
                res[k[5:]] = v
        return res

    # running -----------------------------------------------------------------
    def init_weights(self, seed: int = 0) -> dict[str, np.ndarray]:
        from .compiler.init import init_params
        return init_params(self._elaborate(), seed)

    def random_inputs(self, seed: int = 0, bind: dict | None = None, dtype=None) -> dict[str, np.ndarray]:
        g = self._elaborate("eval", bind)
        rng = np.random.default_rng(seed)
        out = {}
        for v in g.inputs:
            shape = tuple(int(d) for d in v.type.shape)
            dt = v.type.dtype
            if dt.is_float:
                storage = "float32" if dt.numpy_name == "bfloat16" else dt.numpy_name  # NumPy has no bf16
                out[v.name] = standard_normal(rng, shape, dtype or storage)
            elif dt.is_int:
                from .compiler.analysis import index_bound
                hi = index_bound(g, v)
                out[v.name] = rng.integers(0, hi, size=shape).astype(dt.numpy_name)
            else:
                out[v.name] = rng.random(shape) < 0.5
        return out

    def run(self, inputs: dict | None = None, weights: dict | None = None, backend: str = "numpy",
            bind: dict | None = None, seed: int = 0, mode: str = "eval", dtype: str | None = None):
        """Forward pass.  Missing inputs/weights are drawn from `seed`.

        `dtype="float64"` runs the float model in double precision.
        Returns a dict of output arrays by name.
        """
        outs, _ = self.run_with_state(inputs, weights, backend, bind, seed, mode, dtype)
        return outs

    def run_with_state(self, inputs=None, weights=None, backend="numpy", bind=None, seed=0, mode="eval",
                       dtype=None):
        from .backends import get_backend
        runner = get_backend(backend)  # a one-line error for an unknown backend or a missing package
        bind = dict(bind or {})
        if inputs:
            bind = {**_dims_from_inputs(self.graph, inputs), **bind}
        g = self._elaborate(mode, bind)
        missing = [d for v in g.inputs for d in v.type.shape if isinstance(d, Dim)]
        if missing:
            names = sorted({s for d in missing for s in d.symbols()})
            raise DlcValueError(f"dimension(s) {', '.join(names)} have no size", g.span,
                                f"bind them, e.g. --bind {names[0]}=1, or declare `example {names[0]} = 1`")
        inputs = dict(inputs or {})
        _check_memory(g, bind, backend, inputs, weights is None)
        missing_inputs = [v.name for v in g.inputs if v.name not in inputs]
        rand = self.random_inputs(seed, bind) if missing_inputs else {}
        for v in g.inputs:
            if v.name not in inputs:
                inputs[v.name] = rand[v.name]
            arr = np.asarray(inputs[v.name])
            want = tuple(int(d) for d in v.type.shape)
            if arr.shape != want:
                from .frontend.teach import input_size_hint
                hint = input_size_hint(self.module, self.name, v.name, arr.shape, want,
                                       {**self.bind, **bind}, dict(g.dims))
                raise DlcValueError(f"input '{v.name}' has shape {arr.shape}, the model expects {v.type}",
                                    v and g.span, hint)
            if v.type.dtype.is_float and dtype:
                arr = arr.astype(dtype)
            inputs[v.name] = arr
        if weights is None:
            from .compiler.init import init_params
            weights = init_params(g, seed)
        weights = dict(weights)
        for p in g.params:
            if p.name not in weights:
                raise DlcValueError(f"the weights have no entry for '{p.name}'", p.param.span)
            w = np.asarray(weights[p.name])
            want = tuple(int(d) for d in p.type.shape)
            if w.shape != want:
                raise DlcValueError(f"weight '{p.name}' has shape {w.shape}, the model expects {p.type}", p.param.span)
            if dtype and w.dtype.kind == "f":
                w = w.astype(dtype)
            weights[p.name] = w
        if mode == "train":
            # one value per channel: the same located error on every backend
            from .compiler.ops.norm import check_batch_statistics
            check_batch_statistics(g, inputs=inputs)
        # an int8 or --precision model runs its own graph: the module graph is the fp32 float model
        module_graph = self.module_graph() if runner.uses_module_graph and self.opt.quant is None and self.opt.precision == "fp32" else None
        g = self.optimized(g, backend, bind=bind)
        return runner.run(g, inputs, weights, seed=seed, mode=mode, dtype=dtype, bind=bind,
                          module_graph=module_graph)


def _check_memory(g, bind: dict, backend: str, given_inputs: dict, new_weights: bool) -> None:
    """Refuse a run that cannot fit in memory before allocating anything, rather
    than die with MemoryError (or the OOM killer) half-way.  DLC_MEMORY_CHECK=0
    turns the check off."""
    import os
    from .compiler.memory import estimate_memory
    from .runtime.memory import available_bytes, human_bytes
    if os.environ.get("DLC_MEMORY_CHECK", "1") == "0":
        return
    dims = {**{k: v for k, v in g.dims.items() if v is not None}, **bind}
    workspace = None
    if backend == "numpy":     # the interpreter's own peak: its kernels' scratch included
        from .backends.numpy.workspace import workspace_bytes as workspace
    est = estimate_memory(g, dims, new_inputs={v.name for v in g.inputs} - set(given_inputs),
                          new_weights=new_weights, workspace=workspace)
    avail = available_bytes()
    if avail is None or est.total <= avail:
        return
    parts = [f"{what} {human_bytes(n)}" for what, n in (("inputs", est.inputs), ("weights", est.weights),
             ("activations", est.activations), ("weight initialisation", est.transient)) if n]
    dims_s = ", ".join(f"{k}={v}" for k, v in dims.items())
    raise DlcLimitError(f"running {g.name}{f' at {dims_s}' if dims_s else ''} needs about "
                        f"{human_bytes(est.total)} ({', '.join(parts)}), but only {human_bytes(avail)} of "
                        "memory is available", g.span,
                        "use smaller sizes (e.g. --bind N=1) or a machine with more memory")


def _dims_from_inputs(g, inputs: dict) -> dict:
    out = {}
    for v in g.inputs:
        if v.name in inputs:
            arr = np.asarray(inputs[v.name])
            if arr.ndim != v.type.rank:
                raise DlcValueError(f"input '{v.name}' has rank {arr.ndim}, the model expects {v.type}")
            for d, n in zip(v.type.shape, arr.shape):
                if isinstance(d, Dim) and len(d.terms) == 1:
                    ((mono, coeff),) = d.terms.items()
                    if len(mono) == 1 and isinstance(mono[0], str) and coeff == 1:
                        if int(n) == 0:
                            # not a --bind the user gave: say which input is empty
                            raise DlcValueError(f"input '{v.name}' is an empty batch: shape {arr.shape} gives "
                                                f"{mono[0]} = 0, and dlc sizes are at least 1", g.span,
                                                "pass at least one example (a compiled .dlcpkg accepts an "
                                                "empty batch)")
                        out.setdefault(mono[0], int(n))
    return out


def load(path: str | Path, name: str | None = None, bind: dict | None = None, opt=None, include=()) -> Model:
    """Parse, elaborate and check a `.dln` file; raises `DlcError` on bad input.
    `opt` (a `compiler.passes.PipelineOptions`) sets the optimisation pipeline
    (default -O2); `Model.optimize` changes it.  `include` lists folders that
    `import "..."` searches after the importing file's own (then `DLC_PATH`)."""
    return Model(str(path), name, bind, opt=opt, include=include)
