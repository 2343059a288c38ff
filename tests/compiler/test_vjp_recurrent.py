"""VJPs of `scan` (backpropagation through time) and of rnn/lstm/gru.

Every gradient is checked against central finite differences in float64
(relative error <= 1e-6) and against torch.autograd (an equivalent torch loop
for hand-written cells; nn.RNN/LSTM/GRU with the weights copied for the ops).
"""
import itertools

import numpy as np
import pytest

import dlc
from dlc.backends.numpy.interpreter import Interpreter
from dlc.backends.numpy.kernels import KERNELS
from dlc.compiler.autodiff import NoVJPRule, grad
from dlc.compiler.builder import Builder
from dlc.compiler.clone import clone_body
from dlc.compiler.dims import Dim
from dlc.compiler.ir import Graph
from dlc.compiler.ops import OPS
from dlc.compiler.types import DType, TensorType
from dlc.compiler.verify import verify
from dlc.errors import Span

torch = pytest.importorskip("torch")

SP = Span("<test_vjp_recurrent>", 1, 1)
F64 = DType.f64
EPS, RTOL = 1e-6, 1e-6


def f64(*shape):
    return TensorType(F64, tuple(shape))


def total(b, *terms):
    """sum_i sum(a_i * r_i) for (a_i, r_i) pairs."""
    loss = None
    for a, r in terms:
        t = b.op("sum", b.op("mul", a, r), axis=None, keepdims=False)
        loss = t if loss is None else b.op("add", loss, t)
    return loss


def finish(g, loss, wrt, names):
    """Append d loss / d wrt; graph outputs are loss and the gradients."""
    grads = grad(g, loss, wrt, SP)
    for v, gr in zip(wrt, grads):
        assert gr is not None, f"no gradient for {v.name}"
    g.outputs = [loss] + grads
    g.output_names = ["loss"] + [f"g_{n}" for n in names]
    verify(g)
    return g


def run(g, feed, weights=None, dims=None):
    return Interpreter(g, dims=dims).run(feed, weights or {})[0]


def fd_check(loss_fn, arrays: dict, analytic: dict, what="", sample=None):
    """Central differences of loss_fn(arrays) wrt each entry of arrays[name] for name in analytic
    (at most `sample` randomly chosen entries per tensor when given)."""
    rng = np.random.default_rng(0)
    for name, ga in analytic.items():
        x0 = arrays[name]
        assert ga.dtype == np.float64, f"{what} {name}: gradient computed in {ga.dtype}"
        assert ga.shape == x0.shape
        entries = list(np.ndindex(*x0.shape))
        if sample is not None and len(entries) > sample:
            entries = [entries[i] for i in rng.choice(len(entries), sample, replace=False)]
        numeric, got = [], []
        for idx in entries:
            xp = x0.copy(); xp[idx] += EPS
            xm = x0.copy(); xm[idx] -= EPS
            numeric.append((loss_fn({**arrays, name: xp}) - loss_fn({**arrays, name: xm})) / (2 * EPS))
            got.append(ga[idx])
        numeric, got = np.array(numeric), np.array(got)
        scale = max(1.0, float(np.abs(numeric).max()))
        err = float(np.abs(got - numeric).max()) / scale
        assert err <= RTOL, f"{what}: gradient of {name} differs from finite differences by {err:.2e}"


def torch_check(analytic: dict, reference: dict, what=""):
    for name, ref in reference.items():
        assert ref.dtype == np.float64, f"{what}: the torch reference for {name} is {ref.dtype}"
        np.testing.assert_allclose(analytic[name], ref, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(ref).max())),
                                   err_msg=f"{what}: gradient of {name} differs from torch.autograd")


@pytest.fixture(params=[True, False], ids=["hoisted", "accumulated"])
def hoist(request, monkeypatch):
    """Run a test with the parameter-gradient products hoisted out of the backward loop (the
    default) and with every captured gradient accumulated in a carry of the backward scan."""
    from dlc.compiler.scan_grad import scan_vjp
    if not request.param:
        monkeypatch.setattr(OPS["scan"], "vjp", lambda b, node, g: scan_vjp(b, node, g, hoist=False))
    return request.param


