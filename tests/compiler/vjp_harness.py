"""Shared harness for VJP tests: build a one-op graph, differentiate it with
dlc's symbolic autodiff, and compare with central finite differences (float64)
and with torch.autograd.

A case is (op name, list of operand specs, attrs, torch function or None).
Operand spec: a shape tuple (random float64 input, differentiated), or an
`Arr(array, diff=False)` for fixed operands (indices, masks), or None.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.autodiff import grad
from dlc.compiler.builder import Builder
from dlc.compiler.ir import Graph
from dlc.compiler.types import DType, TensorType


@dataclass
class Arr:
    value: np.ndarray
    diff: bool = False


def make_inputs(specs, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        if s is None:
            out.append(None)
        elif isinstance(s, Arr):
            out.append(s)
        else:
            out.append(Arr(rng.standard_normal(s), True))
    return out


def build(op: str, operands, attrs, output_index=None, seed=1):
    """Graph: loss = sum(op(operands)[i] * R_i) with fixed random R; returns graph and grads."""
    g = Graph("vjp_test")
    b = Builder(g)
    vals = []
    for i, a in enumerate(operands):
        if a is None:
            vals.append(None)
            continue
        dt = DType.from_numpy(a.value.dtype)
        vals.append(b.input(f"in{i}", TensorType(dt, a.value.shape)))
    outs = b.op(op, *vals, **attrs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    rng = np.random.default_rng(seed)
    loss = None
    weights = {}
    for k, o in enumerate(outs):
        if output_index is not None and k != output_index:
            continue
        if o is None or not o.type.dtype.is_float:
            continue
        r = b.input(f"r{k}", o.type)
        weights[f"r{k}"] = rng.standard_normal(tuple(int(d) for d in o.type.shape))
        term = b.op("sum", b.op("mul", o, r), axis=None, keepdims=False)
        loss = term if loss is None else b.op("add", loss, term)
    wrt = [v for v, a in zip(vals, operands) if a is not None and a.diff]
    grads = grad(g, loss, wrt)
    g.outputs = [loss] + [gr if gr is not None else loss for gr in grads]
    g.output_names = ["loss"] + [f"g{i}" for i in range(len(grads))]
    return g, grads, weights


def run(g, operands, weights):
    feed = {f"in{i}": a.value for i, a in enumerate(operands) if a is not None}
    feed.update(weights)
    return Interpreter(g).run(feed, {})[0]


def check_fd(op, operands, attrs, output_index=None, eps=1e-6, rtol=1e-6):
    g, grads, weights = build(op, operands, attrs, output_index)
    res = run(g, operands, weights)
    diff_idx = [i for i, a in enumerate(operands) if a is not None and a.diff]
    for k, i in enumerate(diff_idx):
        analytic = res[f"g{k}"] if grads[k] is not None else np.zeros_like(operands[i].value)
        x0 = operands[i].value
        numeric = np.zeros_like(x0)
        it = np.nditer(x0, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            xp = x0.copy(); xp[idx] += eps
            xm = x0.copy(); xm[idx] -= eps
            ops_p = list(operands); ops_p[i] = Arr(xp, True)
            ops_m = list(operands); ops_m[i] = Arr(xm, True)
            lp = run(g, ops_p, weights)["loss"]
            lm = run(g, ops_m, weights)["loss"]
            numeric[idx] = (lp - lm) / (2 * eps)
        scale = max(1.0, float(np.abs(numeric).max()))
        err = float(np.abs(analytic - numeric).max()) / scale
        assert err <= rtol, f"{op} operand {i}: max relative error {err:.2e} vs finite differences"
    return g, res, weights


def check_torch(op, operands, attrs, torch_fn, output_index=None, rtol=1e-8):
    import torch
    g, grads, weights = build(op, operands, attrs, output_index)
    res = run(g, operands, weights)
    tins = []
    for a in operands:
        if a is None:
            tins.append(None)
        else:
            t = torch.from_numpy(np.array(a.value))
            if a.diff:
                t.requires_grad_(True)
            tins.append(t)
    outs = torch_fn(*tins)
    outs = outs if isinstance(outs, tuple) else (outs,)
    loss = 0
    for k, o in enumerate(outs):
        if output_index is not None and k != output_index:
            continue
        if f"r{k}" in weights:
            loss = loss + (o * torch.from_numpy(weights[f"r{k}"])).sum()
    loss.backward()
    diff_idx = [i for i, a in enumerate(operands) if a is not None and a.diff]
    for k, i in enumerate(diff_idx):
        ref = tins[i].grad.numpy() if tins[i].grad is not None else np.zeros_like(operands[i].value)
        np.testing.assert_allclose(res[f"g{k}"] if grads[k] is not None else 0 * ref, ref, rtol=rtol,
                                   atol=rtol * max(1.0, float(np.abs(ref).max())),
                                   err_msg=f"{op}: gradient of operand {i} differs from torch.autograd")
