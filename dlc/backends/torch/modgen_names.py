"""Names in the generated module: the class name, the reserved globals and
the source expression for each object at a dlc dotted path (`_Paths`)."""
from __future__ import annotations

import keyword

from .funcgen import _BUILTINS, sanitize
from .lowering import string_literal

SCOPE_CLASS = "Scope"
MHA_CLASS = "MultiheadAttention"

# nn.Module's own attribute names (a child called `forward` or `training` is
# registered and read through the module tables instead of as an attribute)
_MODULE_ATTRS = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
    "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
    "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train", "type", "xpu", "zero_grad",
    "training",
})


def _module_attrs() -> frozenset:
    try:  # whatever this torch version adds
        from torch import nn
        return _MODULE_ATTRS | {n for n in dir(nn.Module) if not n.startswith("_")}
    except ImportError:  # generation itself needs no torch
        return _MODULE_ATTRS


_RESERVED_GLOBALS = frozenset({"self", "nn", "torch", "F", "math", SCOPE_CLASS, MHA_CLASS})
_MHA_PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


# ---------------------------------------------------------------------------
# names and paths
# ---------------------------------------------------------------------------

class _Paths:
    """Source expressions for the objects at dlc's dotted names."""

    def __init__(self):
        self.attrs = _module_attrs()
        self.indexed_root = False   # the root needs Scope.__getitem__ (a numeric or odd top-level name)
        self.training_child = False  # something is called `training`, like nn.Module's mode flag

    def attr_ok(self, seg: str) -> bool:
        return (seg.isidentifier() and seg.isascii() and not keyword.iskeyword(seg)
                and not keyword.issoftkeyword(seg) and not seg.startswith("_") and seg not in self.attrs)

    def note(self, path: str) -> None:
        if "training" in path.split("."):
            self.training_child = True

    def step(self, seg: str) -> str:
        """`.conv1`, `[0]` or `["forward"]`: one step down the module tree."""
        if self.attr_ok(seg):
            return "." + seg
        if seg.isdigit() and seg.isascii() and str(int(seg)) == seg:
            return f"[{int(seg)}]"
        return f"[{string_literal(seg)}]"

    def expr(self, path: str) -> str:
        out = "self"
        for i, seg in enumerate(path.split(".") if path else []):
            st = self.step(seg)
            if i == 0 and st.startswith("["):
                self.indexed_root = True
            out += st
        return out

    def register(self, parent: str, seg: str, value: str, table: str) -> str:
        """Statement putting `value` under `seg` of the container at `parent`.

        table: "module", "param" or "buffer"."""
        holder = self.expr(parent)
        self.note(f"{parent}.{seg}")
        if self.attr_ok(seg) and table != "buffer":
            return f"{holder}.{seg} = {value}"
        if table == "buffer" and self.attr_ok(seg):
            return f"{holder}.register_buffer({string_literal(seg)}, {value})"
        if seg.isdigit() and seg.isascii() and table == "module":
            return f"{holder}.add_module({string_literal(seg)}, {value})"
        if seg.isdigit() and seg.isascii() and table == "param":
            return f"{holder}.register_parameter({string_literal(seg)}, {value})"
        if seg.isdigit() and seg.isascii():
            return f"{holder}.register_buffer({string_literal(seg)}, {value})"
        # a name nn.Module uses itself (`forward`, `training`...) or no identifier:
        # straight into the module's tables, which state_dict() reads
        tables = {"module": "_modules", "param": "_parameters", "buffer": "_buffers"}
        return f"{holder}.{tables[table]}[{string_literal(seg)}] = {value}"


def module_class_name(name: str) -> str:
    """The generated class's name: the model's, sanitised (`Model_` when it would clash)."""
    cls = sanitize(name, "Model")
    if (keyword.iskeyword(cls) or keyword.issoftkeyword(cls) or cls in _BUILTINS
            or cls in _RESERVED_GLOBALS):
        cls += "_"
    return cls


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _last(path: str) -> str:
    return path.rpartition(".")[2]
