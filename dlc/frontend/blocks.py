"""Block application and model elaboration."""
from __future__ import annotations

from ..compiler.dims import Dim, dim, known_equal
from ..compiler.ir import Graph
from ..compiler.types import TensorType
from ..errors import DlcLimitError, DlcNameError, DlcTypeError, DlcValueError, Span
from . import ast as A
from .limits import CALL_STEPS
from .values import BlockValue, PartialBlock, describe, is_int, is_tensor

_CTYPES = {"int": (int,), "float": (float, int), "bool": (bool,), "str": (str,), "tuple": (tuple,),
           "list": (list, tuple), "any": (object,)}


def bind_cparams(frame, block: BlockValue, args: list, kwargs: dict, span: Span) -> PartialBlock:
    params = block.defn.cparams
    names = [p.name for p in params]
    if len(args) > len(params):
        raise DlcTypeError(f"{block.name} takes {len(params)} compile-time argument(s), got {len(args)}",
                           span, f"signature: {signature(block)}")
    bound = dict(zip(names, args))
    for k, v in kwargs.items():
        if k not in names:
            raise DlcTypeError(f"{block.name} has no parameter '{k}'", span, f"signature: {signature(block)}")
        if k in bound:
            raise DlcTypeError(f"{block.name}: '{k}' given twice", span, f"signature: {signature(block)}")
        bound[k] = v
    from .elaborate import Frame
    for p in params:
        if p.name not in bound:
            if p.default is None:
                raise DlcTypeError(f"{block.name} needs the argument '{p.name}'", span,
                                   f"signature: {signature(block)}")
            bound[p.name] = Frame(frame.ctx, block.module, "", frame.graph, block.name).eval(p.default)
        v = bound[p.name]
        if is_tensor(v):
            raise DlcTypeError(f"{block.name}: '{p.name}' is a compile-time parameter, got a tensor", span,
                               f"tensors go in the second argument list: {block.name}(...)(x)")
        if p.type is not None:
            if p.type not in _CTYPES:
                raise DlcTypeError(f"unknown parameter type '{p.type}'", p.span,
                                   "compile-time types: " + ", ".join(_CTYPES))
            ok = isinstance(v, _CTYPES[p.type]) and not (p.type in ("int", "float") and isinstance(v, bool))
            if p.type == "int" and isinstance(v, Dim):
                ok = True
            if not ok:
                raise DlcTypeError(f"{block.name}: '{p.name}' must be {p.type}, got {describe(v)}", span,
                                   f"signature: {signature(block)}")
    return PartialBlock(block, bound, frozenset(p.name for p in params if p.name not in names[:len(args)]
                                                and p.name not in kwargs))


def signature(block: BlockValue) -> str:
    d = block.defn
    cp = ", ".join(p.name + (f": {p.type}" if p.type else "") + (" = ..." if p.default else "") for p in d.cparams)
    tp = ", ".join(p.name for p in d.params)
    return f"{d.name}({cp})({tp})" if d.is_block else f"{d.name}({tp})"


def apply_block(frame, pb: PartialBlock, args: list, kwargs: dict, span: Span):
    from .elaborate import MAX_DEPTH
    block = pb.block
    d = block.defn
    explicit, share = kwargs.pop("name", None), kwargs.pop("share", None)
    if kwargs:
        raise DlcTypeError(f"{block.name}: unexpected keyword argument(s) {', '.join(kwargs)}", span,
                           f"pass compile-time arguments in the first list: {signature(block)}; "
                           "an application takes only name= and share=")
    if len(args) != len(d.params):
        raise DlcTypeError(f"{block.name} takes {len(d.params)} tensor argument(s), got {len(args)}", span,
                           f"signature: {signature(block)}")
    if block.name in frame.ctx.stack:
        raise DlcLimitError(f"block '{block.name}' is recursive: {' -> '.join(frame.ctx.stack + [block.name])}",
                            span, "blocks may not call themselves; unroll with a for loop")
    if len(frame.ctx.stack) >= MAX_DEPTH:
        raise DlcLimitError("blocks are nested too deeply", span,
                             f"blocks may nest at most {MAX_DEPTH} levels deep")
    frame.ctx.charge(CALL_STEPS, span)
    if share is not None:
        from .sharing import shared_instance, sharing
        inst = shared_instance(frame, share, explicit, span)
        with sharing(frame, inst, share, span):
            return _elaborate_body(frame, pb, args, inst, span, record=False)
    inst = frame.instance_name(block.name, explicit, span)
    return _elaborate_body(frame, pb, args, inst, span, record=True)


