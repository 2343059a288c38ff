"""Hand-written PyTorch models (bench/reference, torchvision/Hugging Face layouts) exported with
torch.onnx.export, for the import tests: name -> (module factory, example inputs, dynamic axes)."""
from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ref():
    sys.path.insert(0, str(ROOT / "bench" / "reference"))
    import torch_models
    return torch_models


def _recurrent(kind: str):
    import torch
    from torch import nn

    class Tagger(nn.Module):
        """A bidirectional LSTM/GRU tagger (specs/lstm_tagger.dln's shape) with a linear head."""

        def __init__(self):
            super().__init__()
            self.rnn = getattr(nn, kind)(16, 24, batch_first=True, bidirectional=True)
            self.head = nn.Linear(48, 5)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(torch.relu(y))
    return Tagger


def models() -> dict:
    import torch
    tm = _ref()
    g = torch.Generator().manual_seed(0)

    def img(n, c, h, w):
        return torch.randn(n, c, h, w, generator=g)

    def ids(n, t, vocab):
        return torch.randint(0, vocab, (n, t), generator=g)

    return {
        "mlp": (tm.MLP, (torch.randn(3, 64, generator=g),), {"x": {0: "N"}}),
        "lenet5": (tm.LeNet5, (img(2, 1, 32, 32),), {"x": {0: "N"}}),
        "resnet18": (tm.ResNet18, (img(1, 3, 64, 64),), {"x": {0: "N"}}),
        "mobilenet_v2": (tm.MobileNetV2, (img(1, 3, 64, 64),), {"x": {0: "N"}}),
        "transformer_encoder_layer": (lambda: tm.TransformerEncoderLayer(64, 4, 128),
                                      (torch.randn(2, 10, 64, generator=g),), {"x": {0: "N"}}),
        "bert_tiny": (lambda: tm.BertClassifier(vocab=100, positions=32, d=64, layers=2, heads=4, ff=128),
                      (ids(2, 12, 100), ids(2, 12, 2)), {"input_ids": {0: "N"}, "token_type_ids": {0: "N"}}),
        "lstm_tagger": (_recurrent("LSTM"), (torch.randn(2, 7, 16, generator=g),), {"x": {0: "N"}}),
        "gru_tagger": (_recurrent("GRU"), (torch.randn(2, 7, 16, generator=g),), {"x": {0: "N"}}),
        "gpt2_tiny": (lambda: tm.GPT2(vocab=100, positions=32, d=64, layers=2, heads=4),
                      (ids(2, 12, 100),), {"ids": {0: "N"}}),
    }


def export(name: str, opset: int = 17, fold: bool | None = None):
    """(onnx bytes, inputs as NumPy by name, the torch module) for model `name`.  `fold`:
    torch.onnx's constant folding (its default; off here by default except for the recurrent
    models, so that nn.Linear keeps its Transpose/MatMul/Add and its parameter names)."""
    import inspect

    import torch
    factory, args, dyn = models()[name]
    torch.manual_seed(0)
    m = factory().eval()
    with torch.no_grad():
        for pname in ("wte", "wpe"):   # GPT-2's bare parameters start uninitialised (torch.empty)
            if hasattr(m, pname):
                torch.nn.init.normal_(getattr(m, pname), std=0.02)
        for mod in m.modules():        # non-trivial batch-norm statistics
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                # distinct values: torch.onnx merges equal initializers (all-ones weights) into one
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
    names = list(inspect.signature(m.forward).parameters)
    f = io.BytesIO()
    torch.onnx.export(m, args, f, dynamo=False, opset_version=opset, input_names=names,
                      output_names=["out"], dynamic_axes=dyn,
                      # torch.onnx writes recurrent weights as Slice/Concat chains unless it folds them
                      do_constant_folding=name.endswith("_tagger") if fold is None else fold)
    return f.getvalue(), {n: a.numpy() for n, a in zip(names, args)}, m
