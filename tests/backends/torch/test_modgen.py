"""`dlc compile --target torch`: the generated nn.Module against the NumPy reference.

Every model of every spec in specs/ is generated, loaded with dlc's weights
by name (`load_state_dict(strict=True)`, no renaming) and run in eval mode on
the same inputs as `Model.run`; outputs agree to 1e-4 relative in float32.
Weights are "livened up" first (He-normal convolutions, random batch-norm
statistics) so that deep CNNs do not collapse to their classifier bias.
Then: safetensors round trips, torch.compile and torch.export, deterministic
bytes, ruff-clean code, hostile names, and PyTorch's train/eval behaviour
(batch statistics and running-stat updates equal dlc's train-mode state
updates; dropout follows `module.training`).
"""
from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
from dlc.frontend.modules import load_module as load_dln

import dlc

torch = pytest.importorskip("torch")

from dlc.backends.torch import TorchBackend, generate_module, load_module

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")]

ROOT = Path(__file__).resolve().parents[3]
SPECS = ROOT / "specs"

# small sizes: the `const` overrides of tests/test_zoo_params.py and test_zoo_seq_params.py
CONSTS = {
    "alexnet": {"size": 64}, "vgg16": {"size": 32}, "vgg16_bn": {"size": 32}, "resnet18": {"size": 64},
    "resnet50": {"size": 64}, "googlenet": {"size": 64}, "mobilenet_v2": {"size": 64},
    "efficientnet_b0": {"size": 64}, "rnn_lm": {"vocab": 50}, "bilstm": {"vocab": 100},
    "seq2seq": {"src_vocab": 60, "tgt_vocab": 40, "embed": 16, "hidden": 24, "layers": 2},
    "transformer_base": {"layers": 1, "vocab": 100}, "bert_base": {"layers": 1},
    "gpt2_small": {"layers": 1, "vocab": 1000}, "vit_b16": {"layers": 1},
}
BATCH, SEQ = 2, {"S": 6}     # every other symbolic input dimension (T, L...) gets 5


def _cases():
    out = []
    for path in sorted(SPECS.glob("*.dln")):
        for name in load_dln(str(path)).models:
            out.append(pytest.param(path.stem, name, id=f"{path.stem}-{name}"))
    return out


def _model(spec: str, name: str | None = None):
    return dlc.load(SPECS / f"{spec}.dln", name, bind=CONSTS.get(spec, {}))


def _sizes(model) -> dict:
    sizes = {"N": BATCH}
    for v in model.inputs:
        for d in v.shape:
            if not isinstance(d, int):
                for s in sorted(d.symbols()):
                    sizes.setdefault(s, SEQ.get(s, 5))
    return sizes


