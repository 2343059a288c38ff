"""A `.dln` model as a self-contained PyTorch module (`dlc compile --target torch`).

    src = generate_module(dlc.load("specs/resnet18.dln"))   # Python source, imports only torch
    net = load_module(dlc.load("specs/resnet18.dln"))       # an instance of the generated class
    net.load_state_dict(weights, strict=True)                # dlc's names, no renaming

The generated file holds one `nn.Module` class per `.dln` block and one for
the model (`modgen_struct`: the blocks from the IR's `Graph.blocks`, loops of
blocks as nn.Sequential / nn.ModuleList; `structured=False` writes every
block inline in the model's forward, the flat module described below).  Its
parameters and buffers carry dlc's hierarchical names, so `state_dict()` keys
are dlc's parameter names (`layer1.0.conv1.weight`, `bn1.num_batches_tracked`):

* a dlc layer that *is* a torch layer becomes that module (dense -> nn.Linear,
  conv1d/conv2d/conv_transpose2d -> nn.Conv1d/Conv2d/ConvTranspose2d,
  batchnorm -> nn.BatchNorm1d/2d/3d, layernorm, groupnorm, embedding, prelu,
  lstm/gru/rnn -> nn.LSTM/GRU/RNN, multihead_attention -> a small generated
  `MultiheadAttention` holding q_proj, k_proj, v_proj and out_proj), and
  forward calls it: ``x = self.layer1[0].conv1(x)``;
* every other parameter or buffer (explicit `param`s, layers whose parameters
  are shared or nested) is an `nn.Parameter` or buffer on a `Scope` container
  at its path, and the ops using it are written with the shared per-op
  lowering (`lowering.LOWERING`) through the function generator (`funcgen`):
  the same variable names, symbolic-dimension handling and scan loops.

The module is generated from the *training* graph but behaves as PyTorch
modules do in both modes: dropout is ``F.dropout(x, p, self.training)``,
batch norm is the nn.BatchNorm module (batch statistics and running-stat
updates in training, running statistics in eval), and random ops draw from
torch's global generator.  Generation is deterministic: the same spec gives
the same bytes.

The generator is split along its seams: `modgen_names` (the class name and
the source expression for each dotted path), `modgen_layers` (which layers
become torch modules), `modgen_init` (the module tree built in `__init__`),
`modgen_forward` (the forward method) and `modgen_source` (the assembled
file).
"""
from __future__ import annotations

import linecache
import re
from itertools import count

from ...compiler.ir import Graph
from ...errors import DlcError
from .funcgen import _comment_text
from .modgen_fit import FitError
from .modgen_forward import _ForwardGen
from .modgen_init import _init_statements, _owned_layers
from .modgen_layers import _plan_layers
from .modgen_names import MHA_CLASS, SCOPE_CLASS, _Paths, module_class_name  # noqa: F401 - re-exported
from .modgen_source import _class_source, _file_source
from .modgen_struct import structure

__all__ = ["generate_module", "load_module", "module_class_name", "module_graph_of"]


def module_graph_of(model) -> Graph:
    """The graph a module is generated from: `model` itself when it is a
    `Graph`, else what its `module_graph()` gives (`dlc.Model.module_graph`:
    the training graph, symbolic in every dimension the parameters allow).

    The graph is all this backend reads: its nodes and their scopes, its
    parameters, and its layer table (`Graph.layers`)."""
    if isinstance(model, Graph):
        return model
    module_graph = getattr(model, "module_graph", None)
    if module_graph is None:
        raise TypeError(f"expected a dlc Graph or a model with module_graph(), got {type(model).__name__}")
    return module_graph()



def _generate(model, structured: bool = True) -> tuple[str, str]:
    """The generated file's source and its class's name."""
    src, cls = _generate_source(model, structured)
    return _short_paths(src), cls


def _short_paths(src: str) -> str:
    """`.dln` paths under the working directory in comments as relative paths
    (an imported file's spans carry its absolute path)."""
    import os
    cwd = os.getcwd().rstrip("/") + "/"
    return re.sub(r"(?<=[#@] )" + re.escape(cwd), "", src) if len(cwd) > 1 else src


def _generate_source(model, structured: bool) -> tuple[str, str]:
    g = module_graph_of(model)
    cls = module_class_name(g.name)
    if structured and g.blocks:
        try:
            return _generate_structured(g, cls), cls
        except (FitError, ValueError) as e:
            # the flat module is always expressible: it is the fallback for the whole model
            return _generate_flat(g, cls, [f"written out flat: {e}"]), cls
    return _generate_flat(g, cls, []), cls


def _generate_structured(g: Graph, cls: str) -> str:
    """One class per block (`modgen_struct`), then the model's class."""
    st, top = structure(g, cls)
    notes = [f"# {_comment_text(n, 200)}" for n in st.notes]
    cls_src = _class_source(g, cls, top.base, notes + top.init, top.forward)
    return _file_source(g, "\n\n\n".join(c.rstrip("\n") for c in st.classes + [cls_src]) + "\n",
                        st.uses_scope or top.uses_scope, st.training_child or top.training_child, st.mha or top.mha)


def _generate_flat(g: Graph, cls: str, notes: list[str]) -> str:
    """The model as one class, every block inlined."""
    paths = _Paths()
    plans, owner = _owned_layers(g, _plan_layers(g))
    init, param_src = _init_statements(g, paths, owner)
    init = [f"# {_comment_text(n, 200)}" for n in notes] + init

    # dimensions no input reveals fall back to the model's example sizes
    dims = {k: v for k, v in g.dims.items() if isinstance(v, int)}
    fwd = _ForwardGen(g, cls, paths, plans, param_src, {r.name for r in g.layers}, dims)
    try:
        forward = fwd.generate_forward()
    except ValueError as e:
        raise DlcError(f"cannot generate PyTorch code for {g.name}: {e}", g.span) from None
    # read after forward: writing it can mark the root as indexed
    uses_scope = paths.indexed_root or any(f"{SCOPE_CLASS}()" in ln for ln in init)
    base = SCOPE_CLASS if paths.indexed_root else "nn.Module"
    cls_src = _class_source(g, cls, base, init, forward)
    return _file_source(g, cls_src, uses_scope, paths.training_child, any(p.needs_mha for p in plans))


def generate_module(model, structured: bool = True) -> str:
    """Python source of a self-contained module defining the model's `nn.Module`.

    `model` is a `Graph` (with its layer table) or a `dlc.Model`.  `structured`:
    one class per `.dln` block (`modgen_struct`); False writes every block
    inline in the model's forward (the flat module)."""
    return _generate(model, structured)[0]


_loaded = count()


def load_module(model, dtype: str | None = None, structured: bool = True):
    """Execute the generated source in a fresh namespace; returns a new instance.

    `dtype="float64"` runs the float model in double precision (as `Model.run`
    does): the float32 constants the code creates become float64 and the
    parameters are converted."""
    src, cls = _generate(model, structured)
    if dtype not in (None, "float32", "f32"):
        if dtype not in ("float64", "f64"):
            raise DlcError(f"unsupported dtype {dtype!r} for the torch backend", hint="float32 or float64")
        src = re.sub(r"(?<![\w.])torch\.float32(?!\w)", "torch.float64", src)
    filename = f"<dlc-torch-module {next(_loaded)}: {cls}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    namespace = {"__name__": f"dlc_generated_{cls}"}
    exec(compile(src, filename, "exec"), namespace)  # noqa: S102 -- our own generated code
    module = namespace[cls]()
    if dtype in ("float64", "f64"):
        import torch
        module = module.to(torch.float64)
    return module