def _elaborate_body(frame, pb: PartialBlock, args: list, inst: str, span: Span, record: bool):
    """One application of a block's body as instance `inst`."""
    from .elaborate import Frame, _Return
    block = pb.block
    d = block.defn
    sub = Frame(frame.ctx, block.module, inst, frame.graph, block.name)
    sub.env.update(pb.cargs)
    for p, a in zip(d.params, args):
        if p.type is not None:
            unify(sub, p.type, a, p.name, span)
        sub.env[p.name] = a
    if record:      # a shared application is the same instance again: recorded once
        _record_call(frame, pb, sub, inst, span, args)
    frame.ctx.stack.append(block.name)
    try:
        sub.run(d.body)
        result = None
    except _Return as r:
        result = r.value
        if result == ():  # a bare `return`
            raise DlcTypeError(f"{block.name} returns nothing", r.span, "return a value: return y") from None
    finally:
        frame.ctx.stack.pop()
    if result is None:
        raise DlcTypeError(f"{block.name} returns nothing", d.span, "end the block with 'return ...'")
    if d.returns is not None:
        unify(sub, d.returns, result, "the result", d.returns.span, what=f"{block.name} returns")
    return result


def _record_call(frame, pb: PartialBlock, sub, inst: str, span: Span, targs: list) -> None:
    """Note the application in the IR (`Graph.blocks`): code generation writes
    blocks back as classes from this record, never from the frontend."""
    from ..compiler.ir import BlockCall, BlockRef

    def plain(v):
        if isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (tuple, list)):
            items = tuple(plain(x) for x in v)
            return items if all(x is not None for x in items) else None
        if isinstance(v, (BlockValue, PartialBlock)):
            return BlockRef(v.name)
        return None      # a symbolic size or anything else code cannot restate

    d = pb.block.defn
    dims = []
    for p in d.params:
        for de in getattr(p.type, "dims", None) or ():
            if isinstance(de, A.Name) and de.id not in pb.cargs and de.id not in dict(dims) \
                    and isinstance(sub.env.get(de.id), int) and not isinstance(sub.env.get(de.id), bool):
                dims.append((de.id, sub.env[de.id]))
    args = tuple((p.name, plain(pb.cargs[p.name])) for p in d.cparams)
    inputs = []

    def tensors(name, v):
        if is_tensor(v):
            inputs.append((name, v))
        elif isinstance(v, (tuple, list)):
            for i, x in enumerate(v):
                tensors(f"{name}.{i}", x)
    for p, a in zip(d.params, targs):
        tensors(p.name, a)
    frame.ctx.root.blocks.append(BlockCall(inst, pb.block.name, args, pb.defaulted, tuple(dims), span,
                                           tuple(inputs)))


def unify(frame, texpr, value, pname: str, span: Span, what: str | None = None):
    """Match a value against a declared type; unbound dim names are bound."""
    if isinstance(texpr, A.TupleTypeExpr):
        if not isinstance(value, (tuple, list)) or len(value) != len(texpr.items):
            raise DlcTypeError(f"{what} {describe(value)} but is declared to return a tuple of "
                               f"{len(texpr.items)} tensors" if what else
                               f"argument '{pname}' must be a tuple of {len(texpr.items)} tensors, "
                               f"got {describe(value)}", span, "give one value per declared type")
        for t, v in zip(texpr.items, value):
            unify(frame, t, v, pname, span, what)
        return
    if not is_tensor(value):
        raise DlcTypeError(f"{what} {describe(value)} but must return a tensor" if what else
                           f"argument '{pname}' must be a tensor, got {describe(value)}", span,
                           "compile-time values go in a block's first argument list")
    got = value.type
    declared = _declared_str(texpr)
    if got.rank != len(texpr.dims):
        raise DlcTypeError(_mismatch(what, pname, declared, got), span,
                           f"rank {len(texpr.dims)} expected, rank {got.rank} given")
    from ..compiler.types import DType
    try:
        dt = DType.parse(texpr.dtype)
    except KeyError:
        raise DlcTypeError(f"unknown dtype '{texpr.dtype}'", texpr.span,
                           "dtypes are f16, bf16, f32, f64, i8, i32, i64, bool") from None
    if dt != got.dtype:
        raise DlcTypeError(_mismatch(what, pname, declared, got), span,
                           f"convert it with cast(x, {dt})")
    for de, actual in zip(texpr.dims, got.shape):
        if isinstance(de, A.Name) and de.id not in frame.env and de.id != "_" \
                and not _is_defined(frame, de.id):
            frame.env[de.id] = actual
            continue
        if isinstance(de, A.Name) and de.id == "_":
            continue
        want = frame.eval(de)
        eq = known_equal(want, actual) if is_int(want) else False
        if eq is not True and not (eq is None and dim(want) == actual):
            raise DlcTypeError(_mismatch(what, pname, declared, got), span,
                               (f"dimension {de.id} = {want}" if isinstance(de, A.Name) else f"dimension {want}")
                               + f" does not match {actual}")