def backward_scans(g):
    """The scans the VJP added (after the forward ones): (num_carry, body) of each."""
    return [(n.attrs["num_carry"], n.body) for n in g.nodes if n.op.name == "scan" and n.body.name.endswith(".grad")]


# ----------------------------------------------------------------- scan: tanh RNN cell
T, N, I, H = 4, 2, 3, 3


def tanh_rnn_graph(axis, reverse):
    """hT, ys = scan(h' = tanh(x W^T + b + h U^T)) with W, U, b captured by the body."""
    g = Graph("tanh_rnn")
    b = Builder(g, SP)
    x = b.input("x", f64(T, N, I) if axis == 0 else f64(N, T, I))
    h0, W, U, bias = b.input("h0", f64(N, H)), b.input("W", f64(H, I)), b.input("U", f64(H, H)), b.input("b", f64(H))
    body = Graph("cell", parent=g)
    bb = Builder(body, SP)
    h, xt = body.add_input("h", f64(N, H)), body.add_input("xt", f64(N, I))
    hn = bb.op("tanh", bb.op("add", bb.op("linear", xt, W, bias),
                             bb.op("matmul", h, bb.op("transpose", U, axes=(1, 0)))))
    body.outputs = [hn, hn]
    hT, ys = g.add_node(OPS["scan"], [h0, x], {"num_carry": 1, "axis": axis, "reverse": reverse}, SP, body=body)
    r_y, r_h = b.input("r_y", ys.type), b.input("r_h", hT.type)
    loss = total(b, (ys, r_y), (hT, r_h))
    return g, loss, [x, h0, W, U, bias]


def tanh_rnn_torch(a, axis, reverse):
    t = {k: torch.tensor(v, requires_grad=k in ("x", "h0", "W", "U", "b")) for k, v in a.items()}
    xs = t["x"] if axis == 0 else t["x"].transpose(0, 1)
    h, ys = t["h0"], [None] * T
    for s in (reversed(range(T)) if reverse else range(T)):
        h = torch.tanh(xs[s] @ t["W"].T + t["b"] + h @ t["U"].T)
        ys[s] = h
    ys = torch.stack(ys, axis)
    ((ys * t["r_y"]).sum() + (h * t["r_h"]).sum()).backward()
    return {k: t[k].grad.numpy() for k in ("x", "h0", "W", "U", "b")}


def random_feed(g, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(tuple(int(d) for d in v.type.shape)) for v in g.inputs}


@pytest.mark.parametrize("axis,reverse", [(0, False), (0, True), (1, False), (1, True)])
def test_scan_tanh_cell(axis, reverse, hoist):
    g, loss, wrt = tanh_rnn_graph(axis, reverse)
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    # the backward scan carries dh, plus dW, dU, db unless their products are hoisted
    assert [nc for nc, _ in backward_scans(g)] == [1 if hoist else 4]
    feed = random_feed(g)
    out = run(g, feed)
    analytic = {n: out[f"g_{n}"] for n in names}
    fd_check(lambda a: run(g, a)["loss"], feed, analytic, "scan tanh cell")
    torch_check(analytic, tanh_rnn_torch(feed, axis, reverse), "scan tanh cell")


def test_scan_second_order(hoist):
    """The scan VJP is IR: differentiating the gradient again (a Hessian-vector product) is exact."""
    g, loss, wrt = tanh_rnn_graph(0, False)
    b = Builder(g, SP)
    grads = grad(g, loss, wrt, SP)
    vs = [b.input(f"v_{v.name}", v.type) for v in wrt]
    gv = total(b, *zip(grads, vs))  # <grad, v>
    names = [v.name for v in wrt]
    finish(g, gv, wrt, names)
    feed = random_feed(g, 3)
    out = run(g, feed)
    analytic = {n: out[f"g_{n}"] for n in names}
    fd_check(lambda a: run(g, a)["loss"], feed, analytic, "scan Hessian-vector product")
    # torch: double backward through the equivalent loop
    t = {k: torch.tensor(v, requires_grad=True) for k, v in feed.items()}
    h, ys = t["h0"], []
    for s in range(T):
        h = torch.tanh(t["x"][s] @ t["W"].T + t["b"] + h @ t["U"].T)
        ys.append(h)
    lt = (torch.stack(ys) * t["r_y"]).sum() + (h * t["r_h"]).sum()
    gs = torch.autograd.grad(lt, [t[n] for n in names], create_graph=True)
    sum((a * t[f"v_{n}"]).sum() for a, n in zip(gs, names)).backward()
    torch_check(analytic, {n: t[n].grad.numpy() for n in names}, "scan Hessian-vector product")


