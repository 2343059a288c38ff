"""`dlc verify` and `dlc.verify`: the report, the tolerances, the bisection to a
planted wrong kernel, the reproducer, and bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.verify_core import TOLERANCES, compare

ROOT = Path(__file__).resolve().parents[1]
LENET = str(ROOT / "specs" / "lenet5.dln")
MLP = str(ROOT / "specs" / "mlp.dln")


def test_verify_report_forward_grad_step():
    rep = dlc.verify(dlc.load(MLP), backends=("numpy", "torch"), levels=(0, 2), train=True)
    assert rep.ok, rep.render()
    assert {(r.backend, r.level, r.what) for r in rep.rows} == {
        (b, lv, w) for b in ("numpy", "torch") for lv in (0, 2) for w in ("forward", "grad", "step")}
    torch_fwd = next(r for r in rep.rows if r.backend == "torch" and r.what == "forward")
    assert torch_fwd.dtype == "float32" and (torch_fwd.rtol, torch_fwd.atol) == TOLERANCES["float32"]["forward"]
    assert 0 < torch_fwd.max_abs < 1e-5      # float32 against float64: small but not zero
    text = rep.render()
    assert "rtol" in text and "1e-04" in text and text.rstrip().endswith("OK")
    assert rep.to_dict()["ok"] is True


def test_compare_scales_by_the_output():
    ref = {"y": np.array([1000.0, 1e-3])}
    assert compare(ref, {"y": np.array([1000.01, 1e-3 + 5e-4])}, "float32", "forward")[3]   # 1e-5 of the scale
    assert not compare(ref, {"y": np.array([1000.5, 1e-3])}, "float32", "forward")[3]       # 5e-4 of it
    assert not compare({"i": np.array([1, 2])}, {"i": np.array([1, 3])}, "float32", "forward")[3]
    assert not compare({"y": np.array([1.0])}, {"y": np.array([np.nan])}, "float32", "forward")[3]


@pytest.fixture
def wrong_torch_tanh(monkeypatch):
    """The torch lowering of tanh, 1% off: a wrong kernel mid-network in LeNet-5."""
    from dlc.backends.torch.lowering import LOWERING
    right = LOWERING["tanh"]
    monkeypatch.setitem(LOWERING, "tanh", lambda *a, **k: right(*a, **k) + " * 1.01")


def test_planted_wrong_kernel_is_named_with_its_line(wrong_torch_tanh, tmp_path):
    repro = tmp_path / "repro"
    res = CliRunner().invoke(main, ["verify", LENET, "--backends", "numpy,torch", "-O", "0,2",
                                    "--repro-dir", str(repro)])
    assert res.exit_code == 1, res.output
    assert "MISMATCH" in res.output
    assert "numpy     0 forward" in res.output and "ok" in res.output.splitlines()[2]
    lines = res.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("first diverging node"))
    assert "tanh" in lines[head]
    # the first tanh of LeNet-5 is line 7 (c1 = conv2d(...) |> tanh), a caret under it
    assert lines[head + 1].startswith(f"{LENET}:7:")
    assert lines[head + 2].startswith(" 7 |     c1 = conv2d(image, 6, kernel=5) |> tanh")
    assert lines[head + 3].strip().startswith("|") and "^~~~" in lines[head + 3]
    text = (repro / "repro.dln").read_text()
    assert "tanh(x0)" in text
    # the reproducer checks, and reproduces the mismatch on its own (its .npz found beside it)
    res2 = CliRunner().invoke(main, ["check", str(repro / "repro.dln")])
    assert res2.exit_code == 0, res2.output
    res3 = CliRunner().invoke(main, ["verify", str(repro / "repro.dln"), "--backends", "torch", "-O", "0",
                                     "--repro-dir", str(tmp_path / "r2")])
    assert res3.exit_code == 1 and "inputs from" in res3.output and "tanh diverges here" in res3.output, res3.output


def test_reproducer_passes_with_the_right_kernel(tmp_path):
    """Without the planted kernel, the same reproducer agrees: it pins the kernel, not the data."""
    from dlc.backends.torch.lowering import LOWERING
    right = LOWERING["tanh"]
    LOWERING["tanh"] = lambda *a, **k: right(*a, **k) + " * 1.01"
    try:
        rep = dlc.verify(dlc.load(LENET), backends=("torch",), levels=(0,), repro_dir=str(tmp_path))
    finally:
        LOWERING["tanh"] = right
    assert rep.divergence is not None and rep.divergence.op == "tanh"
    inputs = dict(np.load(tmp_path / "repro.npz"))
    assert set(inputs) == {"x0"} and inputs["x0"].dtype == np.float32
    ok = dlc.verify(dlc.load(tmp_path / "repro.dln"), backends=("torch",), levels=(0,), inputs=inputs)
    assert ok.ok, ok.render()


def test_bad_input_is_a_clear_error():
    r = CliRunner().invoke(main, ["verify", MLP, "--backends", "numpy,nope"])
    assert r.exit_code == 1 and "unknown backend 'nope'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["verify", MLP, "-O", "0,x"])
    assert r.exit_code == 1 and "comma-separated list of integers" in r.output
    r = CliRunner().invoke(main, ["verify", MLP, "--inputs", "/nonexistent.npz"])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_tvm_k1_matmul_with_bias(tmp_path):
    """The first mismatch the random graphs found (TVM Injective schedule on a
    reduction of extent 1 added a fused bias twice), kept as a regression test."""
    p = tmp_path / "k1.dln"
    p.write_text("model K1(x: f32[6, 1], w: f32[1, 4], b: f32[4]) {\n    y = x @ w + b\n    return y\n}\n")
    rep = dlc.verify(dlc.load(p), backends=("tvm",), levels=(0,))
    assert rep.ok, rep.render()


def test_fold_affine_with_a_vector_constant_before_a_conv(tmp_path):
    """Found by the random graphs: fold_affine tried the swapped order of
    `x + full([8], 0.5)` (the vector as the data) and indexed its missing axis 1."""
    p = tmp_path / "fa.dln"
    p.write_text("model FA(x: f32[N, 4, 8]) {\n    example N = 2\n    t = x + full([8], 0.5)\n"
                 "    y = conv1d(t, 3, kernel=3, stride=2)\n    return y\n}\n")
    rep = dlc.verify(dlc.load(p), backends=("numpy",), levels=(2,))
    assert rep.ok, rep.render()


def test_random_inputs_respect_one_hot_classes(tmp_path):
    """Found by the random graphs (graphs 290-299): random integer inputs ignored
    one_hot's class count, and one_hot failed on index 6 of 5 classes."""
    p = tmp_path / "oh.dln"
    p.write_text("model OH(i: i64[N, 3], e: i64[N, 3]) {\n    example N = 64\n    a = one_hot(i, 5)\n"
                 "    b = embedding(e, 7, 3)\n    return a, b\n}\n")
    m = dlc.load(p)
    assert m.random_inputs(0)["i"].max() < 5
    assert dlc.verify(m, backends=("numpy",), levels=(0,)).ok


