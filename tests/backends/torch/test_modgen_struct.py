"""The structured generated module: one nn.Module class per .dln block.

Every zoo spec: the structured module has exactly the flat module's
state_dict names, loads dlc's weights with strict=True and gives the flat
module's outputs bit for bit (the flat module is checked against NumPy in
test_modgen.py); one training step on it equals one on the flat module.
ResNet-18 and GPT-2 read as their PyTorch originals; what the structure cannot
express falls back to flat code with a comment; `--script` reports.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_modgen import _cases, _liven, _model, _random_outputs, _sizes

import dlc
from dlc.backends.torch import generate_module, load_module

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")]


def _classes(src: str) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in ast.parse(src).body if isinstance(n, ast.ClassDef)}


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    return next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == name)


def _lines(fn: ast.FunctionDef) -> int:
    return fn.end_lineno - fn.lineno + 1


def _args(m, x: dict) -> list:
    return [torch.from_numpy(x[v.name]) for v in m.inputs]


def _outputs(out) -> list:
    return [t for t in (out if isinstance(out, (tuple, list)) else (out,))]


# ---------------------------------------------------------------- every zoo spec
@pytest.mark.parametrize("spec, name", _cases())
def test_structured_module_equals_flat_module(spec, name):
    m = _model(spec, name)
    w = _liven(m, m.init_weights(0))
    state = {k: torch.from_numpy(v) for k, v in w.items()}
    flat, net = load_module(m, structured=False), load_module(m)
    assert list(net.state_dict()) == list(flat.state_dict())          # the same names, the same order
    net.load_state_dict(state, strict=True)
    flat.load_state_dict(state, strict=True)
    x = m.random_inputs(1, _sizes(m))
    random = _random_outputs(m)
    net.eval()
    flat.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        got = _outputs(net(*_args(m, x)))
        torch.manual_seed(0)
        want = _outputs(flat(*_args(m, x)))
    for k, a, b in zip(m.graph.output_names, got, want):
        if k not in random:
            assert torch.equal(a, b), f"{spec}.{name}:{k}"


@pytest.mark.parametrize("spec, name", _cases())
def test_structured_module_trains_like_flat_module(spec, name):
    """One SGD step in train mode (batch statistics, dropout from one seed) on
    both modules: the same loss, the same new weights and buffers."""
    m = _model(spec, name)
    w = _liven(m, m.init_weights(0))
    x = m.random_inputs(2, _sizes(m))
    random = _random_outputs(m)
    keep = [i for i, k in enumerate(m.graph.output_names) if k not in random]
    results = []
    for structured in (True, False):
        net = load_module(m, structured=structured)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        torch.manual_seed(0)
        outs = _outputs(net(*_args(m, x)))
        loss = sum((outs[i].float() ** 2).mean() for i in keep if outs[i].is_floating_point()) \
            if keep else None
        if loss is None or not loss.requires_grad:
            pytest.skip("no trainable float output")
        loss.backward()
        opt.step()
        results.append((loss.detach(), {k: v.detach().clone() for k, v in net.state_dict().items()}))
    (la, sa), (lb, sb) = results
    assert torch.equal(la, lb)
    for k in sb:
        assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------- reads like PyTorch
def test_resnet18_reads_like_torchvision():
    m = dlc.load("specs/resnet18.dln")
    src = generate_module(m)
    classes = _classes(src)
    block, top = classes["BasicBlock"], classes["ResNet18"]
    assert _lines(_method(block, "forward")) < 15 and _lines(_method(top, "forward")) < 15
    init = ast.unparse(_method(block, "__init__"))
    # sizes from the block's parameters, the projection as torchvision's optional downsample
    assert "nn.Conv2d(C, planes, 3, stride=stride, padding=1, bias=False)" in init
    assert "if downsample:" in init and "self.downsample = None" in init
    assert "self.layer2 = nn.Sequential(BasicBlock(64, 128, 2, downsample=True), BasicBlock(128, 128, 1))" in src
    assert re.search(r"^\s+x = self\.layer4\(x\)  # specs/resnet18\.dln:21$", src, re.MULTILINE)
    net = load_module(m)
    assert isinstance(net.layer1, torch.nn.Sequential) and type(net.layer1[0]).__name__ == "BasicBlock"
    assert net.layer1[0].downsample is None and net.layer2[0].downsample is not None
    # the names are torchvision's, so its checkpoints load strictly
    assert "layer2.0.downsample.0.weight" in net.state_dict()
    assert list(net.state_dict()) == list(load_module(m, structured=False).state_dict())


def test_gpt2_is_one_block_class_and_a_module_list_of_twelve():
    m = dlc.load("specs/gpt2_small.dln", bind={"vocab": 1000})
    src = generate_module(m)
    classes = _classes(src)
    assert [c for c in classes if c.startswith("Block")] == ["Block"]
    assert "self.h = nn.ModuleList([Block(768, 12) for _ in range(12)])" in src
    fwd = ast.unparse(_method(classes["GPT2"], "forward"))
    assert "for block in self.h:\n        h = block(h)" in fwd
    init = ast.unparse(_method(classes["Block"], "__init__"))
    assert "nn.Linear(d, d * 4)" in init and "MultiheadAttention(d, h, causal=True)" in init
    net = load_module(m)
    assert isinstance(net.h, torch.nn.ModuleList) and len(net.h) == 12
    assert {type(b).__name__ for b in net.h} == {"Block"}


def test_every_statement_keeps_its_dln_line():
    for spec in ("resnet18", "gpt2_small", "efficientnet_b0"):
        src = generate_module(_model(spec))
        for cls in _classes(src).values():
            if cls.name in ("Scope", "MultiheadAttention"):    # support classes, not from the spec
                continue
            fwd = _method(cls, "forward")
            lines = src.split("\n")[fwd.lineno:fwd.end_lineno]
            for stmt in ast.walk(fwd):
                # (a plain alias `y = x` or a size read `N = x.shape[0]` is no .dln statement)
                if isinstance(stmt, ast.Assign) and not isinstance(stmt.value, (ast.Subscript, ast.Attribute, ast.Name)):
                    text = lines[stmt.lineno - fwd.lineno - 1]
                    assert re.search(r"# \S+\.dln:\d+$", text), (spec, cls.name, text)


# ---------------------------------------------------------------- what cannot be expressed
UNEXPLAINED = """
block Square(n: int)(x: f32[B, K]) {
    return dense(x, n * n, name="fc") |> relu
}