def test_scan_mixed_carries_and_outputs():
    """Two float carries and an int counter, two sequences, outputs that are the input carry,
    an output without cotangent and a final carry without cotangent."""
    g = Graph("mixed")
    b = Builder(g, SP)
    x, m = b.input("x", f64(N, T, I)), b.input("m", f64(N, T, H))
    h0, a0, W = b.input("h0", f64(N, H)), b.input("a0", f64(N, H)), b.input("W", f64(H, I))
    k0 = b.op("full", shape=(), value=1, dtype="int64")
    body = Graph("cell", parent=g)
    bb = Builder(body, SP)
    h, a, k = body.add_input("h", f64(N, H)), body.add_input("a", f64(N, H)), body.add_input("k", k0.type)
    xt, mt = body.add_input("xt", f64(N, I)), body.add_input("mt", f64(N, H))
    scale = bb.op("cast", k, dtype="float64")
    # W is read by linear and by mean: its gradient is accumulated in a carry, not hoisted
    w_mean = bb.op("mean", W, axis=None, keepdims=False)
    hn = bb.op("tanh", bb.op("add", bb.op("linear", xt, W),
                             bb.op("mul", bb.op("mul", bb.op("mul", h, mt), scale), w_mean)))
    an = bb.op("add", a, bb.op("mul", hn, h))
    kn = bb.op("add", k, bb.op("full", shape=(), value=1, dtype="int64"))
    body.outputs = [hn, an, kn, hn, h, bb.op("sin", an)]
    hT, aT, kT, ys, hs, unused = g.add_node(OPS["scan"], [h0, a0, k0, x, m],
                                            {"num_carry": 3, "axis": 1, "reverse": True}, SP, body=body)
    loss = total(b, (aT, b.input("r_a", aT.type)), (ys, b.input("r_y", ys.type)), (hs, b.input("r_s", hs.type)))
    wrt = [x, m, h0, a0, W]
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    assert [nc for nc, _ in backward_scans(g)] == [3]  # dh, da and dW
    feed = random_feed(g, 1)
    out = run(g, feed)
    fd_check(lambda a: run(g, a)["loss"], feed, {n: out[f"g_{n}"] for n in names}, "mixed scan")


def test_scan_accumulator_needs_no_recompute():
    """When the backward step reads no carry (a running sum), no forward recompute is emitted."""
    g = Graph("cumsum")
    b = Builder(g, SP)
    x, a0, W = b.input("x", f64(T, N, I)), b.input("a0", f64(N, H)), b.input("W", f64(H, I))
    body = Graph("cell", parent=g)
    bb = Builder(body, SP)
    a, xt = body.add_input("a", f64(N, H)), body.add_input("xt", f64(N, I))
    y = bb.op("tanh", bb.op("linear", xt, W))
    an = bb.op("add", a, y)
    body.outputs = [an, an]
    aT, ys = g.add_node(OPS["scan"], [a0, x], {"num_carry": 1, "axis": 0, "reverse": False}, SP, body=body)
    loss = total(b, (aT, b.input("r_a", aT.type)), (ys, b.input("r_y", ys.type)))
    wrt = [x, a0, W]
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    assert [n.op.name for n in g.nodes].count("scan") == 2  # the forward and the backward scan
    feed = random_feed(g, 9)
    out = run(g, feed)
    analytic = {n: out[f"g_{n}"] for n in names}
    fd_check(lambda a: run(g, a)["loss"], feed, analytic, "running sum")
    t = {k: torch.tensor(v, requires_grad=k in names) for k, v in feed.items()}
    acc, ysl = t["a0"], []
    for step in range(T):
        acc = acc + torch.tanh(t["x"][step] @ t["W"].T)
        ysl.append(acc)
    ((acc * t["r_a"]).sum() + (torch.stack(ysl) * t["r_y"]).sum()).backward()
    torch_check(analytic, {n: t[n].grad.numpy() for n in names}, "running sum")


