"""fold_batchnorm: eval-mode batch norm folded into the conv/linear/matmul before it.

Every case runs -O0 against the pass in float64 on random batch-norm
statistics (see bnfold_util), and asserts from the IR what was folded."""
from __future__ import annotations

import pytest

import dlc
from bnfold_util import check_folds, count_op, stats, write_spec
from dlc.compiler.passes import PipelineOptions, selected_passes
from harness import check_pass

ZOO_WITH_BN = [("resnet18", {"size": 32}), ("mobilenet_v2", {"size": 32}), ("vgg16_bn", {"size": 32}),
               ("googlenet", {"size": 64}), ("efficientnet_b0", {"size": 32}), ("resnet50", {"size": 32})]


@pytest.mark.parametrize("name,bind", ZOO_WITH_BN, ids=[z[0] for z in ZOO_WITH_BN])
def test_zoo_every_batch_norm_folds_and_numbers_agree(name, bind):
    spec = f"specs/{name}.dln"
    before, after, st = check_folds(spec, ["fold_batchnorm", "fold_affine", "dce"], bind=bind)
    n_bn = count_op(before, "batch_norm")
    assert n_bn > 0
    assert count_op(after, "batch_norm") == 0
    assert st["fold_batchnorm.folded"] == n_bn and "fold_batchnorm.kept" not in st
    # nothing but the weights' computation was added: as many convs, and no new parameter
    assert count_op(after, "conv2d") == count_op(before, "conv2d")
    assert [ln for ln in after.splitlines() if ln.lstrip().startswith(("param", "buffer"))] == \
        [ln for ln in before.splitlines() if ln.lstrip().startswith(("param", "buffer"))]


def test_resnet18_through_the_shared_harness():
    before, after = check_pass("specs/resnet18.dln", ["fold_batchnorm"], bind={"size": 32})
    assert count_op(before, "batch_norm") == 20 and count_op(after, "batch_norm") == 0


def test_resnet18_eval_gradients_agree():
    """Gradients of an eval-mode loss (fine-tuning with frozen statistics) through the folded graph."""
    import numpy as np
    check_folds("specs/resnet18.dln", ["fold_batchnorm", "fold_affine", "dce"], bind={"size": 32}, grads=True,
                label=np.array([3]))


def test_folded_weights_sit_before_the_conv_with_the_batch_norm_line():
    _, after = check_pass("specs/resnet18.dln", ["fold_batchnorm"], bind={"size": 32})
    lines = after.splitlines()
    conv = next(i for i, ln in enumerate(lines) if "conv2d(image" in ln)
    assert "resnet18.dln:17" in lines[conv] and lines[conv].rstrip().endswith("conv1")
    # the nodes computing conv1's weight and bias: just before it, at bn1's line and scope
    weight_nodes = [ln for ln in lines[:conv] if ln.lstrip().startswith("%")]
    assert weight_nodes and all("resnet18.dln:18:12 bn1" in ln for ln in weight_nodes)
    assert any("@bn1.running_var" in ln for ln in weight_nodes)
    assert any("mul(@conv1.weight" in ln for ln in weight_nodes)


SMALL = """
model M(x: f32[N, 4, 10]) -> f32[N, {out}] {{
    example N = 3
    {body}
}}
"""


def _small(tmp_path, body, out="8, 8"):
    return write_spec(tmp_path, SMALL.format(body=body, out=out))


