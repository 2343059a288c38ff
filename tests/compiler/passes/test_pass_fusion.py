"""fusion: regions of every kind on small specs and on the zoo, the numbers
unchanged (float64, forward and gradients), and the invariants (no random op
in a region, convex regions, graph outputs kept)."""
from __future__ import annotations

import pytest
from fusion_checks import assert_regions_sound, check_grads, optimized_graph, regions
from harness import check_pass

from dlc.compiler.kernels import kernel_count
from dlc.compiler.passes.regions import outline, outline_many

PATTERNS = """
model Pat(x: f32[N, D], g: f32[D], b: f32[D]) -> f32[N, D] {
    example N = 4, D = 6
    e = exp(x - max(x, axis=-1, keepdims=true))
    sm = e / sum(e, axis=-1, keepdims=true)
    mu = mean(sm, axis=-1, keepdims=true)
    d = sm - mu
    v = mean(d * d, axis=-1, keepdims=true)
    ln = d / sqrt(v + 1e-5) * g + b
    ge = 0.5 * ln * (1.0 + erf(ln / sqrt(2.0)))
    gt = 0.5 * ge * (1.0 + tanh(sqrt(2.0 / 3.141592653589793) * (ge + 0.044715 * ge ** 3)))
    return gt
}
"""

VARIANTS = """
model Var(x: f32[N, D], g: f32[D]) -> f32[N, D] {
    example N = 3, D = 5
    t = x - max(x, axis=-1, keepdims=true)
    ls = t - log(sum(exp(t), axis=-1, keepdims=true))
    n = g * ((ls - mean(ls, axis=-1, keepdims=true)) * rsqrt(var(ls, axis=-1, keepdims=true, correction=0) + 1e-6))
    return n * 0.5 * (1.0 + erf(n * 0.7071067811865476))
}
"""

NEAR_MISSES = """
model Near(x: f32[N, D]) -> f32[N, D] {
    example N = 3, D = 5
    n = (x - mean(x, axis=-1, keepdims=true)) / sqrt(var(x, axis=-1, keepdims=true) + 1e-6)
    return 0.5 * n * (1.0 + tanh(0.79 * (n + 0.044715 * n ** 3)))
}
"""

RANDOM_BETWEEN = """
model Drop(x: f32[N, D]) -> f32[N, D] {
    example N = 4, D = 8
    a = dropout(exp(x) * 2.0 + 1.0, 0.5)
    return tanh(a) * 3.0 - 1.0
}
"""

DIAMOND = """
model Diamond(x: f32[N, D], w: f32[D, D]) -> (f32[N, D], f32[N, D]) {
    example N = 4, D = 8
    e = exp(x) * 2.0
    y = sigmoid(e + e @ w)
    return y, e + 1.0
}
"""


@pytest.fixture
def spec(tmp_path):
    def write(text, name="m.dln"):
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return write


def _kinds(g):
    return sorted(r.attrs["kind"] for r in regions(g))


def test_written_out_softmax_layernorm_and_gelus_become_one_region_each(spec):
    p = spec(PATTERNS)
    before, after = check_pass(p, ["fusion"])
    assert before.count("exp(") == 1 and "fused(" not in before
    g = optimized_graph(p, ["fusion"])
    assert [r.attrs["kind"] for r in regions(g)] == ["softmax", "layernorm", "gelu", "gelu"]
    assert len(g.nodes) == 4 and kernel_count(g) == 4
    ln = regions(g)[1]
    assert [v.name for v in ln.inputs] == ["sm", "g", "b"]        # gamma and beta are operands
    assert any(n.op.name == "tanh" for n in regions(g)[3].body.nodes)
    assert_regions_sound(g)
    check_grads(p, ["fusion"])


def test_other_spellings_log_softmax_rsqrt_var_and_gelu_by_multiplication(spec):
    p = spec(VARIANTS)
    check_pass(p, ["fusion"])
    g = optimized_graph(p, ["fusion"])
    assert [r.attrs["kind"] for r in regions(g)] == ["softmax", "layernorm", "gelu"]
    assert any(n.op.name == "log" for n in regions(g)[0].body.nodes)   # the log-softmax form
    assert [v.name for v in regions(g)[1].inputs] == ["ls", "g"]     # gamma on the left
    check_grads(p, ["fusion"])