def _liven(model, w: dict, seed: int = 0) -> dict:
    """He-normal convolutions and random batch-norm affine/statistics."""
    rng = np.random.default_rng(seed)
    out = dict(w)
    for k, v in w.items():
        stem = k.rpartition(".")[0]
        is_bn = f"{stem}.running_mean" in w
        if k.endswith(".running_mean"):
            out[k] = (0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
        elif k.endswith(".running_var") or (is_bn and k.endswith(".weight")):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif is_bn and k.endswith(".bias"):
            out[k] = (0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
        elif v.ndim >= 3 and v.dtype.kind == "f":
            fan_in = int(np.prod(v.shape[1:]))
            out[k] = (rng.standard_normal(v.shape) * np.sqrt(2.0 / fan_in)).astype(v.dtype)
    return out


def _random_outputs(model) -> set:
    """Outputs that depend on randn/uniform: their values come from another generator."""
    g = model._elaborate("eval")
    tainted = set()
    for n in g.walk():
        if n.op.name in ("randn", "uniform", "dropout") or any(v is not None and v.id in tainted
                                                               for v in n.inputs):
            tainted.update(o.id for o in n.outputs)
    return {name for name, v in zip(g.output_names, g.outputs) if v.id in tainted}


def _close(got, want, what, rtol=1e-4):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    assert err <= rtol * scale + 1e-6, f"{what}: max error {err:.3g} at scale {scale:.3g}"


# ---------------------------------------------------------------- (1) every spec == NumPy
@pytest.mark.parametrize("spec, name", _cases())
def test_generated_module_equals_numpy(spec, name):
    m = _model(spec, name)
    x = m.random_inputs(1, _sizes(m))
    w = _liven(m, m.init_weights(0))
    ref = m.run(x, w)
    got = TorchBackend.run(m, x, w, mode="eval")
    assert set(got) == set(ref)
    random = _random_outputs(m)
    for k in ref:
        if k in random:  # drawn from torch's generator: only the shape can agree
            assert got[k].shape == ref[k].shape and np.isfinite(got[k]).all()
        else:
            _close(got[k], ref[k], f"{spec}.{name}:{k}")


# every layer kind, with the options that change the torch constructor or call
LAYERS = """
block Cell(h: int)(x: f32[N, I], state: f32[N, h]) {
    z = dense(concat(x, state, axis=1), h, name="fc") |> tanh |> layernorm(name="ln")
    return z, z
}

model Layers(img: f32[N, 4, 8, 8], seq: f32[N, T, 6], ids: i64[N, T], mem: f32[N, S, 10]) -> (
        f32[N, 3], f32[N, T, 12], f32[N, 12]) {
    example N = 2, T = 5, S = 3
    a = conv2d(img, 8, kernel=3, stride=2, padding=1, groups=2, bias=false, name="c2")
        |> groupnorm(4, name="gn") |> prelu(8, name="act")
    a = conv_transpose2d(a, 4, kernel=3, stride=2, padding=1, output_padding=1, name="up")
        |> batchnorm(affine=false, name="bn") |> conv2d(3, kernel=(3, 1), padding="same", dilation=2, name="c3")
    pooled = layernorm(a, dims=2, name="ln_hw") |> global_avgpool
    c = conv1d(transpose(seq, 1, 2), 6, kernel=3, padding="same", name="c1") |> transpose(1, 2)
    s = c + embedding(ids, 7, 6, padding_idx=0, name="emb")
    r, hn = rnn(s, 12, nonlinearity="relu", batch_first=true, state=zeros(1, N, 12), name="rnn")
    g, gn = gru(s, 6, bidirectional=true, batch_first=true, name="gru")
    l, (lh, lc) = lstm(transpose(g, 0, 1), 12, layers=2, bias=false, name="lstm")
    att = multihead_attention(r, heads=3, mask=causal_mask(T), name="self_attn")
    cross = multihead_attention(att, mem, mem, heads=2, bias=false, name="cross")
    y = layernorm(cross + transpose(l, 0, 1), affine=false) |> layernorm(name="ln2")
    hs, last = scan(Cell(12), y, zeros(N, 12), axis=1, name="cell")
    return pooled, hs, last + lh[1] + hn[0]
}
"""


def _layers(tmp_path):
    path = tmp_path / "layers.dln"
    path.write_text(LAYERS)
    return dlc.load(path)


def test_every_layer_kind_is_its_torch_module(tmp_path):
    m = _layers(tmp_path)
    src = generate_module(m)
    for ctor in ("nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False)", "nn.GroupNorm(4, 8)",
                 "nn.PReLU(8)", "nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)",
                 "nn.BatchNorm2d(4, affine=False)", 'nn.Conv2d(4, 3, (3, 1), padding="same", dilation=2)',
                 "nn.LayerNorm((8, 8))", 'nn.Conv1d(6, 6, 3, padding="same")', "nn.Embedding(7, 6, padding_idx=0)",
                 'nn.RNN(6, 12, batch_first=True, nonlinearity="relu")',
                 "nn.GRU(6, 6, batch_first=True, bidirectional=True)", "nn.LSTM(12, 12, num_layers=2, bias=False)",
                 "MultiheadAttention(12, 3)", "MultiheadAttention(12, 2, bias=False, kdim=10, vdim=10)",
                 "self.cell.fc = nn.Linear(24, 12)"):
        assert ctor in src, ctor
    assert re.search(r"= self\.self_attn\(r, mask=\w+\)", src) and "self.cell.fc(" in src
    assert "F.layer_norm(" in src                     # no parameters: no module
    w = _liven(m, m.init_weights(0))
    x = m.random_inputs(1, {"N": 2, "T": 5, "S": 3})
    for dtype, rtol in ((None, 1e-4), ("float64", 1e-10)):
        ref = m.run(x, w, dtype=dtype)
        got = TorchBackend.run(m, x, w, dtype=dtype)
        for k in ref:
            _close(got[k], ref[k], f"{k} ({dtype or 'float32'})", rtol)
    # generic in the batch and sequence sizes, as the spec is
    x2 = m.random_inputs(2, {"N": 3, "T": 7, "S": 2})
    ref, got = m.run(x2, w), TorchBackend.run(m, x2, w)
    for k in ref:
        _close(got[k], ref[k], f"{k} at N=3, T=7, S=2")


# ---------------------------------------------------------------- (2) safetensors, no renaming
def test_state_dict_loads_dlc_safetensors_without_renaming(tmp_path):
    from dlc.runtime.weights import load_weights, save_weights
    from safetensors.torch import load_file
    m = _model("resnet18")
    w = _liven(m, m.init_weights(3))
    path = tmp_path / "w.safetensors"
    save_weights(path, w)
    net = load_module(m)
    names = {p.name for p in m.parameters} | {b.name for b in m.buffers}
    assert set(net.state_dict()) == names
    assert {n for n, _ in net.named_parameters()} == {p.name for p in m.parameters}
    assert "layer2.0.downsample.0.weight" in names and "bn1.num_batches_tracked" in names
    net.load_state_dict(load_file(str(path)), strict=True)                # torch's own reader
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), w[k], err_msg=k)
    net2 = load_module(m)
    net2.load_state_dict({k: torch.from_numpy(v) for k, v in load_weights(path).items()}, strict=True)
    x = m.random_inputs(0, {"N": 2})
    net.eval()
    net2.eval()
    with torch.no_grad():
        a = net(torch.from_numpy(x["image"]))
        b = net2(torch.from_numpy(x["image"]))
    assert torch.equal(a, b)
    _close(a.numpy(), m.run(x, w)["logits"], "resnet18")
    # and the module's own state dict saves as dlc weights that dlc runs
    back = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    save_weights(tmp_path / "back.safetensors", back)
    assert set(load_weights(tmp_path / "back.safetensors")) == names