def test_torch_group_norm_of_an_expanded_tensor(tmp_path):
    """Found by the random graphs (graphs 1000-1009): torch.native_group_norm
    raised on a non-contiguous (expanded) input."""
    p = tmp_path / "gn.dln"
    p.write_text("model GN(x: f32[N, 4, 6, 6]) {\n    example N = 2\n"
                 "    t = expand(sum(x, axis=1, keepdims=true), -1, 4, 6, 6)\n    y = group_norm(t, 2)\n"
                 "    return y\n}\n")
    rep = dlc.verify(dlc.load(p), backends=("torch",), levels=(0,))
    assert rep.ok, rep.render()


def test_precision_rows_run_in_the_low_dtype_at_its_tolerance():
    """--precision bf16,fp16: each backend and level once per precision, held
    to that dtype's tolerance, and the error shows the matmuls ran in it."""
    rep = dlc.verify(dlc.load(LENET), backends=("numpy", "torch"), levels=(2,), precisions=("fp32", "bf16", "fp16"))
    assert rep.ok, rep.render()
    rows = {(r.backend, r.dtype): r for r in rep.rows}
    assert set(rows) == {(b, d) for b in ("numpy", "torch") for d in ("float32" if b == "torch" else "float64",
                                                                     "bfloat16", "float16")}
    for b in ("numpy", "torch"):
        bf, fp = rows[(b, "bfloat16")], rows[(b, "float16")]
        assert (bf.rtol, bf.atol) == TOLERANCES["bfloat16"]["forward"]
        assert 1e-4 < bf.max_rel < 5e-2 and fp.max_rel < bf.max_rel   # bf16 rounds coarser than fp16
    r = CliRunner().invoke(main, ["verify", MLP, "--backends", "numpy", "-O", "2", "--precision", "fp32,bf16"])
    assert r.exit_code == 0 and "bfloat16" in r.output, r.output
    r = CliRunner().invoke(main, ["verify", MLP, "--precision", "fp8"])
    assert r.exit_code == 1 and "unknown precision 'fp8'" in r.output and "Traceback" not in r.output