def test_nested_scan(hoist):
    """A scan inside a scan body; the inner body captures outer-body values and outer parameters."""
    K = 2
    g = Graph("nested")
    b = Builder(g, SP)
    x = b.input("x", f64(T, K, N, I))
    h0, W, U = b.input("h0", f64(N, H)), b.input("W", f64(H, I)), b.input("U", f64(H, H))
    outer = Graph("outer", parent=g)
    ob = Builder(outer, SP)
    h, xt = outer.add_input("h", f64(N, H)), outer.add_input("xt", f64(K, N, I))
    s = ob.op("sigmoid", h)  # an outer-body value the inner body captures
    inner = Graph("inner", parent=outer)
    ib = Builder(inner, SP)
    hi, xk = inner.add_input("hi", f64(N, H)), inner.add_input("xk", f64(N, I))
    hn = ib.op("tanh", ib.op("add", ib.op("linear", xk, W), ib.op("mul", ib.op("linear", hi, U), s)))
    inner.outputs = [hn, ib.op("mul", hn, s)]
    hK, yk = outer.add_node(OPS["scan"], [h, xt], {"num_carry": 1, "axis": 0, "reverse": False}, SP, body=inner)
    outer.outputs = [hK, ob.op("sum", yk, axis=0, keepdims=False)]
    hT, ys = g.add_node(OPS["scan"], [h0, x], {"num_carry": 1, "axis": 0, "reverse": False}, SP, body=outer)
    loss = total(b, (ys, b.input("r_y", ys.type)), (hT, b.input("r_h", hT.type)))
    wrt = [x, h0, W, U]
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    feed = random_feed(g, 2)
    out = run(g, feed)
    analytic = {n: out[f"g_{n}"] for n in names}
    fd_check(lambda a: run(g, a)["loss"], feed, analytic, "nested scan")
    t = {k: torch.tensor(v, requires_grad=k in names) for k, v in feed.items()}
    hc, ysl = t["h0"], []
    for step in range(T):
        sg, acc = torch.sigmoid(hc), 0
        for kk in range(K):
            hc = torch.tanh(t["x"][step, kk] @ t["W"].T + (hc @ t["U"].T) * sg)
            acc = acc + hc * sg
        ysl.append(acc)
    ((torch.stack(ysl) * t["r_y"]).sum() + (hc * t["r_h"]).sum()).backward()
    torch_check(analytic, {n: t[n].grad.numpy() for n in names}, "nested scan")


# ----------------------------------------------------------------- scan: the LSTM cell of lstm_scan.dln
LSTM_FILE = "tests/data/lstm_scan.dln"
LT, LN = 3, 2
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def lstm_cell_torch(x, h, c, w):
    """Torch loop equivalent to the LSTMCell block; x is (N, T, I)."""
    ys = []
    for s in range(x.shape[1]):
        i, f, gg, o = torch.split(x[:, s] @ w["weight_ih"].T + w["bias_ih"] + h @ w["weight_hh"].T + w["bias_hh"],
                                  h.shape[1], dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(o) * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys, 1), h, c


def _lstm_weights(params, seed):
    rng = np.random.default_rng(seed)
    return {p.name: rng.uniform(-0.5, 0.5, tuple(int(d) for d in p.type.shape)) for p in params}


@pytest.mark.parametrize("symbolic", [False, True], ids=["bound", "symbolic"])
def test_scan_lstm_cell_from_dln(symbolic):
    """Gradients of the elaborated model wrt its input and the cell's parameters."""
    m = dlc.load(LSTM_FILE)
    g = m.graph if symbolic else m._elaborate("eval", {"N": LN, "T": LT})
    assert any(n.op.name == "scan" for n in g.nodes)
    b = Builder(g, SP)
    (x,), (ys,) = g.inputs, g.outputs
    loss = total(b, (ys, b.input("r_y", ys.type)))
    params = [p for p in g.params if p.kind == "param"]
    wrt = [x] + params
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    dims = {"N": LN, "T": LT} if symbolic else None
    rng = np.random.default_rng(4)
    feed = {"x": rng.standard_normal((LN, LT, 8)), "r_y": rng.standard_normal((LN, LT, 16))}
    weights = _lstm_weights(params, 5)
    out = run(g, feed, weights, dims)
    analytic = {n: out[f"g_{n}"] for n in names}
    ref = {}
    t = {k: torch.tensor(v, requires_grad=True) for k, v in {**feed, **weights}.items()}
    z = torch.zeros(LN, 16, dtype=torch.float64)
    y, _, _ = lstm_cell_torch(t["x"], z, z, {k.split(".")[-1]: t[k] for k in weights})
    (y * t["r_y"]).sum().backward()
    ref = {n: t[n].grad.numpy() for n in names}
    torch_check(analytic, ref, "lstm_scan.dln")
    if not symbolic:
        # finite differences on 40 random entries of each tensor (all 1,712 would take a while)
        arrays = {**feed, **weights}
        loss_of = lambda a: run(g, {k: a[k] for k in feed}, {k: a[k] for k in weights}, dims)["loss"]
        fd_check(loss_of, arrays, analytic, "lstm_scan.dln", sample=40)


