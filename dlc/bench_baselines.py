"""The baselines `dlc bench` times dlc against: independent implementations
of the same model, from the same weights.

- `torch-eager`: the idiomatic PyTorch modules of `bench/reference/` (written
  as torchvision / Hugging Face write them), `load_state_dict(strict=True)`
  with dlc's weights, eval mode, under `torch.inference_mode()`;
- `torch-compile`: the same module under `torch.compile` (inductor, which
  needs a C++ compiler on CPU);
- `onnxruntime`: the same module through `torch.onnx.export` (TorchScript
  exporter), run by an onnxruntime CPU session.

Each baseline is a `Baseline` with a `call()` that runs one forward pass on
the prepared inputs, and `outputs()` giving NumPy arrays for the check."""
from __future__ import annotations

import importlib.util
import io
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DlcError

BASELINES = ("torch-eager", "torch-compile", "onnxruntime")
# dlc model name -> class in bench/reference/torch_models.py (same parameter names as the spec)
REFERENCES = {"MLP": "MLP", "LeNet5": "LeNet5", "ResNet18": "ResNet18", "ResNet50": "ResNet50",
              "MobileNetV2": "MobileNetV2",
              "BertClassifier": "BertClassifier", "GPT2": "GPT2",
              "TransformerEncoderLayer": "TransformerEncoderLayer"}
_REF_FILE = Path(__file__).resolve().parents[1] / "bench" / "reference" / "torch_models.py"


class BaselineUnavailable(Exception):
    """This baseline cannot run here (the reason is the message); not a wrong result."""


@dataclass
class Baseline:
    name: str
    call: Callable[[], object]
    outputs: Callable[[], list]
    threads: str


def reference_class(model_name: str):
    """The hand-written module class for a dlc model, or a DlcError naming the
    models that have one."""
    if model_name not in REFERENCES:
        raise DlcError(f"model '{model_name}' has no reference PyTorch module for the baselines",
                       hint=f"models with references: {', '.join(sorted(REFERENCES))}; "
                            "bench it with --baselines '' or add a module to bench/reference/torch_models.py")
    if not _REF_FILE.exists():
        raise DlcError(f"the reference modules ({_REF_FILE}) are not here",
                       hint="baselines need dlc's source tree (bench/reference/)")
    spec = importlib.util.spec_from_file_location("dlc_bench_reference_models", _REF_FILE)
    mod = sys.modules.get(spec.name)
    if mod is None:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[spec.name] = mod
    return getattr(mod, REFERENCES[model_name])


def lively_weights(weights: dict, seed: int = 0) -> dict:
    """Random 1-D float parameters and batch-norm statistics instead of zeros
    and ones, so that a wrong bias, scale or normalisation shows in the check."""
    rng = np.random.default_rng(seed + 7)
    out = {}
    for k, v in weights.items():
        if v.ndim == 1 and v.dtype.kind == "f":
            if k.endswith("running_var"):
                v = (1.0 + 0.2 * np.abs(rng.standard_normal(v.shape))).astype(v.dtype)
            else:
                base = 1.0 if k.endswith("weight") else 0.0
                v = (base + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
        out[k] = v
    return out


def reference_module(model_name: str, weights: dict):
    import torch
    module = reference_class(model_name)()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DlcError(f"dlc's weights do not load into the reference {REFERENCES[model_name]}: "
                       f"{str(e).splitlines()[0]}", hint="the spec and bench/reference/ differ") from None
    return module.eval()


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use, or None."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def torch_compile_unavailable() -> str | None:
    """Why torch.compile cannot run here, or None when it can."""
    import torch
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if cxx_compiler() is None:
        return "torch.compile (inductor) needs a C++ compiler on CPU and none was found (CXX, c++, g++, clang++)"
    return None


# --precision: the torch baselines run under torch.autocast, PyTorch's own mixed precision (convolutions and
# matmuls in the low dtype, reductions and norms in float32), the counterpart of dlc's autocast pass
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def make_baseline(name: str, model_name: str, weights: dict, args: list[np.ndarray], threads: int,
                  precision: str = "fp32", device: str = "cpu") -> Baseline:
    """A ready-to-time baseline on `device` ("cpu" or "cuda"); BaselineUnavailable when it cannot run here."""
    if name not in BASELINES:
        raise DlcError(f"unknown baseline '{name}'", hint=f"choose from {', '.join(BASELINES)}")
    try:
        import torch
    except ImportError:
        raise BaselineUnavailable("torch is not installed") from None
    module = reference_module(model_name, weights)
    targs = [torch.from_numpy(np.ascontiguousarray(a)) for a in args]
    if device == "cuda":
        if name == "onnxruntime":
            raise BaselineUnavailable("the onnxruntime baseline runs on the CPU provider only")
        if not torch.cuda.is_available():
            raise BaselineUnavailable(f"torch {torch.__version__} sees no CUDA device (a CPU-only build, or no GPU): "
                                      "install a CUDA build of torch to compare on the GPU")
        module, targs = module.to("cuda"), [t.to("cuda") for t in targs]
    if name == "onnxruntime":
        if precision != "fp32":
            raise BaselineUnavailable(f"onnxruntime runs the float32 export here: no {precision} baseline "
                                      "(its CPU provider has no bf16/fp16 kernels for these models)")
        return _onnxruntime(module, targs, threads)
    if name == "torch-compile":
        why = torch_compile_unavailable()
        if why:
            raise BaselineUnavailable(why)
        module = torch.compile(module)
    low = getattr(torch, AUTOCAST_DTYPES[precision]) if precision != "fp32" else None

    def call():
        with torch.inference_mode(), torch.autocast(device, dtype=low, enabled=low is not None):
            out = module(*targs)
        if device == "cuda":     # a GPU call is asynchronous: time it to its end
            torch.cuda.synchronize()
        return out

    def outputs():
        try:
            out = call()
        except Exception as e:   # inductor failures (compiler errors) surface at the first call
            raise BaselineUnavailable(f"{name} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        return [o.detach().cpu().float().numpy() if o.is_floating_point() else o.detach().cpu().numpy()
                for o in (out if isinstance(out, (tuple, list)) else (out,))]

    where = "cuda" if device == "cuda" else f"torch.set_num_threads({torch.get_num_threads()})"
    return Baseline(name, call, outputs, where)


def _onnxruntime(module, targs, threads: int) -> Baseline:
    import torch
    try:
        import onnxruntime as ort
    except ImportError:
        raise BaselineUnavailable("onnxruntime is not installed") from None
    buf = io.BytesIO()
    names = [f"input{i}" for i in range(len(targs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, tuple(targs), buf, input_names=names, dynamo=False)
        except Exception as e:   # an op the exporter lacks: the baseline cannot run, dlc is not wrong
            raise BaselineUnavailable(f"torch.onnx.export failed: {type(e).__name__}: "
                                      f"{str(e).splitlines()[0][:200]}") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}     # the exporter drops inputs the graph does not use
    feed = {n: t.numpy() for n, t in zip(names, targs) if n in wanted}

    def call():
        return sess.run(None, feed)

    return Baseline("onnxruntime", call, lambda: [np.asarray(o) for o in call()],
                    f"intra_op_num_threads={threads}")