def _is_defined(frame, name: str) -> bool:
    """A file constant or definition is a value, not a fresh dimension name."""
    from .modules import module_lookup
    return name in frame.module.defs or name in frame.module.consts


def _src(e) -> str:
    return e.id if isinstance(e, A.Name) else "expression"


def _mismatch(what, pname: str, declared: str, got) -> str:
    if what:  # the result of a block or model: "M returns f32[N, 2] but ..."
        return f"{what} {got} but is declared to return {declared}"
    return f"argument '{pname}' is declared {declared} but got {got}"


def _declared_str(t) -> str:
    def show(e):
        if isinstance(e, A.Name):
            return e.id
        if isinstance(e, A.Literal):
            return str(e.value)
        if isinstance(e, A.BinOp):
            def side(x):
                return f"({show(x)})" if isinstance(x, A.BinOp) else show(x)
            return f"{side(e.left)} {e.op} {side(e.right)}"
        return "..."
    return f"{t.dtype}[{', '.join(show(d) for d in t.dims)}]"


def elaborate_model(module, name: str, mode: str = "eval", bind: dict | None = None,
                    use_examples: bool = False):
    """Elaborate model `name` of `module` into a Graph.

    `bind` gives sizes for symbolic dimensions or overrides file constants.
    With `use_examples`, dims without a binding take the model's `example`
    sizes (as `info` and `run` need); otherwise they stay symbolic.
    """
    from .elaborate import Context, Frame
    bind = dict(bind or {})
    value = module.defs.get(name)
    if not isinstance(value, BlockValue) or value.has_cparams:
        raise DlcNameError(f"no model named '{name}' in {module.file}", None,
                           "models: " + (", ".join(module.models) or "none"))
    d = value.defn
    g = Graph(name, mode=mode, span=d.span)
    ctx = Context(g, mode)
    ctx.overrides = {k: v for k, v in bind.items() if k in module.consts}
    frame = Frame(ctx, module, "", g, name)
    # example sizes are read first: they feed size checks and MAC counts
    examples = _model_examples(module, d, frame)
    ctx.examples = {**examples, **{k: v for k, v in bind.items() if k not in module.consts}}
    symbols = _model_symbols(module, frame, bind, examples if use_examples else {})
    _model_inputs(frame, g, d, symbols, examples)
    _model_body(frame, g, d, name)
    g.layers = ctx.layers   # the layer table the IR declares, filled as the body ran
    if use_examples:  # info and run need every parameter's size
        _check_params_sized(g, d)
    return g


def _model_examples(module, d, frame) -> dict[str, int]:
    """The model's `example` sizes, by dimension name."""
    examples: dict[str, int] = {}
    for s in d.body:
        if not isinstance(s, A.Example):
            continue
        for dname, expr, sp in s.bindings:
            if dname in module.consts:
                # `dlc ir`, torch and TVM read the constant, `info` and NumPy the
                # example: refuse rather than pick one silently
                c = module.consts[dname]
                raise DlcValueError(
                    f"example size for '{dname}', which is a file constant (line {c.span.line}): "
                    f"an example sizes a symbolic dimension", sp,
                    f"remove this example, or rename the dimension; to change the constant, "
                    f"use --bind {dname}=<value>")
            v = frame.eval(expr)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise DlcValueError(f"example size of {dname} must be a positive int, got {describe(v)}", sp,
                                    f"e.g. example {dname} = 8")
            examples[dname] = v
    return examples