# ---------------------------------------------------------------- (3) torch.compile
def test_torch_compile_gives_the_same_outputs():
    m = dlc.load(SPECS / "resnet18.dln", bind={"size": 32})
    w = _liven(m, m.init_weights(0))
    net = TorchBackend.module(m, w).eval()
    x = torch.from_numpy(m.random_inputs(2, {"N": 2})["image"])
    with torch.no_grad():
        eager = net(x)
        compiled = torch.compile(net, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- (4) torch.export
@pytest.mark.parametrize("spec", ["lenet5", "mlp"])
def test_torch_export(spec):
    m = _model(spec)
    w = m.init_weights(0)
    net = TorchBackend.module(m, w).eval()
    x = m.random_inputs(0, {"N": 3})
    args = tuple(torch.from_numpy(x[v.name]) for v in m.inputs)
    batch = torch.export.Dim("batch", min=2, max=1024)
    ep = torch.export.export(net, args, dynamic_shapes={v.name: {0: batch} for v in m.inputs})
    want = m.run(x, w)
    out = ep.module()(*args)
    _close(out.detach().numpy(), want[m.outputs[0].name], spec)
    # the exported program is generic in the batch size, as the spec is
    x5 = m.random_inputs(1, {"N": 5})
    out5 = ep.module()(*(torch.from_numpy(x5[v.name]) for v in m.inputs))
    _close(out5.detach().numpy(), m.run(x5, w)[m.outputs[0].name], spec)


# ---------------------------------------------------------------- (5) deterministic bytes
def test_generation_is_deterministic(tmp_path):
    a = generate_module(dlc.load("specs/transformer_base.dln", bind={"layers": 1, "vocab": 100}))
    b = generate_module(dlc.load("specs/transformer_base.dln", bind={"layers": 1, "vocab": 100}))
    assert a == b
    # and independent of the interpreter's hash seed (no set or dict-order leaks)
    code = ("import sys, dlc; from dlc.backends.torch import generate_module; "
            "sys.stdout.write(generate_module(dlc.load('specs/transformer_base.dln', bind={'layers': 1, "
            "'vocab': 100})))")
    outs = []
    for seed in ("1", "2"):
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed}, check=False)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] == a
    assert a.startswith("# Generated by dlc ") and "specs/transformer_base.dln" in a.splitlines()[0]
    assert dlc.__version__ in a.splitlines()[0]