def test_scan_lstm_cell_initial_state(hoist):
    """The same cell with differentiable initial states: the scan node of the .dln model is
    copied into a graph whose initial (h, c) and parameters are inputs."""
    src = dlc.load(LSTM_FILE)._elaborate("eval", {"N": LN, "T": LT})
    (node,) = [n for n in src.nodes if n.op.name == "scan"]
    g = Graph("lstm_cell_init")
    b = Builder(g, SP)
    # the types stay f32 as elaborated; the arrays fed are float64, so NumPy computes in float64
    x = b.input("x", node.inputs[2].type)
    h0, c0 = b.input("h0", node.inputs[0].type), b.input("c0", node.inputs[1].type)
    ws = {p.name: b.input(p.name.split(".")[-1], p.type) for p in src.params}
    # (the model passes one zeros value as both initial states: build the node with h0, c0 explicitly)
    body = clone_body(node.body, g, {p.id: ws[p.name] for p in src.params})
    hT, cT, ys = g.add_node(node.op, [h0, c0, x], node.attrs, node.span, body=body)
    loss = total(b, (ys, b.input("r_y", ys.type)), (hT, b.input("r_h", hT.type)), (cT, b.input("r_c", cT.type)))
    wrt = [x, h0, c0] + list(ws.values())
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    feed = random_feed(g, 6)
    for k in PARAMS:
        feed[k] *= 0.3
    out = run(g, feed)
    analytic = {n: out[f"g_{n}"] for n in names}
    t = {k: torch.tensor(v, requires_grad=k in names) for k, v in feed.items()}
    y, h, c = lstm_cell_torch(t["x"], t["h0"], t["c0"], t)
    ((y * t["r_y"]).sum() + (h * t["r_h"]).sum() + (c * t["r_c"]).sum()).backward()
    torch_check(analytic, {n: t[n].grad.numpy() for n in names}, "lstm cell with initial state")
    fd_check(lambda a: run(g, a)["loss"], feed, analytic, "lstm cell with initial state", sample=40)


# ----------------------------------------------------------------- rnn / lstm / gru ops
RT, RN, RI, RH = 3, 2, 3, 2
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
NS = {"rnn": 1, "lstm": 2, "gru": 1}
MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def op_arrays(op, L, D, bias, bf, init, seed=0):
    rng = np.random.default_rng(seed)
    G, ns = GATES[op], NS[op]
    x = rng.standard_normal((RN, RT, RI) if bf else (RT, RN, RI))
    states = [rng.standard_normal((L * D, RN, RH)) if init else None for _ in range(ns)]
    ws = []
    for layer in range(L):
        il = RI if layer == 0 else RH * D
        for _ in range(D):
            shapes = [(G * RH, il), (G * RH, RH)] + ([(G * RH,), (G * RH,)] if bias else [])
            ws += [rng.uniform(-0.7, 0.7, s) for s in shapes]
    return x, states, ws


def op_graph(op, x, states, ws, attrs, outputs):
    """loss = sum_k sum(out_k * r_k) over the selected outputs of one rnn/lstm/gru node."""
    g = Graph(f"{op}_vjp")
    b = Builder(g, SP)
    xv = b.input("x", f64(*x.shape))
    sv = [b.input(f"s{i}", f64(*s.shape)) if s is not None else None for i, s in enumerate(states)]
    wv = [b.input(f"w{i}", f64(*w.shape)) for i, w in enumerate(ws)]
    outs = b.op(op, xv, *sv, *wv, **attrs)
    loss = total(b, *[(outs[k], b.input(f"r{k}", outs[k].type)) for k in outputs])
    wrt = [xv] + [s for s in sv if s is not None] + wv
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    return g, names