def _model_symbols(module, frame, bind: dict, examples: dict) -> dict:
    """Concrete sizes for dimensions: `--bind` first, then (when asked) the examples."""
    symbols: dict = {}
    for k, v in bind.items():
        if k not in module.consts:
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise DlcValueError(f"--bind {k}={v}: sizes must be positive ints", None, f"e.g. --bind {k}=8")
            symbols[k] = v
            frame.env[k] = v
    for k, v in examples.items():
        if k not in symbols:
            symbols[k] = v
            frame.env[k] = v
    return symbols


def _model_inputs(frame, g, d, symbols: dict, examples: dict) -> None:
    for p in d.params:
        if p.type is None:
            raise DlcTypeError(f"model input '{p.name}' needs a type", p.span, "e.g. x: f32[N, 784]")
        t = frame.eval_type(p.type, symbols)
        if isinstance(t, tuple):
            raise DlcTypeError("model inputs must be tensors, not tuples", p.span,
                               "declare one input per tensor")
        frame.env[p.name] = g.add_input(p.name, t)
    for k, v in symbols.items():
        if isinstance(v, Dim):
            g.dims[k] = examples.get(k)


def _model_body(frame, g, d, name: str) -> None:
    """Run the body; its `return` gives the graph's outputs."""
    from .elaborate import _Return
    try:
        frame.run(d.body)
        raise DlcTypeError(f"model {name} returns nothing", d.span, "end the model with 'return ...'")
    except _Return as r:
        result = r.value
        if result == ():  # a bare `return`
            raise DlcTypeError(f"model {name} returns nothing", r.span,
                               "return one or more tensors: return y") from None
    if d.returns is not None:
        unify(frame, d.returns, result, "the result", d.returns.span, what=f"{name} returns")
    outs = list(result) if isinstance(result, tuple) else [result]
    for o in outs:
        if not is_tensor(o):
            raise DlcTypeError(f"model {name} must return tensors, got {describe(o)}", d.span,
                               "a model returns one or more tensors")
    g.outputs = outs
    g.output_names = _output_names(d, len(outs))


def _check_params_sized(g, d) -> None:
    for p in g.params:
        syms = sorted(p.type.symbols())
        if syms:
            raise DlcValueError(f"parameter {p.name} has the shape {p.type}: its size depends on the "
                                f"unbound dimension {', '.join(syms)}", p.param.span if p.param else d.span,
                                f"give the model an example size (`example {syms[0]} = ...`) "
                                f"or pass --bind {syms[0]}=...")


def bindable_names(module, name: str) -> tuple[list[str], list[str]]:
    """(dimension names, constant names) that `bind` may set for model `name`:
    the names in its input types and `example` lines, and the file constants."""
    value = module.defs.get(name)
    dims: list[str] = []
    if isinstance(value, BlockValue):
        for p in value.defn.params:
            for n in _names_in(p.type):
                if n not in module.consts and n not in dims:
                    dims.append(n)
        for s in value.defn.body:
            if isinstance(s, A.Example):
                dims += [dname for dname, _, _ in s.bindings if dname not in dims]
    return dims, list(module.consts)


def check_bind_names(module, name: str, bind: dict) -> None:
    """An unknown name in `bind` is an error, not silently ignored (a typo would
    otherwise run the model at its example sizes)."""
    dims, consts = bindable_names(module, name)
    for k in bind:
        if k not in dims and k not in consts:
            what = "; ".join(x for x in (f"dimensions: {', '.join(dims)}" if dims else "",
                                         f"constants: {', '.join(consts)}" if consts else "") if x)
            raise DlcNameError(f"--bind {k}: model {name} has no dimension or constant named '{k}'", None,
                               what or f"model {name} has no symbolic dimension or constant to bind")


def _names_in(node) -> list[str]:
    import dataclasses
    if isinstance(node, A.Name):
        return [node.id]
    out: list[str] = []
    if isinstance(node, (list, tuple)):
        for x in node:
            out += _names_in(x)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.name != "span":
                out += _names_in(getattr(node, f.name))
    return out


def _output_names(d: A.ModelDef, n: int) -> list[str]:
    ret = None
    for s in d.body:
        if isinstance(s, A.Return):
            ret = s
    names = []
    if ret is not None and len(ret.values) == n:
        for i, v in enumerate(ret.values):
            names.append(v.id if isinstance(v, A.Name) else ("output" if n == 1 else f"output{i}"))
    else:
        names = ["output"] if n == 1 else [f"output{i}" for i in range(n)]
    seen = set()
    for i, nm in enumerate(names):
        if nm in seen:
            names[i] = f"{nm}_{i}"
        seen.add(names[i])
    return names