block Tied(k: int)(x: f32[B, K], w: f32[K, K]) {
    return dense(x @ w, k, name="fc")
}

model M(x: f32[B, 4]) -> f32[B, 3] {
    example B = 2
    param shared: f32[25, 25] = normal(std=0.1)
    h = Square(3)(x, name="a")
    h = Square(5)(h, name="b")
    h = Tied(3)(h, shared, name="c")
    return h
}
"""


def test_what_no_class_expresses_is_flat_and_says_why(tmp_path):
    spec = tmp_path / "m.dln"
    spec.write_text(UNEXPLAINED)
    m = dlc.load(spec)
    src = generate_module(m)
    assert "# block Square is written out flat: sizes 9 25 that no parameter explains" in src
    assert "class Square" not in src
    # Tied reads the caller's parameter: flat, with the reason
    assert "# c is written out flat: it reads shared - a parameter outside its scope" in src
    w = m.init_weights(0)
    x = m.random_inputs(0, {"B": 2})
    net = load_module(m)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
    with torch.no_grad():
        got = net(torch.from_numpy(x["x"])).numpy()
    np.testing.assert_allclose(got, m.run(x, w)[m.graph.output_names[0]], rtol=1e-5, atol=1e-6)


CALLER_PARAM = """
block Scale(k: int)(x: f32[B, K]) {
    param s: f32[K] = ones
    return x * s
}

model M(x: f32[B, 4]) -> f32[B, 4] {
    example B = 2
    h = Scale(1)(x, name="p")
    return Scale(2)(h, name="p2") + dense(x, 4, name="p.fc")
}
"""


def test_an_application_sharing_its_scope_is_flat(tmp_path):
    spec = tmp_path / "m.dln"
    spec.write_text(CALLER_PARAM)
    m = dlc.load(spec)
    src = generate_module(m)
    w = m.init_weights(0)
    net = load_module(m)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
    x = m.random_inputs(0, {"B": 2})
    with torch.no_grad():
        got = net(torch.from_numpy(x["x"])).numpy()
    np.testing.assert_allclose(got, m.run(x, w)[m.graph.output_names[0]], rtol=1e-5, atol=1e-6)
    assert "written out flat" in src or "class Scale" in src


# ---------------------------------------------------------------- --script
def test_compile_script_reports(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "dlc", "compile", "specs/mlp.dln", "--target", "torch",
                         "--script", "-o", str(tmp_path / "mlp.py")], capture_output=True, text=True,
                        timeout=300, check=False)
    assert ok.returncode == 0 and "torch.jit.script compiles it" in ok.stderr
    bad = subprocess.run([sys.executable, "-m", "dlc", "compile", "specs/resnet18.dln", "--target", "torch",
                          "--script", "-o", str(tmp_path / "r.py")], capture_output=True, text=True,
                         timeout=300, check=False)
    assert bad.returncode == 1 and "torch.jit.script cannot compile it" in bad.stderr
    assert "<dlc-torch-script-check" in bad.stderr      # located in the generated code
    assert (tmp_path / "r.py").read_text().startswith("# Generated by dlc")


def test_every_zoo_module_is_ruff_clean(tmp_path):
    from test_modgen import _ruff_available
    if not _ruff_available():
        pytest.skip("ruff is not installed")
    files = []
    for spec, name in (c.values for c in _cases()):
        f = tmp_path / f"{spec}_{name.lower()}.py"
        f.write_text(generate_module(_model(spec, name)))
        files.append(str(f))
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", *files],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compile_flat_writes_one_class(tmp_path):
    out = tmp_path / "flat.py"
    r = subprocess.run([sys.executable, "-m", "dlc", "compile", "specs/resnet18.dln", "--target", "torch", "--flat",
                        "-o", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    classes = _classes(out.read_text())
    assert "BasicBlock" not in classes and "ResNet18" in classes
    assert "self.layer1[0].conv1(x)" in out.read_text()
    bad = subprocess.run([sys.executable, "-m", "dlc", "compile", "specs/mlp.dln", "--target", "cpu", "--script"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode != 0 and "--script and --flat are options of --target torch" in bad.stdout + bad.stderr