def op_case(op, nonlinearity, L, D, bias, bf, init, outputs):
    attrs = dict(num_layers=L, bidirectional=D == 2, bias=bias, batch_first=bf)
    if op == "rnn":
        attrs["nonlinearity"] = nonlinearity
    x, states, ws = op_arrays(op, L, D, bias, bf, init)
    g, names = op_graph(op, x, states, ws, attrs, outputs)
    rng = np.random.default_rng(1)
    state_shape = (L * D, RN, RH)
    y_shape = (RN, RT, D * RH) if bf else (RT, RN, D * RH)
    rs = {f"r{k}": rng.standard_normal(y_shape if k == 0 else state_shape) for k in outputs}
    feed = {"x": x, **{f"s{i}": s for i, s in enumerate(states) if s is not None},
            **{f"w{i}": w for i, w in enumerate(ws)}, **rs}
    out = run(g, feed)
    analytic = {n: out[f"g_{n}"] for n in names}
    return attrs, feed, analytic, names


def kernel_loss(op, attrs, outputs):
    ns = NS[op]

    def f(a):
        states = [a.get(f"s{i}") for i in range(ns)]
        ws = [a[f"w{i}"] for i in range(len([k for k in a if k.startswith("w")]))]
        outs = KERNELS[op](a["x"], *states, *ws, **attrs)
        return sum(float((outs[k] * a[f"r{k}"]).sum()) for k in outputs)
    return f


def torch_reference(op, attrs, feed, outputs, names):
    L, D = attrs["num_layers"], 2 if attrs["bidirectional"] else 1
    kw = dict(nonlinearity=attrs["nonlinearity"]) if op == "rnn" else {}
    mod = MODULES[op](RI, RH, num_layers=L, bias=attrs["bias"], batch_first=attrs["batch_first"],
                      bidirectional=D == 2, dtype=torch.float64, **kw)
    with torch.no_grad():
        for i, p in enumerate(mod._flat_weights):
            p.copy_(torch.from_numpy(feed[f"w{i}"]))
    x = torch.tensor(feed["x"], requires_grad=True)
    states = [torch.tensor(feed[f"s{i}"], requires_grad=True) for i in range(NS[op]) if f"s{i}" in feed]
    hx = None if not states else (tuple(states) if op == "lstm" else states[0])
    y, hn = mod(x, hx)
    outs = [y] + (list(hn) if op == "lstm" else [hn])
    sum((outs[k] * torch.from_numpy(feed[f"r{k}"])).sum() for k in outputs).backward()
    ref = {"x": x.grad.numpy()}
    for i, s in enumerate(states):
        ref[f"s{i}"] = s.grad.numpy()
    for i, p in enumerate(mod._flat_weights):
        ref[f"w{i}"] = p.grad.numpy()
    assert set(ref) == set(names)
    return ref


KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]
CONFIGS = [(L, D, bf, init) for L, D, bf, init in itertools.product((1, 2), (1, 2), (False, True), (True, False))]
OP_CASES = [(op, nl, L, D, True, bf, init) for op, nl in KINDS for L, D, bf, init in CONFIGS]
OP_CASES += [(op, nl, L, D, False, bf, init) for op, nl in KINDS for L, D, bf, init in
             [(1, 1, False, True), (2, 2, True, False)]]


def _case_id(c):
    op, nl, L, D, bias, bf, init = c
    return (f"{op}{'-' + nl if nl else ''}-L{L}{'-bi' if D == 2 else ''}{'' if bias else '-nobias'}"
            f"{'-bf' if bf else ''}{'-init' if init else ''}")


@pytest.mark.parametrize("case", OP_CASES, ids=[_case_id(c) for c in OP_CASES])
def test_recurrent_op_vjp(case):
    op, nl, L, D, bias, bf, init = case
    outputs = list(range(1 + NS[op]))
    attrs, feed, analytic, names = op_case(op, nl, L, D, bias, bf, init, outputs)
    what = _case_id(case)
    fd_check(kernel_loss(op, attrs, outputs), feed, analytic, what)
    torch_check(analytic, torch_reference(op, attrs, feed, outputs, names), what)