CASES = {
    "conv1d_bias": ("return conv1d(x, 8, kernel=3) |> batchnorm", "8, 8"),
    "conv1d_nobias_padded": ("return conv1d(x, 8, kernel=3, padding=1, bias=false) |> batchnorm", "8, 10"),
    "conv1d_grouped": ("return conv1d(x, 8, kernel=3, groups=2) |> batchnorm", "8, 8"),
    "conv1d_depthwise": ("return conv1d(x, 4, kernel=3, groups=4, bias=false) |> batchnorm", "4, 8"),
    "conv1d_depthwise_multiplier": ("return conv1d(x, 8, kernel=3, groups=4) |> batchnorm", "8, 8"),
    "conv2d_grouped_no_affine":
        ("return conv2d(reshape(x, N, 4, 2, 5), 6, kernel=(1, 3), groups=2, bias=false)"
         " |> batchnorm(affine=false)", "6, 2, 3"),
    "conv_transpose2d_grouped":
        ("return conv_transpose2d(reshape(x, N, 4, 2, 5), 6, kernel=2, stride=2, groups=2) |> batchnorm",
         "6, 4, 10"),
    "dense_bn1d": ("return dense(reshape(x, N, 40), 8) |> batchnorm1d", "8"),
    "dense_nobias_bn1d": ("return dense(reshape(x, N, 40), 8, bias=false) |> batchnorm1d(eps=1e-3)", "8"),
    "dense_bn1d_no_affine": ("return dense(reshape(x, N, 40), 8) |> batchnorm1d(affine=false)", "8"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_small_layers_fold(tmp_path, case):
    body, out = CASES[case]
    spec = _small(tmp_path, body, out)
    before, after, st = check_folds(spec, ["fold_batchnorm"], grads=True)
    assert count_op(before, "batch_norm") == 1 and count_op(after, "batch_norm") == 0
    assert st == {"fold_batchnorm.folded": 1}


MATMUL = """
model M(x: f32[N, 6]) -> f32[N, 5] {{
    example N = 4
    param w: f32[6, 5] = normal(std=0.5)
    param b: f32[{bshape}] = normal(std=0.5)
    return {expr} |> batchnorm1d
}}
"""


@pytest.mark.parametrize("expr,bshape", [("x @ w + b", "5"), ("b + x @ w", "1, 5"), ("x @ w", "5")])
def test_matmul_with_and_without_bias_folds(tmp_path, expr, bshape):
    spec = write_spec(tmp_path, MATMUL.format(expr=expr, bshape=bshape))
    before, after, st = check_folds(spec, ["fold_batchnorm"], grads=True)
    assert count_op(after, "batch_norm") == 0 and st == {"fold_batchnorm.folded": 1}
    assert count_op(after, "matmul") == 1 and count_op(after, "add") >= 1


KEPT = {
    # the conv output is also read by the residual add: batch norm must stay
    "conv_output_reused": ("h = conv1d(x, 4, kernel=1); return (h |> batchnorm) + h", "4, 10", 1),
    # linear on (N, L, C): batch norm's axis 1 is L, not the features
    "dense_rank3": ("return dense(x, 6) |> batchnorm", "4, 6", 0),
    # no layer before it
    "batch_norm_of_an_input": ("return x |> batchnorm", "4, 10", 0),
    # the layer's weight is computed from the input (not a weight)
    "dynamic_weight": ("x2 = reshape(x, N, 40); return x2 @ reshape(x2[0:1], 40, 1) |> batchnorm1d", "1", 0),
}


@pytest.mark.parametrize("case", list(KEPT))
def test_cases_that_must_not_fold(tmp_path, case):
    body, out, _ = KEPT[case]
    spec = _small(tmp_path, body, out)
    before, after, st = check_folds(spec, ["fold_batchnorm"])
    assert count_op(after, "batch_norm") == count_op(before, "batch_norm") == 1
    assert st == {"fold_batchnorm.kept": 1}


def test_runs_in_eval_mode_only():
    chosen = {p.name for p in selected_passes(PipelineOptions(level=2), "train")}
    assert "fold_batchnorm" not in chosen
    assert "fold_batchnorm" in {p.name for p in selected_passes(PipelineOptions(level=2), "eval")}


def test_train_mode_graph_keeps_its_batch_norms_and_updates():
    m = dlc.load("specs/resnet18.dln", bind={"size": 32}).optimize(level=2)
    g = m.compiled_graph("train")
    assert sum(1 for n in g.walk() if n.op.name == "batch_norm") == 20
    assert len(g.state_updates) == 60


def test_weights_file_interface_is_unchanged():
    m = dlc.load("specs/mobilenet_v2.dln", bind={"size": 32})
    g0 = m.optimize(level=0).compiled_graph("eval")
    g2 = m.optimize(passes=["fold_batchnorm"]).compiled_graph("eval")
    assert [(p.name, p.kind, p.type) for p in g0.params] == [(p.name, p.kind, p.type) for p in g2.params]


def test_stats_count_folded_per_graph():
    st = stats("specs/resnet18.dln", ["fold_batchnorm", "dce"], bind={"size": 32})
    assert st["fold_batchnorm.folded"] == 20
