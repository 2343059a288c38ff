"""The ONNX op table covers every op the zoo reaches; the ops it does not map
are listed here, each with its reason (a new op without a mapping fails)."""
from __future__ import annotations

import glob
import os

import pytest

pytest.importorskip("onnx")

import dlc
from dlc.backends.onnx import TABLE, missing_ops
from dlc.compiler.decompose import decomposition
from dlc.compiler.ops import OPS

WITHOUT_MAPPING = {
    "adaptive_max_pool2d_indices": "only the backward of adaptive_max_pool2d uses it, and no zoo spec trains "
                                   "one; ONNX MaxPool's indices do not follow adaptive bins",
    "qconv2d": "dlc's int8 kernel with fixed-point requantization; a quantized model exports as QDQ "
               "(the pipeline stops before lower_int8)",
    "qdense": "as qconv2d",
    "requant_multiplier": "the fixed-point multiplier of qconv2d/qdense, which QDQ does not use",
}

SPECS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "specs", "*.dln")))
# specs whose training step is built here (every op of the zoo's backward passes appears in one of them)
TRAIN_STEPS = ("digits_cnn", "bilstm", "gru_classifier", "lstm_cell", "rnn_lm", "vae", "transformer_encoder_layer",
               "perceptron", "lenet5")


def test_the_ops_without_a_mapping_are_exactly_the_listed_ones():
    assert missing_ops() == sorted(WITHOUT_MAPPING)


def _ops(g, seen: set):
    for n in g.walk():
        seen.add(n.op.name)
        if n.op.name not in TABLE and n.op.decompose is not None:
            _ops(decomposition(n), seen)


def test_every_op_the_zoo_reaches_exports():
    from dlc.onnx_export_cli import train_graph
    seen: set = set()
    for spec in SPECS:
        m = dlc.load(spec)
        for mode in ("eval", "train"):
            g = m.symbolic_graph(mode)
            _ops(g, seen)
            _ops(m.optimized(g, "numpy"), seen)
        if os.path.basename(spec)[:-4] in TRAIN_STEPS:
            _ops(train_graph(m, {"N": 2})[0], seen)
    assert {"lstm", "gru", "rnn", "scan", "scaled_dot_product_attention", "cross_entropy", "fused",
            "scatter_add_rows", "max_pool2d_indices"} <= seen
    unmapped = sorted(op for op in seen if op not in TABLE and not OPS[op].decompose)
    assert unmapped == []
