"""Truncated and bit-flipped ONNX files: the importer answers with a DlcError or a graph, never a traceback."""
from __future__ import annotations

import random

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

import real_models

from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx


@pytest.fixture(scope="module")
def seed_model():
    data, _, _ = real_models.export("lenet5")
    return data


def _check(path):
    try:
        import_onnx(path)
    except DlcError as e:
        assert e.message and "Traceback" not in e.message


def test_truncated_files(seed_model, tmp_path):
    n = len(seed_model)
    cuts = sorted({0, 1, 2, 7, 16, 64, n // 3, n // 2, n - 100, n - 1} | set(random.Random(1).sample(range(n), 40)))
    p = tmp_path / "m.onnx"
    for cut in cuts:
        p.write_bytes(seed_model[:cut])
        _check(p)


def test_bit_flipped_files(seed_model, tmp_path):
    rng = random.Random(7)
    p = tmp_path / "m.onnx"
    for trial in range(300):
        data = bytearray(seed_model)
        for _ in range(rng.choice((1, 2, 8))):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        p.write_bytes(bytes(data))
        _check(p)


def test_structure_flips(seed_model, tmp_path):
    """Bit flips that keep the protobuf valid but break the model: names, attributes, dims."""
    rng = random.Random(3)
    base = onnx.load_from_string(seed_model)
    p = tmp_path / "m.onnx"
    for trial in range(80):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        node = m.graph.node[rng.randrange(len(m.graph.node))]
        what = rng.randrange(5)
        if what == 0 and node.input:
            node.input[rng.randrange(len(node.input))] = "missing_value"
        elif what == 1 and node.attribute:
            a = node.attribute[rng.randrange(len(node.attribute))]
            a.ints[:] = [rng.randrange(-3, 1 << 20) for _ in range(rng.randrange(0, 5))]
            a.i = rng.randrange(-5, 5)
        elif what == 2 and m.graph.initializer:
            t = m.graph.initializer[rng.randrange(len(m.graph.initializer))]
            t.dims[:] = [rng.randrange(0, 1 << 16) for _ in range(len(t.dims) or 1)]
        elif what == 3:
            node.op_type = rng.choice(["Conv", "Gemm", "Reshape", "Nope", "MaxPool", "Concat"])
        else:
            d = m.graph.input[0].type.tensor_type.shape.dim
            if d:
                d[rng.randrange(len(d))].dim_value = rng.choice([0, 1, 1 << 45])
        p.write_bytes(m.SerializeToString())
        _check(p)