def test_generated_from_the_graph_and_its_layer_table_alone():
    """The generator reads the IR only: a Graph (with `layers`) gives the same
    module as the model it came from, and the layers become torch modules."""
    m = dlc.load("specs/resnet18.dln")
    g = m.module_graph()
    src = generate_module(g)
    assert src == generate_module(m)
    assert "self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)" in src
    assert "self.bn1 = nn.BatchNorm2d(64)" in src
    g.layers = []   # without the layer table every op is written functionally
    assert "nn.Conv2d(" not in generate_module(g)


# ---------------------------------------------------------------- (6) ruff-clean
def _ruff_available() -> bool:
    try:
        return subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True,
                              timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


RUFF_SPECS = ["resnet18", "transformer_base", "lstm_cell", "seq2seq", "vae", "bert_base", "bilstm",
              "mobilenet_v2", "gan"]


@pytest.mark.skipif(not _ruff_available(), reason="ruff is not installed")
def test_generated_code_is_ruff_clean(tmp_path):
    files = []
    for spec in RUFF_SPECS:
        for name in load_dln(str(SPECS / f"{spec}.dln")).models:
            f = tmp_path / f"{spec}_{name.lower()}.py"
            f.write_text(generate_module(_model(spec, name)))
            files.append(str(f))
    for stem, model in (("hostile_model", _hostile(tmp_path)), ("layer_zoo", _layers(tmp_path))):
        f = tmp_path / f"{stem}.py"
        f.write_text(generate_module(model))
        files.append(str(f))
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", *files],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- (7) hostile names
HOSTILE = r"""
# names that are Python builtins, keywords, or the generated code's own names
const lambda = 4

block exec(units: int)(print: f32[N, C]) {
    assert units > 0, "__import__('os').system('echo pwned'); import os\n\"\"\" ''' # x"
    self = dense(print, units, name="os.system") |> relu
    torch = dense(self, units, name="forward")
    return torch + self
}

block F(k: int)(x) {
    param training: f32[k] = ones
    param __class__: f32[k] = zeros
    buffer state_dict: f32[k] = zeros
    return x * training + __class__ + state_dict
}

block Scope(k: int)(x) {
    def = layernorm(x, name="class.import")
    return def |> prelu(name="0")
}

model __import__(self: f32[N, 8], torch: f32[N, 8]) -> f32[N, 4] {
    example N = 2
    print = exec(lambda)(self + torch, name="eval")
    nn = F(lambda)(print, name="0.training")
    MultiheadAttention = Scope(lambda)(nn, name="__init__.super")
    device = dropout(MultiheadAttention, 0.5) |> batchnorm(name="self.def")
    return device
}
"""

_DANGEROUS = {"os", "sys", "exec", "eval", "__import__", "open", "compile", "getattr", "setattr", "delattr",
              "globals", "locals", "vars", "print", "input", "breakpoint", "subprocess", "__builtins__"}


def _hostile(tmp_path):
    path = tmp_path / "hostile.dln"
    path.write_text(HOSTILE)
    return dlc.load(path)