def test_a_scalar_constant_is_no_gamma(spec):
    p = spec(PATTERNS.replace("ln = d / sqrt(v + 1e-5) * g + b", "ln = 2.0 * (d / sqrt(v + 1e-5))"))
    check_pass(p, ["fusion"])
    ln = next(r for r in regions(optimized_graph(p, ["fusion"])) if r.attrs["kind"] == "layernorm")
    assert len(ln.inputs) == 1 and ln.body.nodes[-1].op.name == "div"


def test_what_only_looks_like_a_pattern_is_not_labelled_as_one(spec):
    # unbiased variance is not a layer norm; 0.79 is not sqrt(2/pi)
    p = spec(NEAR_MISSES)
    check_pass(p, ["fusion"])
    g = optimized_graph(p, ["fusion"])
    assert not {"layernorm", "gelu"} & set(_kinds(g))
    assert "elementwise" in _kinds(g)          # still fused, as plain elementwise regions
    assert_regions_sound(g)


def test_no_region_reaches_across_a_random_op(spec):
    p = spec(RANDOM_BETWEEN)
    check_pass(p, ["fusion"], mode="train")
    g = optimized_graph(p, ["fusion"], mode="train")
    assert _kinds(g) == ["elementwise", "elementwise"]
    drop = next(n for n in g.nodes if n.op.name == "dropout")
    assert drop.inputs[0].producer.op.name == "fused"
    assert_regions_sound(g)
    gg = optimized_graph(p, ["fusion"], grad=True)
    assert_regions_sound(gg)
    check_grads(p, ["fusion"])


def test_regions_stay_convex_and_keep_what_outputs_need(spec):
    p = spec(DIAMOND)
    check_pass(p, ["fusion"])
    g = optimized_graph(p, ["fusion"])
    assert_regions_sound(g)
    for r in regions(g):
        names = {n.op.name for n in r.body.nodes}
        # e feeds the matmul, whose result comes back into sigmoid: exp and sigmoid in one
        # region would be non-convex
        assert not ({"exp", "sigmoid"} <= names)
    assert kernel_count(g) < kernel_count(optimized_graph(p, level=0))


def test_outline_refuses_a_non_convex_group(spec):
    g = optimized_graph(spec(DIAMOND), level=0)
    exp = next(n for n in g.nodes if n.op.name == "exp")
    sig = next(n for n in g.nodes if n.op.name == "sigmoid")
    before = str(g)
    assert outline(g, [exp, sig], "elementwise") is None
    assert str(g) == before
    # the batched form refuses it too, and still outlines the sound group beside it
    add1 = next(n for n in g.nodes if n.op.name == "add" and n.outputs[0] is g.outputs[1])
    made = outline_many(g, [([exp, sig], "elementwise", None), ([add1], "elementwise", None)])
    assert made[0] is None and made[1] is not None
    assert exp in g.nodes and sig in g.nodes and add1 not in g.nodes
    assert_regions_sound(g)


def test_epilogues_on_lenet5():
    before, after = check_pass("specs/lenet5.dln", ["fusion"])
    g = optimized_graph("specs/lenet5.dln", ["fusion"])
    assert _kinds(g) == ["conv_epilogue"] * 2 + ["matmul_epilogue"] * 2
    conv = next(r for r in regions(g) if r.attrs["kind"] == "conv_epilogue")
    assert [n.op.name for n in conv.body.nodes][0] == "conv2d" and len(conv.body.nodes) >= 2
    assert_regions_sound(g)
    check_grads("specs/lenet5.dln", ["fusion"], bind={"N": 2})
    assert_regions_sound(optimized_graph("specs/lenet5.dln", ["fusion"], grad=True, bind={"N": 2}))


