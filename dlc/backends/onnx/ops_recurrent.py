"""rnn/lstm/gru as ONNX RNN/LSTM/GRU (one node per layer), scan as ONNX Scan."""
from __future__ import annotations

from ...errors import DlcError
from .table import onnx_op

# torch's gate order -> ONNX's: LSTM (i, f, g, o) -> (i, o, f, c); GRU (r, z, n) -> (z, r, h)
_GATES = {"lstm": (4, [0, 3, 1, 2]), "gru": (3, [1, 0, 2]), "rnn": (1, [0])}


def _reorder(e, name: str, gates: int, order: list[int], axis: int = 0) -> str:
    if gates == 1:
        return name
    parts = e.op("Split", [name], n_out=gates, axis=axis, num_outputs=gates) if e.opset >= 18 else \
        e.op("Split", [name], n_out=gates, axis=axis)
    return e.op("Concat", [parts[i] for i in order], axis=axis)


def _stack_dirs(e, names: list[str]) -> str:
    unsq = [e.op("Unsqueeze", [n, e.ints([0])]) for n in names]
    return unsq[0] if len(unsq) == 1 else e.op("Concat", unsq, axis=0)


@onnx_op("rnn", "lstm", "gru")
def _recurrent(e, node, x):
    kind, a = node.op.name, node.attrs
    if a.get("proj_size", 0):
        raise DlcError("an LSTM with proj_size has no ONNX LSTM form", node.span)
    gates, order = _GATES[kind]
    n_states = 2 if kind == "lstm" else 1
    states, weights = x[1:1 + n_states], x[1 + n_states:]
    dirs = 2 if a["bidirectional"] else 1
    per = 4 if a["bias"] else 2
    hidden = int(node.inputs[1 + n_states].type.shape[0]) // gates
    seq = e.op("Transpose", [x[0]], perm=[1, 0, 2]) if a["batch_first"] else x[0]
    finals: list[list[str]] = [[] for _ in range(n_states)]
    for layer in range(int(a["num_layers"])):
        group = [weights[(layer * dirs + d) * per:(layer * dirs + d + 1) * per] for d in range(dirs)]
        W = _stack_dirs(e, [_reorder(e, g[0], gates, order) for g in group])
        R = _stack_dirs(e, [_reorder(e, g[1], gates, order) for g in group])
        B = _stack_dirs(e, [e.op("Concat", [_reorder(e, g[2], gates, order), _reorder(e, g[3], gates, order)],
                                 axis=0) for g in group]) if a["bias"] else None
        init = [None if s is None else e.op("Slice", [s, e.ints([layer * dirs]), e.ints([(layer + 1) * dirs]),
                                                      e.ints([0])]) for s in states]
        extra = {"linear_before_reset": 1} if kind == "gru" else {}
        if kind == "rnn":
            extra["activations"] = ["Relu" if a["nonlinearity"] == "relu" else "Tanh"] * dirs
        op_type = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
        outs = e.op(op_type, [seq, W, R, B, None] + init, n_out=1 + n_states, hidden_size=hidden,
                    direction="bidirectional" if dirs == 2 else "forward", **extra)
        y = e.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])          # (T, N, dirs, H)
        seq = e.op("Reshape", [y, e.ints([0, 0, -1])])
        for f, s in zip(finals, outs[1:]):
            f.append(s)
    y = e.op("Transpose", [seq], perm=[1, 0, 2]) if a["batch_first"] else seq
    return [y] + [f[0] if len(f) == 1 else e.op("Concat", f, axis=0) for f in finals]


@onnx_op("scan")
def _scan(e, node, x):
    """dlc's scan is ONNX Scan: carries then sequence slices in, carries then
    per-step results out; `reverse` runs both directions backwards."""
    from .lower import emit_body
    a, body = node.attrs, node.body
    nc, axis = int(a["num_carry"]), int(a["axis"])
    n_seq, n_ys = len(x) - nc, len(body.outputs) - nc
    graph = emit_body(e, body, f"{node.scope or 'scan'}.body")
    direction = 1 if a.get("reverse") else 0
    outs = e.op("Scan", x, n_out=nc + n_ys, body=graph, num_scan_inputs=n_seq,
                scan_input_axes=[axis] * n_seq, scan_output_axes=[axis] * n_ys,
                scan_input_directions=[direction] * n_seq, scan_output_directions=[direction] * n_ys)
    return outs if nc + n_ys > 1 else [outs]