def _code_only(src: str) -> str:
    """The source with comments and string literals blanked out."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            continue
        out.append(tok.string)
    return "".join(out)


def test_hostile_names_compile_to_safe_code(tmp_path):
    m = _hostile(tmp_path)
    src = generate_module(m)
    code = _code_only(src)
    assert "__import__(" not in code and "__import__ (" not in code
    assert not re.search(r"(?<![\w.\]])os\s*\.\s*system", code)   # only as self[...].os.system, a child module
    assert "pwned" not in src and "echo" not in src
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(x == "torch" or x.startswith("torch.") or x == "math" for x in mods), mods
        if isinstance(node, ast.Name):
            assert node.id not in _DANGEROUS, f"free name {node.id!r} in the generated code"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in _DANGEROUS
    # top level: only imports, the docstring, helper functions and classes
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Expr)), node
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant)
    # it runs, equal to NumPy, and the hostile names are exactly dlc's keys
    w = _liven(m, m.init_weights(0))
    x = m.random_inputs(0)
    _close(TorchBackend.run(m, x, w)["device"], m.run(x, w)["device"], "hostile")
    net = load_module(m)
    assert set(net.state_dict()) == set(w)
    assert {"eval.os.system.weight", "0.training.training", "0.training.__class__", "0.training.state_dict",
            "__init__.super.class.import.weight", "__init__.super.0.weight",
            "self.def.num_batches_tracked"} <= set(w)
    net.train()            # a child called `training` does not break the mode switch
    assert net.training and net[0].training and isinstance(net[0]["training"], torch.nn.Module)
    net.eval()
    assert not net.training and not net[0].training
    cls = type(net).__name__
    assert cls.isidentifier() and "__import__" not in cls


# ---------------------------------------------------------------- (8) train / eval
TRAIN_EVAL = '''
model Net(x: f32[N, 3, 8, 8]) -> (f32[N, 5], f32[N, 5]) {
    example N = 4
    h = conv2d(x, 6, kernel=3, padding=1, name="conv") |> batchnorm(name="bn", momentum=0.2) |> relu
    h = global_avgpool(h) |> dense(5, name="fc") |> batchnorm(name="bn1d")
    y = dropout(h, 0.5)
    return y, h
}
'''


def test_train_and_eval_follow_pytorch_and_dlc(tmp_path):
    path = tmp_path / "net.dln"
    path.write_text(TRAIN_EVAL)
    m = dlc.load(path)
    src = generate_module(m)
    assert "nn.BatchNorm2d(6, momentum=0.2)" in src and "nn.BatchNorm1d(5)" in src
    assert re.search(r"y = F\.dropout\(h\w*, 0\.5, self\.training\)", src)
    w = _liven(m, m.init_weights(0))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    net = TorchBackend.module(m, w)
    xt = torch.from_numpy(x)

    # train mode: batch statistics, running stats updated as dlc's state updates
    ref, updates = m.run_with_state({"x": x}, w, mode="train")
    net.train()
    with torch.no_grad():
        y, h = net(xt)
    _close(h.numpy(), ref["h"], "train-mode h (batch statistics)")
    state = net.state_dict()
    assert set(updates) == {f"{b}.{s}" for b in ("bn", "bn1d")
                            for s in ("running_mean", "running_var", "num_batches_tracked")}
    for k, v in updates.items():
        _close(state[k].numpy(), np.asarray(v), f"state update {k}", rtol=1e-5)
    assert int(state["bn.num_batches_tracked"]) == 1
    # dropout in training: zeros or h / (1 - p), some of each
    y, h = y.numpy(), h.numpy()
    dropped = y == 0
    assert dropped.any() and (~dropped).any()
    np.testing.assert_allclose(y[~dropped], 2 * h[~dropped], rtol=1e-6)

    # eval mode: running statistics (the updated ones), dropout off, nothing updated
    w2 = {**w, **{k: np.asarray(v) for k, v in updates.items()}}
    ref_eval = m.run({"x": x}, w2, mode="eval")
    net.eval()
    with torch.no_grad():
        y, h = net(xt)
    _close(h.numpy(), ref_eval["h"], "eval-mode h")
    assert torch.equal(y, h)
    assert int(net.state_dict()["bn.num_batches_tracked"]) == 1


# ---------------------------------------------------------------- the command line
def test_cli_compile(tmp_path):
    from click.testing import CliRunner

    from dlc.cli import main
    out = tmp_path / "model.py"
    r = CliRunner().invoke(main, ["compile", "specs/mlp.dln", "--target", "torch", "-o", str(out)])
    assert r.exit_code == 0, r.output
    src = out.read_text()
    assert src == generate_module(dlc.load("specs/mlp.dln"))
    ns: dict = {}
    exec(compile(src, str(out), "exec"), ns)   # noqa: S102 -- the file we just generated
    net = ns["MLP"]()
    assert set(net.state_dict()) == {p.name for p in dlc.load("specs/mlp.dln").parameters}
    r = CliRunner().invoke(main, ["compile", "specs/mlp.dln", "--target", "nosuch"])
    assert r.exit_code == 1 and "unknown target 'nosuch'" in r.output and "dlc targets" in r.output
    r = CliRunner().invoke(main, ["compile", "specs/resnet18.dln", "-t", "torch", "-b", "size=32"])
    assert r.exit_code == 0 and "class ResNet18(nn.Module):" in r.output