ZOO = [
    ("specs/mlp.dln", {"N": 3}, {"matmul_epilogue"}),
    ("specs/lenet5.dln", {"N": 2}, {"conv_epilogue", "matmul_epilogue"}),
    ("specs/resnet18.dln", {"N": 2, "size": 32}, {"elementwise"}),
    ("specs/mobilenet_v2.dln", {"N": 2, "size": 32}, set()),
    ("specs/bert_base.dln", {"N": 2, "T": 6, "layers": 1, "vocab": 50, "width": 32, "heads": 2, "ffn": 64},
     {"matmul_epilogue"}),
    ("specs/gpt2_small.dln", {"N": 1, "T": 6, "layers": 1, "vocab": 50, "width": 32, "heads": 2},
     {"matmul_epilogue"}),
]


def _without_train_section(path, tmp_path):
    """The spec with its train section cut off: gradients of sum(output).  (gpt2_small's loss
    cannot be elaborated at a small vocabulary today: `loss_spec` infers its label as
    f32[N*T*vocab]; a frontend bug outside the fusion pass.)"""
    text = open(path).read()
    out = tmp_path / path.split("/")[-1]
    out.write_text(text[:text.index("\ntrain ")] + "\n")
    return str(out)


@pytest.mark.parametrize("path,bind,kinds", ZOO, ids=[z[0].split("/")[1][:-4] for z in ZOO])
def test_zoo_forward_and_gradients_unchanged(path, bind, kinds, tmp_path):
    passes = ["attention", "fuse_optimizer", "fusion"]
    check_pass(path, passes, bind=bind)
    check_pass(path, passes, bind=bind, mode="train")
    if "gpt2" in path:
        path = _without_train_section(path, tmp_path)
    g = optimized_graph(path, passes, bind=bind)
    assert kinds <= set(_kinds(g))
    assert_regions_sound(g)
    assert kernel_count(g) < kernel_count(optimized_graph(path, level=0, bind=bind)) or not kinds
    check_grads(path, passes, bind=bind)
    gg = optimized_graph(path, passes, grad=True, bind=bind)
    assert_regions_sound(gg)
    assert regions(gg), "no region in the training graph"


VIEWS = """
model Views(x: f32[N, C, D]) -> f32[N, D, C] {
    example N = 2, C = 3, D = 4
    a = reshape(x, N, C * D) * 2.0
    b = reshape(permute(reshape(a, N, C, D), 0, 2, 1), N, D * C)
    return reshape(b, N, D, C)
}
"""


def test_kernel_count_rules(spec):
    g = optimized_graph(spec(VIEWS), level=0)
    ops = [n.op.name for n in g.nodes]
    assert ops == ["reshape", "full", "mul", "reshape", "transpose", "reshape", "reshape"]
    # a reshape of a contiguous value is a view (0), a scalar constant an immediate (0), the mul 1,
    # the transpose 1, the reshape of the transposed value a copy (1), the last reshape a view (0)
    assert kernel_count(g) == 3
    fused = optimized_graph(spec(PATTERNS, "pat.dln"), ["fusion"])
    assert kernel_count(fused) == len(fused.nodes) == 4      # a region is one kernel, whatever its body
    lstm = optimized_graph("specs/lstm_cell.dln", level=0)
    scan = next(n for n in lstm.nodes if n.op.name == "scan")
    from dlc.compiler.kernels import node_kernels
    assert node_kernels(scan) == kernel_count(scan.body) > 1   # a scan: its body's kernels, once


def test_a_scan_body_gets_regions_and_the_scan_stays_whole():
    bind = {"N": 2, "T": 3}
    check_pass("specs/lstm_cell.dln", ["fusion"], bind=bind)
    g = optimized_graph("specs/lstm_cell.dln", ["fusion"], bind=bind)
    scan = next(n for n in g.nodes if n.op.name == "scan")
    assert [r.attrs["kind"] for r in regions(scan.body)] == ["elementwise", "elementwise"]
    assert not regions(g)
    assert_regions_sound(scan.body)
    check_grads("specs/lstm_cell.dln", ["fusion"], bind=bind)