@pytest.mark.parametrize("op,outputs", [("rnn", [0]), ("rnn", [1]), ("lstm", [0]), ("lstm", [2]),
                                        ("lstm", [1]), ("gru", [1])])
def test_recurrent_op_partial_outputs(op, outputs):
    """Only some of the results reach the loss (the others' cotangents are None)."""
    attrs, feed, analytic, names = op_case(op, "tanh", 2, 2, True, False, True, outputs)
    if op != "rnn":
        attrs.pop("nonlinearity", None)
    fd_check(kernel_loss(op, attrs, outputs), feed, analytic, f"{op} outputs {outputs}")
    torch_check(analytic, torch_reference(op, {"nonlinearity": "tanh", **attrs}, feed, outputs, names))


def test_recurrent_op_symbolic_dims():
    """T and N symbolic in the graph; sizes bound at run time."""
    Ts, Ns = Dim.symbol("T"), Dim.symbol("N")
    g = Graph("lstm_symbolic")
    b = Builder(g, SP)
    x, states, ws = op_arrays("lstm", 1, 2, True, True, True, seed=7)
    xv, h0, c0 = b.input("x", f64(Ns, Ts, RI)), b.input("s0", f64(2, Ns, RH)), b.input("s1", f64(2, Ns, RH))
    wv = [b.input(f"w{i}", f64(*w.shape)) for i, w in enumerate(ws)]
    y, hn, cn = b.op("lstm", xv, h0, c0, *wv, bidirectional=True, batch_first=True)
    loss = total(b, (y, b.input("r0", y.type)), (cn, b.input("r2", cn.type)))
    wrt = [xv, h0, c0] + wv
    names = [v.name for v in wrt]
    finish(g, loss, wrt, names)
    rng = np.random.default_rng(8)
    feed = {"x": x, "s0": states[0], "s1": states[1], **{f"w{i}": w for i, w in enumerate(ws)},
            "r0": rng.standard_normal((RN, RT, 2 * RH)), "r2": rng.standard_normal((2, RN, RH))}
    out = run(g, feed, dims={"T": RT, "N": RN})
    analytic = {n: out[f"g_{n}"] for n in names}
    attrs = dict(num_layers=1, bidirectional=True, bias=True, batch_first=True)
    fd_check(kernel_loss("lstm", attrs, [0, 2]), feed, analytic, "lstm symbolic")


def test_lstm_proj_size_is_refused():
    x, states, ws = op_arrays("lstm", 1, 1, True, False, False)
    g = Graph("lstm_proj")
    b = Builder(g, SP)
    xv = b.input("x", f64(*x.shape))
    wv = [b.input(f"w{i}", f64(*w.shape)) for i, w in enumerate(ws)]
    wv[1] = b.input("w_hh", f64(4 * RH, 1))
    w_hr = b.input("w_hr", f64(1, RH))
    y, hn, cn = b.op("lstm", xv, None, None, *wv, w_hr, proj_size=1)
    loss = total(b, (y, b.input("r", y.type)))
    with pytest.raises(NoVJPRule, match="proj_size"):
        grad(g, loss, [xv], SP)


@pytest.mark.parametrize("case", [("lstm", None, 2, 2, True, True, True), ("gru", None, 2, 1, True, False, False),
                                  ("rnn", "relu", 1, 2, False, False, True)], ids=_case_id)
def test_recurrent_op_vjp_accumulated(case, monkeypatch):
    """The same gradients with the weight gradients accumulated step by step in the backward scan."""
    from dlc.compiler.scan_grad import scan_vjp
    monkeypatch.setattr(OPS["scan"], "vjp", lambda b, node, g: scan_vjp(b, node, g, hoist=False))
    op, nl, L, D, bias, bf, init = case
    outputs = list(range(1 + NS[op]))
    attrs, feed, analytic, names = op_case(op, nl, L, D, bias, bf, init, outputs)
    fd_check(kernel_loss(op, attrs, outputs), feed, analytic, _case_id(case))
    torch_check(analytic, torch_reference(op, attrs, feed, outputs, names), _case_id(case))
