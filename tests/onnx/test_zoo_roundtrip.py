"""Issue 14's round trip on the zoo: spec -> ONNX (`dlc export`) -> spec
(`dlc import -o`, decompiled) -> ONNX again.  The imported spec computes what
the original does on the same weights, the second export what the first does
on onnxruntime, and importing the second export writes the same text again
(the decompiled spec is a fixed point, as readable as the first)."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

import dlc

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.dln"))
FAST = {"mlp", "lenet5", "resnet18", "digits_cnn", "perceptron"}
# what does not round-trip yet, and why (the note of issue 14 and docs/onnx.md say the same)
EXPECTED_FAILURES = {
}

# the second import differs in detail from the first (outputs equal and as short, not the same text): none
# left (transformer_encoder_layer was, before the importer read the exported attention back as the op)
NOT_FIXED_POINT: set = set()
# the second import LESS readable than the first: none left (bert_base and vit_b16 were, before the importer
# read dlc's exported attention, gelu and masked softmax back as the ops)
READABILITY_GAPS: set = set()


def _ort(path, feed):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feed.items() if k in names})


def _roundtrip(spec: str, tmp: Path):
    from dlc.onnx_export_cli import export_spec
    from dlc.onnx_import_cli import run_import
    from dlc.runtime.weights import load_weights, save_weights
    m = dlc.load(str(ROOT / "specs" / f"{spec}.dln"))
    bind = {k: v for k, v in m.graph.dims.items() if v is not None}
    w = m.init_weights(0)
    save_weights(tmp / "w.safetensors", w)
    export_spec(str(ROOT / "specs" / f"{spec}.dln"), str(tmp / "a.onnx"), weights_path=str(tmp / "w.safetensors"))
    with contextlib.redirect_stdout(io.StringIO()):
        run_import(str(tmp / "a.onnx"), str(tmp / f"{spec}.dln"), str(tmp / "b.safetensors"), bind, False)
    m2, w2 = dlc.load(str(tmp / f"{spec}.dln")), load_weights(tmp / "b.safetensors")
    x = m.random_inputs(0, bind)
    x2 = {v.name: x[u.name] for v, u in zip(m2.graph.inputs, m.graph.inputs)}
    for a, b in zip(m.run(x, w, bind=bind).values(), m2.run(x2, w2, bind=bind).values()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(np.abs(a).max() or 1))
    export_spec(str(tmp / f"{spec}.dln"), str(tmp / "c.onnx"), weights_path=str(tmp / "b.safetensors"))
    for a, b in zip(_ort(tmp / "a.onnx", x), _ort(tmp / "c.onnx", x2)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(np.abs(a).max() or 1))
    with contextlib.redirect_stdout(io.StringIO()):
        (tmp / "b2").mkdir()
        run_import(str(tmp / "c.onnx"), str(tmp / "b2" / f"{spec}.dln"), str(tmp / "b2" / "b.safetensors"), bind,
                   False)
    first, second = (tmp / f"{spec}.dln").read_text(), (tmp / "b2" / f"{spec}.dln").read_text()
    if spec in READABILITY_GAPS:
        assert "model " in second
    elif spec in NOT_FIXED_POINT:     # as readable: no more statements, no more declared (fallback) params
        assert second.count("\n") <= first.count("\n") and second.count("param ") <= first.count("param ")
    else:
        assert second == first
    return first


@pytest.mark.parametrize("spec", [pytest.param(s, marks=[
    *([] if s in FAST else [pytest.mark.slow]),
    *([pytest.mark.xfail(reason=EXPECTED_FAILURES[s], strict=True)] if s in EXPECTED_FAILURES else [])])
    for s in SPECS])
def test_zoo_spec_roundtrips_through_onnx(spec, tmp_path):
    text = _roundtrip(spec, tmp_path)
    if spec == "resnet18":      # readable: torch's layer names, blocks applied in a loop
        assert "block " in text and "for " in text and 'name="conv1"' in text
    if spec in ("gpt2_small", "bert_base", "vit_b16"):    # the attention is one op, the layers one loop
        assert "scaled_dot_product_attention(" in text and "for i in range(12)" in text and "gelu" in text
    if spec in ("gpt2_small", "transformer_base"):        # the tied table: one declared param, two uses
        assert text.count("param ") == 1 and "index_select(" in text and "|> linear(" in text


DOC = ROOT / "docs" / "onnx-roundtrip.md"
DOC_SPECS = ("resnet18", "mobilenet_v2", "bert_base")


def roundtrip_doc(tmp: Path) -> str:
    parts = ["# ONNX round trip: three zoo models decompiled from their ONNX export", "",
             "Each spec below was written by `dlc import model.onnx -o model.dln` from the file",
             "`dlc export specs/<name>.dln -o model.onnx` wrote: no line of it comes from the original spec.",
             "The outputs equal the original's on the same weights, and exporting it again gives the same",
             "onnxruntime outputs (tests/onnx/test_zoo_roundtrip.py, which also regenerates this page:",
             "`DLC_UPDATE_DOCS=1 pytest --runslow tests/onnx/test_zoo_roundtrip.py -k docs`).", ""]
    for spec in DOC_SPECS:
        (tmp / spec).mkdir()
        text = _roundtrip(spec, tmp / spec)
        parts += [f"## {spec}", "", "```dln", text.rstrip("\n"), "```", ""]
    return "\n".join(parts)


@pytest.mark.slow
def test_docs_show_the_decompiled_specs(tmp_path):
    import os
    text = roundtrip_doc(tmp_path)
    if os.environ.get("DLC_UPDATE_DOCS"):
        DOC.write_text(text)
    assert DOC.read_text() == text, "docs/onnx-roundtrip.md is stale: rerun with DLC_UPDATE_DOCS=1"
