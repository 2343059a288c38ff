"""The interpreter computes weight-only nodes (folded batch norms) once per set
of weight arrays, and again when the weights change."""
from __future__ import annotations

import numpy as np

import dlc
from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.hoist import weight_only_nodes


def _setup():
    m = dlc.load("specs/resnet18.dln", bind={"N": 1, "size": 64})
    g = m.compiled_graph("eval", {"N": 1, "size": 64})
    return m, g, m.random_inputs(0, {"N": 1, "size": 64}), m.init_weights(0)


def test_weight_only_nodes_run_once_per_set_of_weights(monkeypatch):
    m, g, x, w = _setup()
    hoisted = {id(n) for n in weight_only_nodes(g)}
    assert any(n.op.name == "rsqrt" or n.op.name == "sqrt" for n in g.nodes if id(n) in hoisted), \
        "batch-norm folding should leave weight-only nodes"
    interp = Interpreter(g, dims={"N": 1, "size": 64})
    ran = []
    real = interp.run_node
    monkeypatch.setattr(interp, "run_node", lambda node, env: (ran.append(id(node)), real(node, env))[1])
    first, _ = interp.run(x, w)
    n_first = sum(1 for i in ran if i in hoisted)
    assert n_first == len(hoisted)
    ran.clear()
    second, _ = interp.run(x, w)
    assert not any(i in hoisted for i in ran)
    np.testing.assert_array_equal(first["logits"] if "logits" in first else next(iter(first.values())),
                                  next(iter(second.values())))
    # new arrays for the weights: recomputed, and the result follows them
    w2 = {k: (v * 1.5 if k.endswith("bn1.weight") else v.copy()) for k, v in w.items()}
    ran.clear()
    third, _ = interp.run(x, w2)
    assert sum(1 for i in ran if i in hoisted) == len(hoisted)
    ref = m.optimize(level=0).run(x, w2, bind={"N": 1, "size": 64})
    (k,) = ref
    np.testing.assert_allclose(third[k], ref[k], rtol=1e-4, atol=1e-5)
    assert not np.allclose(third[k], first[k])
